"""Every coordinate transform between an image, the model's input and its mask grid, in one place.

Three frames:
- image pixels: the picture as it is on disk, (height, width);
- model-input pixels: the image resized so its longest side is the model's input size, then
  padded at the bottom and right to a square (1024 for the released SAM models);
- the logits grid: the model's low-resolution masks, the same square at a quarter of the side
  (256 for the released models).
Boxes are (x0, y0, x1, y1) with pixel-edge coordinates; points are (x, y). This module needs
NumPy and the processor's sizes only, so every model family shares it.
"""

import numpy as np


def input_size(processor):
    """Side of the square, padded model input the processor makes."""
    return processor.image_processor.pad_size["height"]


def grid_size(processor):
    """Side of the logits grid the processor resizes masks onto."""
    return processor.image_processor.mask_pad_size["height"]


def resized_shape(original_size, processor):
    """(height, width) of an image of `original_size` once resized for the model, before padding.

    The processor's own rounding: the longest side becomes the model's input size.
    """
    old_h, old_w = original_size
    longest = processor.image_processor.size["longest_edge"]
    scale = longest / max(old_h, old_w)
    return int(old_h * scale + 0.5), int(old_w * scale + 0.5)


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


def box_from_mask(mask):
    """The tight box (x0, y0, x1, y1) around a mask's foreground, in pixel-edge coordinates.

    Args:
        mask: (H, W) boolean or 0/1 array.

    Returns:
        float32 array of 4, or None for an empty mask.
    """
    rows = np.flatnonzero(np.any(mask, axis=1))
    cols = np.flatnonzero(np.any(mask, axis=0))
    if rows.size == 0:
        return None
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], np.float32)


def box_mask(box, size):
    """The filled box as a (height, width) boolean mask: what the prompt alone would segment."""
    height, width = size
    x0, y0, x1, y1 = np.round(np.asarray(box, np.float64)).astype(int)
    mask = np.zeros((height, width), bool)
    mask[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = True
    return mask
