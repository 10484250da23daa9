"""Images and masks to SAM's inputs and back, through transformers' SamProcessor.

One place knows each coordinate transform: image pixels -> the resized, padded model input
(`to_model_coordinates`) and logits grid -> image pixels (`masks_at_image_size`).
"""

import numpy as np
import tensorflow as tf


def resized_shape(original_size, processor):
    """(height, width) of an image of `original_size` once resized for the model (before padding)."""
    image_processor = processor.image_processor
    return image_processor._get_preprocess_shape(
        tuple(original_size), image_processor.size["longest_edge"]
    )


def model_scale(original_size, processor):
    """(x, y) factors from image pixels to model-input pixels, exactly as SamProcessor scales prompts."""
    old_h, old_w = original_size
    new_h, new_w = resized_shape(original_size, processor)
    return np.array([new_w / old_w, new_h / old_h], np.float32)


def to_model_coordinates(coords, original_size, processor):
    """Maps (..., 2) points or (..., 4) boxes from image pixels to model-input pixels.

    Args:
        coords: points (x, y) or boxes (x0, y0, x1, y1) at the image's own resolution.
        original_size: the image's (height, width).
        processor: the model's SamProcessor.

    Returns:
        float32 array of the same shape.
    """
    coords = np.asarray(coords, np.float32)
    scale = model_scale(original_size, processor)
    return coords * np.tile(scale, coords.shape[-1] // 2)


def to_image_coordinates(coords, original_size, processor):
    """The inverse of `to_model_coordinates`: model-input pixels back to the image's own pixels."""
    coords = np.asarray(coords, np.float32)
    scale = model_scale(original_size, processor)
    return coords / np.tile(scale, coords.shape[-1] // 2)


def preprocess_image(image, processor):
    """Resizes, normalises and pads one image for the model.

    Args:
        image: (H, W, 3) uint8 RGB array.
        processor: the model's SamProcessor.

    Returns:
        pixel_values: (3, S, S) float32.
    """
    outputs = processor.image_processor(image, return_tensors="np")
    return outputs["pixel_values"][0].astype(np.float32)


def preprocess_mask(mask, processor):
    """Resizes (nearest neighbour) and pads a binary mask like its image, onto the logits grid.

    Args:
        mask: (H, W) boolean or 0/1 array at the image's resolution.
        processor: the model's SamProcessor.

    Returns:
        (G, G) float32 0/1 mask, G the logits grid's side (256 for the released models).
    """
    image_processor = processor.image_processor
    grid, _ = image_processor._preprocess_mask(
        np.asarray(mask, np.uint8),
        do_resize=True,
        mask_size=image_processor.mask_size,
        do_pad=True,
        mask_pad_size=image_processor.mask_pad_size,
    )
    return grid.astype(np.float32)


def masks_at_image_size(mask_logits, original_size, processor, threshold=0.0):
    """Low-resolution logits of one image to boolean masks at the image's own size, padding removed.

    Args:
        mask_logits: (M, G, G) logits for one image.
        original_size: the image's (height, width).
        processor: the model's SamProcessor.

    Returns:
        (M, H, W) boolean numpy array.
    """
    logits = tf.convert_to_tensor(mask_logits, tf.float32)[None, None]
    masks = processor.image_processor.post_process_masks(
        logits,
        [tuple(original_size)],
        [resized_shape(original_size, processor)],
        mask_threshold=threshold,
        return_tensors="tf",
    )
    return masks[0][0].numpy()
