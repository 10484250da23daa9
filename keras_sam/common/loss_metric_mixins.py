"""The bodies of both model families' loss and metric classes, written once (no Keras here).

Each family defines its classes as one of these mixins before its own Keras base class
(`tf_keras.losses.Loss`, `keras.metrics.Metric`, ...) and supplies, as class attributes, what
differs between the two Kerases:

- `_ops`: the NumPy-like namespace the arithmetic runs on (`keras_sam.common.training_objective`);
- `_per_sample_arrays`: the family's `losses.per_sample_arrays` (a staticmethod);
- `_keras`: the family's Keras module (for metrics given by name, and serialisation);
- `_sigmoid`, `_add_counter(name)`, `_keep_untracked(metric)`: one-liners each Keras spells its
  own way.

The options, the arithmetic (`keras_sam.common.losses_and_scores`), the configs and so the saved
files are the same in both families.
"""

from keras_sam.common import losses_and_scores
from keras_sam.common.metric_inputs import metric_object


class DiceTerms:
    """Dice loss on mask logits with MONAI's options; see the families' `DiceLoss`."""

    def _set_dice_options(self, sigmoid, squared_pred, jaccard, smooth_nr, smooth_dr, batch):
        losses_and_scores.check_dice_options(smooth_nr, smooth_dr)
        self.sigmoid, self.squared_pred, self.jaccard = sigmoid, squared_pred, jaccard
        self.smooth_nr, self.smooth_dr, self.batch = smooth_nr, smooth_dr, batch

    def per_sample(self, y_true, logits, pixel_weights=None):
        return losses_and_scores.dice_loss_on_logits(self._ops, y_true, logits, pixel_weights,
                                                     **self._dice_options())

    def _dice_options(self):
        return {"sigmoid": self.sigmoid, "squared_pred": self.squared_pred, "jaccard": self.jaccard,
                "smooth_nr": self.smooth_nr, "smooth_dr": self.smooth_dr, "batch": self.batch}

    def get_config(self):
        return {**super().get_config(), **self._dice_options()}


class DiceBCETerms(DiceTerms):
    """Dice loss plus binary cross-entropy on the logits, each with its weight."""

    def __init__(self, dice_weight=1.0, bce_weight=1.0, name="dice_bce_loss", **kwargs):
        if kwargs.get("sigmoid") is False:
            raise ValueError("DiceBCELoss works on logits; sigmoid=False is not supported")
        super().__init__(name=name, **kwargs)  # the family's DiceLoss
        self.dice_weight, self.bce_weight = dice_weight, bce_weight

    def per_sample(self, y_true, logits, pixel_weights=None):
        return losses_and_scores.dice_bce_loss(self._ops, y_true, logits, pixel_weights, dice_weight=self.dice_weight,
                                               bce_weight=self.bce_weight, **self._dice_options())

    def get_config(self):
        return {**super().get_config(), "dice_weight": self.dice_weight, "bce_weight": self.bce_weight}


class FocalTerms:
    """Sigmoid focal loss on mask logits (Lin et al. 2017)."""

    def _set_focal_options(self, alpha, gamma):
        losses_and_scores.check_focal_options(alpha, gamma)
        self.alpha, self.gamma = alpha, gamma

    def per_sample(self, y_true, logits, pixel_weights=None):
        return losses_and_scores.focal_loss(self._ops, y_true, logits, pixel_weights, alpha=self.alpha,
                                            gamma=self.gamma)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "gamma": self.gamma}


class MeanPerSampleScore:
    """Mean over all samples seen of a per-sample score (Dice: `score_index` 0, IoU: 1) of masks
    thresholded from logits. It accumulates sums and counts, so the result does not depend on
    how the data is batched."""

    score_index = None
    default_name = None

    def __init__(self, threshold=0.0, name=None, dtype=None):
        super().__init__(name=name or self.default_name, dtype=dtype)
        self.threshold = threshold
        self.from_logits = True
        self.total = self._add_counter("total")
        self.count = self._add_counter("count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Args: y_true binary masks (B, [1,] H, W); y_pred logits of the same size; sample_weight
        (B,) or per pixel like y_true (areas become sums of weights; a sample counts by its mean
        weight)."""
        y_true, y_pred, pixels, samples = self._per_sample_arrays(y_true, y_pred, sample_weight)
        total, count = losses_and_scores.score_sums(self._ops, y_true, y_pred, pixels, samples, self.threshold,
                                                    self.score_index)
        self.total.assign_add(total)
        self.count.assign_add(count)

    def reset_state(self):
        self.total.assign(0.0)
        self.count.assign(0.0)

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold}


class ProbabilityMetric:
    """Feeds a Keras metric probabilities: the sigmoid of the segmenter's mask logits.

    The segmenters' `compile` wraps every metric not made with `from_logits=True` in one; the
    metric keeps its name in the logs.

    Args:
        metric: a metric, its name ("accuracy", "binary_iou", ...) or a metric function.
    """

    def __init__(self, metric, name=None, dtype=None):
        metric = metric_object(metric, self._keras)
        super().__init__(name=name or metric.name, dtype=dtype or metric.dtype)
        self._keep_untracked(metric)  # Keras would otherwise list it among the model's metrics too

    def update_state(self, y_true, y_pred, sample_weight=None):
        return self.metric.update_state(y_true, self._sigmoid(y_pred), sample_weight=sample_weight)

    def result(self):
        return self.metric.result()

    def reset_state(self):
        self.metric.reset_state()

    def get_config(self):
        return {"metric": self._keras.metrics.serialize(self.metric), "name": self.name, "dtype": self.dtype}

    @classmethod
    def from_config(cls, config):
        return cls(**{**config, "metric": cls._keras.metrics.deserialize(config["metric"])})
