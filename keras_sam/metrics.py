"""Dice and IoU of predicted masks: per-sample scores, averaged over the whole dataset.

`dice_per_sample` and `iou_per_sample` define the scores once; the Keras metrics accumulate their
sums and counts, so the result is the same however the data is batched, and the command line
reports the same numbers at the image's own resolution.
"""

import tensorflow as tf
import tf_keras as keras


def _binary_per_sample(mask):
    mask = tf.convert_to_tensor(mask)
    return tf.reshape(tf.cast(mask, tf.float32) > 0.5, (tf.shape(mask)[0], -1))


def _overlap_counts(y_true, y_pred_mask):
    truth, pred = _binary_per_sample(y_true), _binary_per_sample(y_pred_mask)
    intersection = tf.reduce_sum(tf.cast(truth & pred, tf.float32), axis=1)
    true_area = tf.reduce_sum(tf.cast(truth, tf.float32), axis=1)
    pred_area = tf.reduce_sum(tf.cast(pred, tf.float32), axis=1)
    return intersection, true_area, pred_area


def dice_per_sample(y_true, y_pred_mask):
    """Dice coefficient 2|X∩Y| / (|X| + |Y|) of each sample's binary masks; 1 when both are empty.

    Args:
        y_true: binary masks (B, ...).
        y_pred_mask: binary predicted masks (B, ...): threshold logits at 0 first.

    Returns:
        Shape (B,) float32.
    """
    intersection, true_area, pred_area = _overlap_counts(y_true, y_pred_mask)
    total = true_area + pred_area
    return tf.where(total > 0, 2.0 * intersection / tf.maximum(total, 1.0), 1.0)


def iou_per_sample(y_true, y_pred_mask):
    """Intersection over union |X∩Y| / |X∪Y| of each sample's binary masks; 1 when both are empty."""
    intersection, true_area, pred_area = _overlap_counts(y_true, y_pred_mask)
    union = true_area + pred_area - intersection
    return tf.where(union > 0, intersection / tf.maximum(union, 1.0), 1.0)


class _MeanPerSampleScore(keras.metrics.Metric):
    """Mean over all samples seen of a per-sample score of thresholded logits."""

    score_fn = None

    def __init__(self, threshold=0.0, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.threshold = threshold
        self.total = self.add_weight(name="total", initializer="zeros")
        self.count = self.add_weight(name="count", initializer="zeros")

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Args: y_true binary masks (B, [1,] H, W); y_pred logits of the same shape."""
        y_pred = tf.reshape(y_pred, tf.shape(y_true))
        scores = type(self).score_fn(y_true, y_pred > self.threshold)
        weights = tf.ones_like(scores)
        if sample_weight is not None:
            weights = tf.reshape(tf.cast(sample_weight, tf.float32), (-1,)) * weights
        self.total.assign_add(tf.reduce_sum(scores * weights))
        self.count.assign_add(tf.reduce_sum(weights))

    def result(self):
        return tf.math.divide_no_nan(self.total, self.count)

    def reset_state(self):
        self.total.assign(0.0)
        self.count.assign(0.0)

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold}


class DiceScore(_MeanPerSampleScore):
    """Mean per-sample Dice of masks predicted as `logits > threshold` (0: probability 0.5).

    Example:
        >>> metric = DiceScore()
        >>> metric.update_state(tf.ones((2, 4, 4)), tf.fill((2, 4, 4), 3.0))
        >>> float(metric.result())
        1.0
    """

    score_fn = staticmethod(dice_per_sample)

    def __init__(self, threshold=0.0, name="dice", dtype=None):
        super().__init__(threshold=threshold, name=name, dtype=dtype)


class IoUScore(_MeanPerSampleScore):
    """Mean per-sample IoU of masks predicted as `logits > threshold`."""

    score_fn = staticmethod(iou_per_sample)

    def __init__(self, threshold=0.0, name="iou", dtype=None):
        super().__init__(threshold=threshold, name=name, dtype=dtype)
