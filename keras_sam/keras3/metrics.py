"""Dice and IoU metrics on mask logits for Keras 3, and the wrapper that hands other metrics
probabilities: the Keras 3 counterparts of `keras_sam.tfkeras.metrics` (the bodies are shared,
in `keras_sam.common.loss_metric_mixins`)."""

import keras
from keras import ops

from keras_sam.common.loss_metric_mixins import MeanPerSampleScore, ProbabilityMetric
from keras_sam.keras3.losses import per_sample_arrays


class _MeanPerSampleScore(MeanPerSampleScore, keras.metrics.Metric):
    """Mean over all samples seen of a per-sample score of masks thresholded from logits."""

    _ops = ops
    _per_sample_arrays = staticmethod(per_sample_arrays)

    def _add_counter(self, name):
        return self.add_variable(shape=(), initializer="zeros", name=name)

    def result(self):
        return ops.divide_no_nan(self.total, self.count)


@keras.saving.register_keras_serializable(package="keras_sam")
class DiceScore(_MeanPerSampleScore):
    """Mean per-sample Dice of masks predicted as `logits > threshold` (0: probability 0.5)."""

    score_index, default_name = 0, "dice"


@keras.saving.register_keras_serializable(package="keras_sam")
class IoUScore(_MeanPerSampleScore):
    """Mean per-sample IoU of masks predicted as `logits > threshold`."""

    score_index, default_name = 1, "iou"


@keras.saving.register_keras_serializable(package="keras_sam")
class OnProbabilities(ProbabilityMetric, keras.metrics.Metric):
    """Feeds a Keras metric probabilities: the sigmoid of the segmenter's mask logits."""

    _keras = keras
    _sigmoid = staticmethod(ops.sigmoid)

    def _keep_untracked(self, metric):
        object.__setattr__(self, "metric", metric)  # not tracked: Keras would list it twice

    @property
    def variables(self):
        return self.metric.variables
