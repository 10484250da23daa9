"""The `transformers` format: a checkpoint folder that PyTorch transformers 5 reads.

transformers 5 has no TensorFlow classes; its `SamModel.from_pretrained` reads `model.safetensors`
under PyTorch's weight names. The folder holds that file, `config.json` and the processor's
`preprocessor_config.json`, written through keras-sam's checkpoint conversion
(`keras_sam.keras3.convert`, which reads and writes weights with h5py and safetensors alone).

Checked here by reading the folder back into a TFSamModel (transformers 4) and comparing mask
logits; `scripts/check_transformers_export.py` checks it with transformers 5 and PyTorch in an
environment of their own.
"""

import os
import tempfile

import numpy as np


def write_transformers(segmenter, folder):
    """Writes `segmenter`'s TFSamModel as config.json, model.safetensors (PyTorch names) and the
    processor config.

    Returns:
        The file names written.
    """
    from keras_sam.keras3.convert import read_checkpoint, write_safetensors

    with tempfile.TemporaryDirectory(prefix=".tf-checkpoint-", dir=os.path.dirname(os.path.abspath(folder))) as tf_folder:
        segmenter.sam.save_pretrained(tf_folder)
        config, weights = read_checkpoint(tf_folder)
    write_safetensors(folder, config, weights)
    return sorted(os.listdir(folder))


def reference_inputs(segmenter, samples):
    """The model's own inputs and outputs for each sample's boxes: pixel values, boxes in model
    pixels, and keras-sam's mask logits and IoU scores, as arrays to compare another runtime with."""
    from keras_sam.common.geometry import to_model_coordinates
    from keras_sam.common.preprocessing import preprocess_image

    pixels, boxes, logits, scores = [], [], [], []
    for image, image_boxes, _, _ in samples:
        rgb = image[..., :3] if image.shape[-1] >= 3 else np.repeat(image[..., :1], 3, axis=-1)
        pixel_values = preprocess_image(rgb, segmenter.processor)
        model_boxes = to_model_coordinates(image_boxes[:1], rgb.shape[:2], segmenter.processor)
        output = segmenter({"pixel_values": pixel_values[None], "input_boxes": model_boxes})
        pixels.append(pixel_values)
        boxes.append(model_boxes[0])
        logits.append(np.asarray(output["mask_logits"])[0, 0])
        scores.append(np.asarray(output["iou_scores"])[0, 0])
    return {"pixel_values": np.stack(pixels), "input_boxes": np.stack(boxes),
            "mask_logits": np.stack(logits), "iou_scores": np.asarray(scores, np.float32)}


def round_trip_agreement(segmenter, folder, samples):
    """Max differences of mask logits and scores between `segmenter` and the TFSamModel read back
    from `folder`, on the samples' first boxes; also writes `folder`/../transformers-check.npz,
    what scripts/check_transformers_export.py compares transformers 5's output with."""
    from keras_sam.tfkeras.segmenter import SamSegmenter

    expected = reference_inputs(segmenter, samples)
    reread = reference_inputs(SamSegmenter.from_pretrained(folder, multimask_output=segmenter.multimask_output),
                              samples)
    np.savez(os.path.join(os.path.dirname(folder), "transformers-check.npz"), **expected)
    return {"logit_max_difference": float(f"{np.abs(reread['mask_logits'] - expected['mask_logits']).max():.3g}"),
            "score_max_difference": float(f"{np.abs(reread['iou_scores'] - expected['iou_scores']).max():.3g}"),
            "prompts": len(samples)}
