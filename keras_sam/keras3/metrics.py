"""Dice and IoU metrics on mask logits for Keras 3, and the wrapper that hands other metrics
probabilities: the Keras 3 counterparts of `keras_sam.tfkeras.metrics` and the tf-keras segmenter's."""

import keras
from keras import ops

from keras_sam.common import losses_and_scores as objectives
from keras_sam.keras3.losses import per_sample_arrays
from keras_sam.common.metric_inputs import metric_object


class _MeanPerSampleScore(keras.metrics.Metric):
    """Mean over all samples seen of a per-sample score of masks thresholded from logits."""

    score_index = None  # 0: Dice, 1: IoU

    def __init__(self, threshold=0.0, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.threshold = threshold
        self.from_logits = True
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred, pixels, samples = per_sample_arrays(y_true, y_pred, sample_weight)
        total, count = objectives.score_sums(ops, y_true, y_pred, pixels, samples, self.threshold,
                                             self.score_index)
        self.total.assign_add(total)
        self.count.assign_add(count)

    def result(self):
        return ops.divide_no_nan(self.total, self.count)

    def reset_state(self):
        self.total.assign(0.0)
        self.count.assign(0.0)

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold}


@keras.saving.register_keras_serializable(package="keras_sam")
class DiceScore(_MeanPerSampleScore):
    """Mean per-sample Dice of masks predicted as `logits > threshold` (0: probability 0.5)."""

    score_index = 0

    def __init__(self, threshold=0.0, name="dice", dtype=None):
        super().__init__(threshold=threshold, name=name, dtype=dtype)


@keras.saving.register_keras_serializable(package="keras_sam")
class IoUScore(_MeanPerSampleScore):
    """Mean per-sample IoU of masks predicted as `logits > threshold`."""

    score_index = 1

    def __init__(self, threshold=0.0, name="iou", dtype=None):
        super().__init__(threshold=threshold, name=name, dtype=dtype)


@keras.saving.register_keras_serializable(package="keras_sam")
class OnProbabilities(keras.metrics.Metric):
    """Feeds a Keras metric probabilities: the sigmoid of the segmenter's mask logits."""

    def __init__(self, metric, name=None, dtype=None):
        metric = metric_object(metric, keras)
        super().__init__(name=name or metric.name, dtype=dtype or metric.dtype)
        object.__setattr__(self, "metric", metric)  # not tracked: Keras would list it twice

    @property
    def variables(self):
        return self.metric.variables

    def update_state(self, y_true, y_pred, sample_weight=None):
        return self.metric.update_state(y_true, ops.sigmoid(y_pred), sample_weight=sample_weight)

    def result(self):
        return self.metric.result()

    def reset_state(self):
        self.metric.reset_state()

    def get_config(self):
        return {"metric": keras.metrics.serialize(self.metric), "name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(**{**config, "metric": keras.metrics.deserialize(config["metric"])})
