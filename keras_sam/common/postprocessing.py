"""From a model's output to the masks you show and score: one function, `postprocess_masks`.

SAM predicts M masks per prompt (1, or 3 with `multimask_output`) with its own estimate of each
one's IoU. The mask it hands you is the one with the highest estimate; thresholded at logit 0
(probability 0.5); either on the model's logits grid or at the image's own resolution with the
padding removed. `keras-sam predict`, evaluation, the overlay callback and the examples all go
through here.
"""

import collections

import numpy as np

from keras_sam.common.geometry import resized_shape

PostprocessedMasks = collections.namedtuple("PostprocessedMasks", ["logits", "scores", "masks"])
PostprocessedMasks.__doc__ = """What `postprocess_masks` returns (NumPy arrays).

logits: (B, G, G) the chosen mask's logits on the grid ((B, M, G, G) with best=False).
scores: (B,) the model's estimate of the chosen mask's IoU, clipped to [0, 1] ((B, M) with best=False).
masks: boolean masks: (B, G, G) on the grid, or with `image_sizes` a list of (H, W) arrays, one per
    row at its image's size ((B, M, G, G) or a list of (M, H, W) with best=False).
"""


def _field(outputs, name):
    value = outputs[name] if isinstance(outputs, dict) else getattr(outputs, name)
    return np.asarray(value, np.float32)


def postprocess_masks(outputs, *, image_sizes=None, processor=None, threshold=0.0, best=True):
    """The best mask of each row, its score, and the mask in the frame asked for.

    Args:
        outputs: a SamSegmenter's output, `{"mask_logits": (B, M, G, G), "iou_scores": (B, M)}`
            (a SegmentationOutput works too).
        image_sizes: None for masks on the logits grid; else one (height, width) per row, and the
            masks come back at that image's own resolution.
        processor: the model's SamProcessor; needed with `image_sizes`.
        threshold: logit above which a pixel is in the mask (0: probability 0.5).
        best: keep only the mask with the highest predicted IoU (False keeps all M).

    Returns:
        PostprocessedMasks(logits, scores, masks).

    Example:
        >>> result = postprocess_masks(model(inputs), image_sizes=[image.shape[:2]],
        ...                            processor=processor)  # doctest: +SKIP
        >>> mask, score = result.masks[0], result.scores[0]  # doctest: +SKIP
    """
    logits, scores = _field(outputs, "mask_logits"), _field(outputs, "iou_scores")
    if best:
        chosen = np.argmax(scores, axis=1)
        logits = np.take_along_axis(logits, chosen[:, None, None, None], axis=1)[:, 0]
        scores = np.take_along_axis(scores, chosen[:, None], axis=1)[:, 0]
    # The IoU head regresses the IoU without bounds; what is reported is an IoU, in [0, 1].
    scores = np.clip(scores, 0.0, 1.0)
    if image_sizes is None:
        return PostprocessedMasks(logits, scores, logits > threshold)
    if processor is None:
        raise ValueError("postprocess_masks needs the model's processor to resize masks to image_sizes")
    if len(image_sizes) != len(logits):
        raise ValueError(f"got {len(image_sizes)} image sizes for {len(logits)} rows of masks")
    masks = []
    for row, size in zip(logits, image_sizes):
        resized = masks_at_image_size(row[None] if best else row, size, processor, threshold)
        masks.append(resized[0] if best else resized)
    return PostprocessedMasks(logits, scores, masks)


def probabilities_at_image_size(mask_logits, original_size, processor):
    """Low-resolution logits of one image to mask probabilities at the image's own size.

    Args:
        mask_logits: (M, G, G) logits for one image.
        original_size: the image's (height, width).
        processor: the model's SamProcessor.

    Returns:
        (M, H, W) float32 numpy array in [0, 1]: the sigmoid of the upscaled logits, padding removed.
    """
    import tensorflow as tf  # transformers' resizing here runs on TensorFlow tensors

    logits = processor.image_processor.post_process_masks(
        tf.convert_to_tensor(mask_logits, tf.float32)[None, None], [tuple(original_size)],
        [resized_shape(original_size, processor)], binarize=False, return_tensors="tf")
    return tf.sigmoid(logits[0][0]).numpy()


def masks_at_image_size(mask_logits, original_size, processor, threshold=0.0):
    """Low-resolution logits of one image to boolean masks at the image's own size, padding removed.

    Args:
        mask_logits: (M, G, G) logits for one image.
        original_size: the image's (height, width).
        processor: the model's SamProcessor.

    Returns:
        (M, H, W) boolean numpy array.
    """
    import tensorflow as tf  # transformers' resizing here runs on TensorFlow tensors

    logits = tf.convert_to_tensor(mask_logits, tf.float32)[None, None]
    masks = processor.image_processor.post_process_masks(
        logits,
        [tuple(original_size)],
        [resized_shape(original_size, processor)],
        mask_threshold=threshold,
        return_tensors="tf",
    )
    return masks[0][0].numpy()
