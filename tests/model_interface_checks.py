"""What both families' tests check of keras_sam.common.model_interface.SegmenterModel (no Keras here)."""

import numpy as np

from keras_sam.common.training_options import COMPONENTS
from keras_sam.common.model_interface import SegmenterModel


def check_segmenter_model(model):
    """Asserts `model` has every member of the interface and that each does what it says."""
    assert isinstance(model, SegmenterModel)
    image = np.random.default_rng(0).integers(0, 255, size=(40, 50, 3), dtype=np.uint8)
    pixels = model.processor(images=image, return_tensors="np")["pixel_values"]
    assert pixels.shape[1:] == (3, *pixels.shape[2:]) and pixels.shape[2] == pixels.shape[3]
    model.trace_image_embeddings(2)
    embeddings = np.asarray(model.image_embeddings(np.repeat(pixels, 2, axis=0)))
    assert embeddings.shape == (2, *model.embedding_shape) and embeddings.dtype == np.float32
    assert str(model.encoder_dtype) == "float32"
    weights = [np.asarray(weight) for weight in model.encoder_weights]
    assert weights and all(np.isfinite(weight).all() for weight in weights)
    assert set(model.freeze) <= set(COMPONENTS)
    side = pixels.shape[2]
    boxes = np.array([[10, 12, side // 2, side // 2]] * 2, np.float32)
    outputs = model({"image_embeddings": embeddings, "input_boxes": boxes}, training=False)
    logits, scores = np.asarray(outputs["mask_logits"]), np.asarray(outputs["iou_scores"])
    assert logits.shape[:2] == scores.shape == (2, 1)
    from_pixels = model({"pixel_values": np.repeat(pixels, 2, axis=0), "input_boxes": boxes}, training=False)
    np.testing.assert_allclose(np.asarray(from_pixels["mask_logits"]), logits, atol=1e-4)
