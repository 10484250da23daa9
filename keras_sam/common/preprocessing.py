"""Images and masks to SAM's inputs and back, through transformers' SamProcessor.

Coordinates (boxes and points) are `keras_sam.common.geometry`'s business; masks predicted by a model go
back to an image through `keras_sam.common.postprocessing`.
"""

import numpy as np


def preprocess_image(image, processor):
    """Resizes, normalises and pads one image for the model.

    Args:
        image: (H, W, 3) uint8 RGB array.
        processor: the model's SamProcessor.

    Returns:
        pixel_values: (3, S, S) float32.
    """
    # Said outright: the processor guesses the channel axis, and takes an image 3 pixels high
    # for a channels-first one.
    outputs = processor.image_processor(image, return_tensors="np", input_data_format="channels_last")
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


def pixels_to_image(pixel_values, processor):
    """Undoes the processor's normalisation: (3, S, S) pixel values -> (S, S, 3) uint8 image.

    The image stays in the model's frame (resized and padded); the padding shows as the colour
    that normalises to 0.
    """
    image_processor = processor.image_processor
    image = np.transpose(np.asarray(pixel_values, np.float32), (1, 2, 0))
    if image_processor.do_normalize:
        image = image * np.asarray(image_processor.image_std) + np.asarray(image_processor.image_mean)
    if image_processor.do_rescale:
        image = image / image_processor.rescale_factor
    return np.round(image).clip(0, 255).astype(np.uint8)
