"""The one path from an image and prompts in its own pixels to masks at its resolution, with scores.

    image ─► preprocess ─► image embedding (once) ─► one model row per prompt ─► postprocess_masks
"""

import numpy as np

from keras_sam.common.geometry import to_model_coordinates
from keras_sam.common.postprocessing import postprocess_masks
from keras_sam.common.preprocessing import preprocess_image


class PromptError(ValueError):
    """A prompt that does not fit its image; the message names it."""


def prompt_inputs(original_size, processor, boxes=(), points=(), labels=None):
    """Model inputs for one image's prompts: a row per box (the points join each box), or one row
    of all the points. Coordinates go from image pixels to the model's input pixels.

    Args:
        original_size: the image's (height, width).
        processor: the model's SamProcessor.
        boxes: (x0, y0, x1, y1) boxes in image pixels.
        points: (x, y) points in image pixels.
        labels: one per point, 1 inside the object and 0 outside (default: all 1).

    Returns:
        (inputs, rows): the prompt inputs of a SamSegmenter, and how many rows they hold.

    Raises:
        PromptError: no prompt, or a box or point outside the image.
    """
    boxes, points, labels = check_prompts(original_size, boxes, points, labels)
    rows = max(len(boxes), 1)
    inputs = {}
    if boxes:
        inputs["input_boxes"] = to_model_coordinates(boxes, original_size, processor)
    if points:
        coords = to_model_coordinates(points, original_size, processor)
        inputs["input_points"] = np.repeat(coords[None], rows, axis=0)
        inputs["input_labels"] = np.repeat(np.array([labels], np.int32), rows, axis=0)
    return inputs, rows


def check_prompts(original_size, boxes=(), points=(), labels=None):
    """Checks one image's prompts (see `prompt_inputs`); returns (boxes, points, labels) as lists.

    Raises:
        PromptError: no prompt, or a box or point outside the image, named.
    """
    boxes, points = [list(map(float, b)) for b in boxes], [list(map(float, p)) for p in points]
    labels = [1] * len(points) if labels is None else [int(label) for label in labels]
    height, width = original_size
    if not boxes and not points:
        raise PromptError("no prompt: give at least one box or point")
    for x0, y0, x1, y1 in boxes:
        if x0 < 0 or y0 < 0 or x1 > width or y1 > height or x1 <= x0 or y1 <= y0:
            raise PromptError(f"box {x0:g},{y0:g},{x1:g},{y1:g} reaches outside the {width}x{height} "
                              "image (or is empty)")
    for x, y in points:
        if not (0 <= x < width and 0 <= y < height):
            raise PromptError(f"point {x:g},{y:g} is outside the {width}x{height} image")
    if len(labels) != len(points) or any(label not in (0, 1) for label in labels):
        raise PromptError(f"labels must be one 0 or 1 per point; got {labels} for {len(points)} points")
    return boxes, points, labels


def segment_image(model, image, *, boxes=(), points=(), labels=None, best=True):
    """Masks for one image at its own resolution, one per box (or one for the points alone).

    The image goes through the vision encoder once, whatever the number of prompts.

    Args:
        model: a SamSegmenter.
        image: (H, W, 3) uint8 RGB array.
        boxes, points, labels: prompts in image pixels (see `prompt_inputs`).
        best: keep only the mask with the highest predicted IoU for each prompt (False: all of
            them, 3 with `multimask_output`).

    Returns:
        keras_sam.common.postprocessing.PostprocessedMasks: masks a list with one (H, W) boolean mask per
        row ((M, H, W) with best=False), scores the model's predicted IoU.

    Example:
        >>> result = segment_image(model, image, boxes=[[40, 30, 200, 160]])  # doctest: +SKIP
        >>> mask, score = result.masks[0], result.scores[0]  # doctest: +SKIP
    """
    processor = model.processor
    size = image.shape[:2]
    inputs, rows = prompt_inputs(size, processor, boxes, points, labels)
    embedding = np.asarray(model.image_embeddings(preprocess_image(image, processor)[None]))
    inputs["image_embeddings"] = np.repeat(embedding, rows, axis=0)
    return postprocess_masks(model(inputs), image_sizes=[size] * rows, processor=processor, best=best)
