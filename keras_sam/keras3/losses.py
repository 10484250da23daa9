"""Segmentation losses on mask logits for Keras 3 (any backend): Dice, Dice + BCE, focal.

The same options, arithmetic (`keras_sam.common.losses_and_scores`, here through `keras.ops`) and per-pixel
`sample_weight` rule as the tf-keras family's `keras_sam.tfkeras.losses`.
"""

import keras
from keras import ops

from keras_sam.common import training_objective
from keras_sam.common.loss_metric_mixins import DiceBCETerms, DiceTerms, FocalTerms

REDUCTIONS = ("sum_over_batch_size", "sum", "mean", "none", None)


# The objective's ops in this family: keras.ops (NumPy's names, and stop_gradient).
OPS = ops


def replicas():
    """How many model copies share a batch and sum their gradients: tf.distribute's replicas on
    the TensorFlow backend (as Keras counts them for its own losses), else 1 (JAX's and PyTorch's
    data parallelism compute one loss on the global batch)."""
    if keras.backend.backend() != "tensorflow":
        return 1
    import tensorflow as tf  # only on the TensorFlow backend, where it is loaded already

    return tf.distribute.get_strategy().num_replicas_in_sync


def per_sample_arrays(y_true, y_pred, sample_weight=None):
    """(B, N) float32 targets and predictions, and (pixel weights, sample weights) or Nones.

    Per-pixel weights (any shape with the targets' size per sample) come back scaled to mean 1
    per sample, with their means as the sample weights.
    """
    y_true = ops.cast(ops.convert_to_tensor(y_true), "float32")
    size = 1
    for dimension in y_true.shape[1:]:
        size *= dimension
    per_sample = False
    if sample_weight is not None:
        sample_weight = ops.cast(ops.convert_to_tensor(sample_weight), "float32")
        per_sample = len(sample_weight.shape) <= 1 or all(d == 1 for d in sample_weight.shape[1:])
    return training_objective.flatten_per_sample(OPS, y_true, ops.cast(y_pred, "float32"), sample_weight,
                                                 size, per_sample)


def _reduce(values, weights, reduction):
    weighted = values if weights is None else values * weights
    if reduction in ("none", None):
        return weighted
    if reduction == "sum":
        return ops.sum(weighted)
    if reduction == "mean" and weights is not None:
        mean = ops.sum(weighted) / ops.maximum(ops.sum(weights), 1e-12)
    else:
        mean = ops.mean(weighted)
    # As Keras's own losses do: each replica's share of the global mean.
    return training_objective.replica_share(mean, replicas())


class MaskLoss(keras.losses.Loss):
    """A loss computed per sample from mask logits, that also takes per-pixel `sample_weight`."""

    _ops = OPS

    def __init__(self, reduction="sum_over_batch_size", name=None, dtype=None):
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}; got {reduction!r}")
        super().__init__(reduction=reduction, name=name, dtype=dtype)

    def per_sample(self, y_true, logits, pixel_weights=None):
        raise NotImplementedError

    def call(self, y_true, y_pred):
        y_true, y_pred, _, _ = per_sample_arrays(y_true, y_pred)
        return self.per_sample(y_true, y_pred)

    def __call__(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred, pixels, samples = per_sample_arrays(y_true, y_pred, sample_weight)
        return _reduce(self.per_sample(y_true, y_pred, pixels), samples, self.reduction)


@keras.saving.register_keras_serializable(package="keras_sam")
class DiceLoss(DiceTerms, MaskLoss):
    """Dice loss on mask logits with MONAI's options (see keras_sam.tfkeras.losses.DiceLoss)."""

    def __init__(self, sigmoid=True, squared_pred=False, jaccard=False, smooth_nr=1e-5, smooth_dr=1e-5,
                 batch=False, reduction="sum_over_batch_size", name="dice_loss", dtype=None):
        super().__init__(reduction=reduction, name=name, dtype=dtype)
        self._set_dice_options(sigmoid, squared_pred, jaccard, smooth_nr, smooth_dr, batch)


@keras.saving.register_keras_serializable(package="keras_sam")
class DiceBCELoss(DiceBCETerms, DiceLoss):
    """Dice loss plus binary cross-entropy on the logits, each with its weight."""


@keras.saving.register_keras_serializable(package="keras_sam")
class FocalLoss(FocalTerms, MaskLoss):
    """Sigmoid focal loss on mask logits (Lin et al. 2017)."""

    def __init__(self, alpha=0.25, gamma=2.0, reduction="sum_over_batch_size", name="focal_loss", dtype=None):
        super().__init__(reduction=reduction, name=name, dtype=dtype)
        self._set_focal_options(alpha, gamma)
