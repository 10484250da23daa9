"""Prompts drawn anew every epoch: a lesion's box jittered, points inside and outside its mask.

TensorFlow functions with explicit stateless seeds, for use inside a tf.data pipeline after its
cache (tf.data feeds every Keras backend). A lesion's exact box comes from
`keras_sam.common.geometry.box_from_mask`.
"""

import tensorflow as tf


def jitter_boxes(boxes, max_shift, limits, seed):
    """Moves each side of each box by up to `max_shift`, uniformly, keeping it inside `limits`.

    Args:
        boxes: (..., 4) boxes (x0, y0, x1, y1).
        max_shift: (..., 2) largest move of a side along x and y (scale it to the boxes' units).
        limits: (..., 2) width and height the boxes must stay within.
        seed: stateless seed, shape (2,) integers.

    Returns:
        (..., 4) float32 boxes, at least one unit wide and high.
    """
    boxes = tf.cast(boxes, tf.float32)
    shift = tf.tile(tf.cast(max_shift, tf.float32), [*([1] * (len(boxes.shape) - 1)), 2])
    noise = tf.random.stateless_uniform(tf.shape(boxes), seed=seed, minval=-1.0, maxval=1.0)
    moved = boxes + noise * shift
    upper = tf.tile(tf.cast(limits, tf.float32), [*([1] * (len(boxes.shape) - 1)), 2])
    moved = tf.clip_by_value(moved, 0.0, upper)
    x0, y0, x1, y1 = tf.unstack(moved, axis=-1)
    x1 = tf.maximum(x1, x0 + 1.0)
    y1 = tf.maximum(y1, y0 + 1.0)
    return tf.stack([x0, y0, x1, y1], axis=-1)


def sample_points(mask, valid_extent, num_positive, num_negative, seed):
    """Random points inside (label 1) and outside (label 0) a mask on the logits grid.

    Args:
        mask: (G, G) 0/1 mask on the logits grid.
        valid_extent: (2,) width and height of the unpadded image on the grid; negative points
            are drawn only there.
        num_positive, num_negative: how many points of each kind.
        seed: stateless seed, shape (2,) integers.

    Returns:
        points (num_positive + num_negative, 2) as (x, y) grid coordinates at pixel centres,
        labels (num_positive + num_negative,) int32.
    """
    mask = tf.cast(mask, tf.float32)
    grid = tf.shape(mask)[0]
    rows = tf.range(grid)[:, None]
    cols = tf.range(grid)[None, :]
    valid = (cols < tf.cast(valid_extent[0], tf.int32)) & (rows < tf.cast(valid_extent[1], tf.int32))
    seeds = tf.random.experimental.stateless_split(seed, 2)
    positive = _draw(mask > 0.5, num_positive, seeds[0])
    negative = _draw(valid & (mask <= 0.5), num_negative, seeds[1])
    points = tf.concat([positive, negative], axis=0)
    labels = tf.concat([tf.ones([num_positive], tf.int32), tf.zeros([num_negative], tf.int32)], 0)
    return points, labels


def _draw(region, count, seed):
    """`count` (x, y) pixel centres drawn with replacement from a boolean region (its centre if empty)."""
    where = tf.cast(tf.where(region), tf.float32)  # (n, 2) as (row, col)
    where = tf.cond(
        tf.shape(where)[0] > 0,
        lambda: where,
        lambda: tf.cast(tf.shape(region)[None] // 2, tf.float32),
    )
    picks = tf.random.stateless_uniform(
        [count], seed=seed, maxval=tf.shape(where)[0], dtype=tf.int32
    )
    chosen = tf.gather(where, picks)
    return tf.stack([chosen[:, 1], chosen[:, 0]], axis=-1) + 0.5
