"""Coordinate transforms, preprocessing and postprocessing agree with SamProcessor and each other."""

import numpy as np
import pytest

from keras_sam import processor_for_config, tiny_sam_config
from keras_sam.common.geometry import (box_from_mask, box_mask, resized_shape, to_image_coordinates,
                                       to_model_coordinates)
from keras_sam.common.postprocessing import masks_at_image_size, postprocess_masks, probabilities_at_image_size
from keras_sam.common.preprocessing import pixels_to_image, preprocess_image, preprocess_mask


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
    back = to_image_coordinates(to_model_coordinates(box, (465, 555), processor), (465, 555), processor)
    np.testing.assert_allclose(back, box, rtol=1e-5)


@pytest.mark.parametrize("size", [(465, 555), (555, 465), (100, 7), (1024, 1024), (3, 999)])
def test_resized_shape_is_the_processors(processor, size):
    pixels = processor.image_processor(np.zeros(size + (3,), np.uint8), return_tensors="np",
                                       input_data_format="channels_last")
    assert tuple(pixels["reshaped_input_sizes"][0]) == resized_shape(size, processor)
    assert preprocess_image(np.zeros(size + (3,), np.uint8), processor).shape == (3, 256, 256)


def test_pixels_go_back_to_the_image_they_came_from(processor):
    image = np.random.default_rng(0).integers(0, 256, size=(256, 256, 3), dtype=np.uint8)
    np.testing.assert_array_equal(pixels_to_image(preprocess_image(image, processor), processor), image)


def test_box_from_mask_is_tight_and_box_mask_fills_it():
    mask = np.zeros((10, 12), bool)
    mask[2:5, 3:9] = True
    np.testing.assert_array_equal(box_from_mask(mask), [3, 2, 9, 5])
    np.testing.assert_array_equal(box_mask(box_from_mask(mask), (10, 12)), mask)
    assert box_from_mask(np.zeros((4, 4))) is None


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


def test_postprocess_keeps_the_mask_with_the_highest_predicted_iou(processor):
    logits = np.full((2, 3, 64, 64), -5.0, np.float32)
    logits[0, 1, :32, 32:] = 5.0  # row 0's best: the top right of the padded square
    logits[1, 2, :32, :32] = 5.0  # row 1's best: the top left
    outputs = {"mask_logits": logits, "iou_scores": np.array([[0.1, 0.9, 0.3], [0.2, 0.1, 0.7]])}
    on_grid = postprocess_masks(outputs)
    np.testing.assert_allclose(on_grid.scores, [0.9, 0.7])
    np.testing.assert_array_equal(on_grid.masks, logits[[0, 1], [1, 2]] > 0)
    at_size = postprocess_masks(outputs, image_sizes=[(100, 200), (200, 100)], processor=processor)
    assert at_size.masks[0].shape == (100, 200) and at_size.masks[1].shape == (200, 100)
    assert at_size.masks[0][:, 110:].all() and not at_size.masks[0][:, :90].any()
    assert at_size.masks[1][:90].all() and not at_size.masks[1][110:].any()
    every = postprocess_masks(outputs, image_sizes=[(100, 200)] * 2, processor=processor, best=False)
    assert every.masks[0].shape == (3, 100, 200) and every.scores.shape == (2, 3)
    with pytest.raises(ValueError, match="needs the model's processor"):
        postprocess_masks(outputs, image_sizes=[(100, 200)] * 2)


def test_reported_iou_scores_are_clipped_to_0_1_after_the_choice(processor):
    logits = np.zeros((2, 3, 64, 64), np.float32)
    outputs = {"mask_logits": logits, "iou_scores": np.array([[1.006, 0.9, 0.3], [-0.2, -0.1, -0.3]])}
    np.testing.assert_allclose(postprocess_masks(outputs).scores, [1.0, 0.0])
    np.testing.assert_allclose(postprocess_masks(outputs, best=False).scores, [[1.0, 0.9, 0.3], [0, 0, 0]])


def test_probabilities_at_image_size_threshold_to_the_masks(processor):
    logits = np.full((1, 64, 64), -5.0, np.float32)
    logits[0, :32, 32:] = 5.0
    probabilities = probabilities_at_image_size(logits, (100, 200), processor)
    masks = masks_at_image_size(logits, (100, 200), processor)
    assert probabilities.shape == (1, 100, 200) and 0 <= probabilities.min() < probabilities.max() <= 1
    np.testing.assert_array_equal(probabilities > 0.5, masks)
