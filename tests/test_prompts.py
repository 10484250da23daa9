import numpy as np
import tensorflow as tf

from keras_sam.common.prompts import jitter_boxes, sample_points


def test_jitter_stays_within_its_shift_and_the_image_and_depends_on_the_seed():
    boxes = tf.constant([[10.0, 10.0, 50.0, 40.0]] * 200)
    shift = tf.constant([[5.0, 2.0]] * 200)
    moved = jitter_boxes(boxes, shift, tf.constant([[52.0, 100.0]] * 200), seed=[1, 2]).numpy()
    delta = moved - boxes.numpy()
    assert np.abs(delta[:, [0, 2]]).max() <= 5 + 1e-5 and np.abs(delta[:, [1, 3]]).max() <= 2 + 1e-5
    assert np.abs(delta[:, 0]).max() > 4  # it does move
    assert moved[:, 2].max() <= 52
    again = jitter_boxes(boxes, shift, tf.constant([[52.0, 100.0]] * 200), seed=[1, 2]).numpy()
    other = jitter_boxes(boxes, shift, tf.constant([[52.0, 100.0]] * 200), seed=[1, 3]).numpy()
    np.testing.assert_array_equal(moved, again)
    assert not np.array_equal(moved, other)


def test_sampled_points_are_inside_and_outside_within_the_image():
    mask = np.zeros((16, 16), np.float32)
    mask[4:8, 4:8] = 1
    points, labels = sample_points(mask, tf.constant([10.0, 12.0]), 5, 7, seed=[0, 1])
    for (x, y), label in zip(points.numpy(), labels.numpy()):
        assert mask[int(y), int(x)] == label
        assert x < 10 and y < 12
