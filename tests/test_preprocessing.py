import numpy as np
import pytest

from keras_sam import processor_for_config, tiny_sam_config
from keras_sam.preprocessing import (masks_at_image_size, preprocess_image, preprocess_mask,
                                     to_model_coordinates)


@pytest.fixture(scope="module")
def processor():
    return processor_for_config(tiny_sam_config())


def test_boxes_and_points_scale_exactly_as_the_processor_scales_them(processor):
    image = np.zeros((465, 555, 3), np.uint8)
    box = [[40.0, 50.0, 300.0, 400.0]]
    theirs = processor(image, input_boxes=[box], return_tensors="np")["input_boxes"][0]
    np.testing.assert_allclose(to_model_coordinates(box, (465, 555), processor), theirs, rtol=1e-6)
    point = [[[100.0, 200.0]]]
    theirs = processor(image, input_points=[point], return_tensors="np")["input_points"][0, 0]
    np.testing.assert_allclose(to_model_coordinates(point[0], (465, 555), processor), theirs, rtol=1e-6)


def test_mask_lands_on_the_grid_where_the_image_lands(processor):
    image = np.zeros((100, 200, 3), np.uint8)
    mask = np.zeros((100, 200), bool)
    mask[:, 100:] = True  # right half
    image[mask] = 255
    pixels = preprocess_image(image, processor)
    grid = preprocess_mask(mask, processor)
    assert pixels.shape == (3, 256, 256) and grid.shape == (64, 64)
    assert grid[:32, 32:].all() and not grid[:32, :32].any()  # resized to 64x32, padded below
    assert not grid[32:].any()
    bright = pixels[0, :128] > pixels[0].min() + 1  # the resized image is 256x128, then padding
    np.testing.assert_array_equal(np.kron(grid, np.ones((4, 4)))[:128] > 0, bright)


def test_logits_back_at_the_images_own_size_without_padding(processor):
    logits = np.full((1, 64, 64), -5.0, np.float32)
    logits[0, :32, 32:] = 5.0
    masks = masks_at_image_size(logits, (100, 200), processor)
    assert masks.shape == (1, 100, 200) and masks.dtype == bool
    assert masks[0, :, 110:].all() and not masks[0, :, :90].any()
