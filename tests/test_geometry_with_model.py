"""Prompt geometry end to end, with the shipped model that segments: a box or a point in an
image's own pixels gives the mask of the shape it marks, at the image's resolution, whatever the
image's size and aspect ratio; and the check fails when a coordinate transform is broken."""

import numpy as np
import pytest

import keras_sam.common.inference
import keras_sam.common.postprocessing
from keras_sam import SamSegmenter
from keras_sam.common.geometry import box_from_mask, resized_shape, to_model_coordinates
from keras_sam.common.inference import segment_image
from keras_sam.common.losses_and_scores import dice_per_sample

SIZES = [(180, 320), (320, 180), (96, 96), (700, 900)]  # landscape, portrait, small, large
MIN_DICE = 0.8


@pytest.fixture(scope="module")
def model():
    return SamSegmenter.from_pretrained("sam-small-shapes")


def two_shapes(height, width, seed=0):
    """A grey speckled image with a bright ellipse (A) in the upper left and a dark rectangle (B)
    in the lower right: the image and the two masks."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    ellipse = ((xx - 0.3 * width) / (0.16 * width)) ** 2 + ((yy - 0.32 * height) / (0.2 * height)) ** 2 < 1
    rectangle = (np.abs(xx - 0.7 * width) < 0.13 * width) & (np.abs(yy - 0.7 * height) < 0.15 * height)
    image = np.full((height, width), 120.0) + rng.normal(0, 12, (height, width))
    image[ellipse] = 215 + rng.normal(0, 12, ellipse.sum())
    image[rectangle] = 35 + rng.normal(0, 12, rectangle.sum())
    image = np.repeat(np.clip(image, 0, 255).astype(np.uint8)[..., None], 3, axis=-1)
    return image, ellipse, rectangle


def dice(truth, predicted):
    return float(dice_per_sample(truth[None], predicted[None])[0])


def geometry_scores(model, size):
    """Dice of: each shape's mask from its box, A's mask from a point inside it; and the overlap
    of A's mask with B (a box on A must not find B)."""
    image, ellipse, rectangle = two_shapes(*size)
    model.multimask_output = False
    boxes = segment_image(model, image, boxes=[box_from_mask(ellipse), box_from_mask(rectangle)]).masks
    model.multimask_output = True
    row, col = np.argwhere(ellipse).mean(axis=0)
    pointed = segment_image(model, image, points=[[col, row]]).masks[0]
    model.multimask_output = False
    return {"box_a": dice(ellipse, boxes[0]), "box_b": dice(rectangle, boxes[1]),
            "point_a": dice(ellipse, pointed), "a_finds_b": dice(rectangle, boxes[0])}


def geometry_holds(model):
    """The check itself: every shape found from its box and A from a point, at every size."""
    for size in SIZES:
        scores = geometry_scores(model, size)
        if min(scores["box_a"], scores["box_b"], scores["point_a"]) < MIN_DICE or scores["a_finds_b"] > 0.1:
            return False
    return True


@pytest.mark.parametrize("size", SIZES, ids=lambda size: f"{size[0]}x{size[1]}")
def test_a_box_or_a_point_in_image_pixels_gives_that_shape_at_image_resolution(model, size):
    scores = geometry_scores(model, size)
    assert scores["box_a"] >= MIN_DICE and scores["box_b"] >= MIN_DICE, scores  # moving the box moves the mask
    assert scores["point_a"] >= MIN_DICE, scores
    assert scores["a_finds_b"] < 0.1, scores


def swapped_xy(coords, original_size, processor):
    coords = np.asarray(coords, np.float32)
    flipped = coords.reshape(*coords.shape[:-1], -1, 2)[..., ::-1].reshape(coords.shape)
    return to_model_coordinates(flipped, original_size, processor)


def without_padding(coords, original_size, processor):
    """As if the image were stretched to fill the square input instead of padded."""
    coords = np.asarray(coords, np.float32)
    height, width = original_size
    side = processor.image_processor.pad_size["height"]
    return coords * np.tile([side / width, side / height], coords.shape[-1] // 2).astype(np.float32)


def half_scale(coords, original_size, processor):
    return to_model_coordinates(coords, original_size, processor) * 0.5


def transposed_resize(original_size, processor):
    return resized_shape(original_size, processor)[::-1]


@pytest.mark.parametrize("module, name, broken", [
    (keras_sam.common.inference, "to_model_coordinates", swapped_xy),
    (keras_sam.common.inference, "to_model_coordinates", without_padding),
    (keras_sam.common.inference, "to_model_coordinates", half_scale),
    (keras_sam.common.postprocessing, "resized_shape", transposed_resize),
], ids=["swap-x-and-y", "drop-the-padding", "wrong-scale", "masks-back-transposed"])
def test_the_check_fails_when_a_transform_is_broken(model, monkeypatch, module, name, broken):
    monkeypatch.setattr(module, name, broken)
    assert not geometry_holds(model)
