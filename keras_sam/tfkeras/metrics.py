"""Dice and IoU of predicted masks for tf-keras: per-sample scores, averaged over the whole dataset.

The scores are `keras_sam.common.losses_and_scores.overlap_scores`; the metrics accumulate their sums and
counts, so the result is the same however the data is batched, and the command line reports the
same numbers at the image's own resolution. They take mask logits (`from_logits` is True):
SamSegmenter hands them logits and every other metric probabilities.
"""

import tensorflow as tf
import tensorflow.experimental.numpy as tnp
import tf_keras as keras

from keras_sam.common import losses_and_scores as objectives
from keras_sam.tfkeras.losses import per_sample_arrays


class _MeanPerSampleScore(keras.metrics.Metric):
    """Mean over all samples seen of a per-sample score of thresholded logits."""

    score_index = None  # 0: Dice, 1: IoU

    def __init__(self, threshold=0.0, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.threshold = threshold
        self.from_logits = True
        self.total = self.add_weight(name="total", initializer="zeros")
        self.count = self.add_weight(name="count", initializer="zeros")

    @tf.autograph.experimental.do_not_convert  # no control flow on tensors; converting it is slow
    def update_state(self, y_true, y_pred, sample_weight=None):
        """Args: y_true binary masks (B, [1,] H, W); y_pred logits of the same size; sample_weight
        (B,) or per pixel like y_true (areas become sums of weights; a sample counts by its mean
        weight)."""
        y_true, y_pred, pixels, samples = per_sample_arrays(y_true, y_pred, sample_weight)
        total, count = objectives.score_sums(tnp, y_true, y_pred, pixels, samples, self.threshold,
                                             self.score_index)
        self.total.assign_add(total)
        self.count.assign_add(count)

    @tf.autograph.experimental.do_not_convert
    def result(self):
        return tf.math.divide_no_nan(self.total, self.count)

    def reset_state(self):
        self.total.assign(0.0)
        self.count.assign(0.0)

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold}


@keras.saving.register_keras_serializable(package="keras_sam")
class DiceScore(_MeanPerSampleScore):
    """Mean per-sample Dice of masks predicted as `logits > threshold` (0: probability 0.5).

    Example:
        >>> metric = DiceScore()
        >>> metric.update_state(tf.ones((2, 4, 4)), tf.fill((2, 4, 4), 3.0))
        >>> float(metric.result())
        1.0
    """

    score_index = 0

    def __init__(self, threshold=0.0, name="dice", dtype=None):
        super().__init__(threshold=threshold, name=name, dtype=dtype)


@keras.saving.register_keras_serializable(package="keras_sam")
class IoUScore(_MeanPerSampleScore):
    """Mean per-sample IoU of masks predicted as `logits > threshold`."""

    score_index = 1

    def __init__(self, threshold=0.0, name="iou", dtype=None):
        super().__init__(threshold=threshold, name=name, dtype=dtype)
