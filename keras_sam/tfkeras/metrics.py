"""Dice and IoU of predicted masks for tf-keras: per-sample scores, averaged over the whole dataset.

The scores are `keras_sam.common.losses_and_scores.overlap_scores`; the metrics accumulate their sums and
counts, so the result is the same however the data is batched, and the command line reports the
same numbers at the image's own resolution. They take mask logits (`from_logits` is True):
SamSegmenter hands them logits and every other metric probabilities.
"""

import tensorflow as tf
import tensorflow.experimental.numpy as tnp
import tf_keras as keras

from keras_sam.common.loss_metric_mixins import MeanPerSampleScore, ProbabilityMetric
from keras_sam.tfkeras.losses import per_sample_arrays


class _MeanPerSampleScore(MeanPerSampleScore, keras.metrics.Metric):
    """Mean over all samples seen of a per-sample score of thresholded logits."""

    _ops = tnp
    _per_sample_arrays = staticmethod(per_sample_arrays)
    # Not converted by autograph: no control flow on tensors, and converting it is slow.
    update_state = tf.autograph.experimental.do_not_convert(MeanPerSampleScore.update_state)

    def _add_counter(self, name):
        return self.add_weight(name=name, initializer="zeros")

    @tf.autograph.experimental.do_not_convert
    def result(self):
        return tf.math.divide_no_nan(self.total, self.count)


@keras.saving.register_keras_serializable(package="keras_sam")
class DiceScore(_MeanPerSampleScore):
    """Mean per-sample Dice of masks predicted as `logits > threshold` (0: probability 0.5).

    Args: threshold, name ("dice"), dtype.

    Example:
        >>> metric = DiceScore()
        >>> metric.update_state(tf.ones((2, 4, 4)), tf.fill((2, 4, 4), 3.0))
        >>> float(metric.result())
        1.0
    """

    score_index, default_name = 0, "dice"


@keras.saving.register_keras_serializable(package="keras_sam")
class IoUScore(_MeanPerSampleScore):
    """Mean per-sample IoU of masks predicted as `logits > threshold`. Args: threshold, name ("iou"),
    dtype."""

    score_index, default_name = 1, "iou"


@keras.saving.register_keras_serializable(package="keras_sam")
class OnProbabilities(ProbabilityMetric, keras.metrics.Metric):
    """Feeds a Keras metric probabilities: the sigmoid of SamSegmenter's mask logits.

    `SamSegmenter.compile` wraps every metric not made with `from_logits=True` in one; the
    metric keeps its name in the logs.

    Args:
        metric: a metric, its name ("accuracy", "binary_iou", ...) or a metric function.
    """

    _keras = keras
    _sigmoid = staticmethod(tf.sigmoid)

    @tf.__internal__.tracking.no_automatic_dependency_tracking
    def _keep_untracked(self, metric):
        self.metric = metric
