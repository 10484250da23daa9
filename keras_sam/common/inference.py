"""The one path from an image and prompts in its own pixels to masks at its resolution, with scores.

    image ─► preprocess ─► image embedding (once) ─► one model row per prompt ─► postprocess_masks

Prompts are boxes, positive and negative clicks (points labelled 1 and 0), a previous mask to
refine (SAM's `input_masks`: the low-resolution logits a previous call returned, or a binary
mask at the image's size), any of them together, or none at all (SAM's empty prompt, for a
model fine-tuned with `--prompt none`; others get a warning).
"""

import numpy as np

from keras_sam.common.geometry import to_model_coordinates
from keras_sam.common.postprocessing import postprocess_masks
from keras_sam.common.preprocessing import preprocess_image, preprocess_mask
from keras_sam.common.trained_prompt import warn_if_not_trained_for_no_prompt

MASK_LOGIT = 10.0
"""The logit a binary previous mask becomes: +MASK_LOGIT inside, -MASK_LOGIT outside (about the
size of a confident SAM logit, probability 0.99995), so that a drawn mask reads like a returned one."""


class PromptError(ValueError):
    """A prompt that does not fit its image; the message names it."""


def prompt_inputs(original_size, processor, boxes=(), points=(), labels=None):
    """Model inputs for one image's prompts: a row per box (the points join each box), or one row
    of all the points (or of no prompt). Coordinates go from image pixels to the model's input pixels.

    Args:
        original_size: the image's (height, width).
        processor: the model's SamProcessor.
        boxes: (x0, y0, x1, y1) boxes in image pixels.
        points: (x, y) points in image pixels.
        labels: one per point, 1 inside the object and 0 outside (default: all 1).

    Returns:
        (inputs, rows): the prompt inputs of a SamSegmenter, and how many rows they hold.

    Raises:
        PromptError: a box or point outside the image.
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
        PromptError: a box or point outside the image, or labels that don't fit the points, named.
    """
    boxes, points = [list(map(float, b)) for b in boxes], [list(map(float, p)) for p in points]
    labels = [1] * len(points) if labels is None else [int(label) for label in labels]
    height, width = original_size
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


def previous_mask_logits(mask_input, original_size, processor, grid):
    """A previous mask as SAM's `input_masks` row: (G, G) logits on the model's grid.

    Args:
        mask_input: either low-resolution logits, (G, G) or (1, G, G) floats, as a previous call
            returned them (`PostprocessedMasks.logits[row]`); or a boolean mask at the image's
            size (H, W), e.g. read from a mask PNG, which becomes +-MASK_LOGIT.
        original_size: the image's (height, width).
        processor: the model's SamProcessor.
        grid: the model's logits grid side G.

    Raises:
        PromptError: a shape that is neither, named.
    """
    mask_input = np.asarray(mask_input)
    if mask_input.dtype == bool:
        if mask_input.shape != tuple(original_size):
            raise PromptError(f"the previous mask is {mask_input.shape[1]}x{mask_input.shape[0]} but the image "
                              f"is {original_size[1]}x{original_size[0]} (width x height): give a mask of "
                              "the image's size, or the low-resolution logits a previous call returned")
        return (preprocess_mask(mask_input, processor) * 2.0 - 1.0) * MASK_LOGIT
    logits = mask_input.astype(np.float32)
    if logits.ndim == 3 and logits.shape[0] == 1:
        logits = logits[0]
    if logits.shape != (grid, grid):
        raise PromptError(f"the previous mask's logits have shape {mask_input.shape}; the model's grid is "
                          f"({grid}, {grid}) (or give a boolean mask at the image's size)")
    return logits


def segment_image(model, image, *, boxes=(), points=(), labels=None, mask_input=None, best=True):
    """Masks for one image at its own resolution, one per box (or one for the clicks, the previous
    mask, or no prompt at all).

    The image goes through the vision encoder once, whatever the number of prompts. To refine a
    mask, give the clicks so far (positive inside the object, label 1; negative outside, label 0)
    with the previous result's logits as `mask_input`. With no prompt at all the model segments
    what it learnt to segment unprompted: only a model fine-tuned with `--prompt none`
    (`model.trained_prompt == "none"`) has learnt that, and any other gets a warning.

    Args:
        model: a SamSegmenter (either family).
        image: (H, W, 3) uint8 RGB array.
        boxes, points, labels: prompts in image pixels (see `prompt_inputs`).
        mask_input: a previous mask to refine, fed to SAM as `input_masks` (every row): the
            (G, G) logits a previous call returned, or a boolean (H, W) mask (see
            `previous_mask_logits`).
        best: keep only the mask with the highest predicted IoU for each prompt (False: all of
            them, 3 with `multimask_output`).

    Returns:
        keras_sam.common.postprocessing.PostprocessedMasks: masks a list with one (H, W) boolean mask per
        row ((M, H, W) with best=False), scores the model's predicted IoU, logits the rows'
        low-resolution logits (what `mask_input` takes back).

    Example:
        >>> result = segment_image(model, image, boxes=[[40, 30, 200, 160]])  # doctest: +SKIP
        >>> mask, score = result.masks[0], result.scores[0]  # doctest: +SKIP
        >>> refined = segment_image(model, image, boxes=[[40, 30, 200, 160]], points=[[90, 80]],
        ...                         labels=[0], mask_input=result.logits[0])  # doctest: +SKIP
    """
    processor = model.processor
    size = image.shape[:2]
    inputs, rows = prompt_inputs(size, processor, boxes, points, labels)
    if mask_input is not None:
        logits = previous_mask_logits(mask_input, size, processor, model.mask_grid)
        inputs["input_masks"] = np.repeat(logits[None], rows, axis=0).astype(np.float32)
    elif not inputs:
        warn_if_not_trained_for_no_prompt(model.trained_prompt)
    embedding = np.asarray(model.image_embeddings(preprocess_image(image, processor)[None]))
    inputs["image_embeddings"] = np.repeat(embedding, rows, axis=0)
    return postprocess_masks(model(inputs), image_sizes=[size] * rows, processor=processor, best=best)
