"""Segmentation losses on mask logits for tf-keras: Dice (as MONAI defines it), Dice + BCE, focal.

The arithmetic is `keras_sam.common.losses_and_scores`'; these classes add the options, serialisation and
Keras's reduction (a mean over the batch, so the loss never depends on a global batch size).

`sample_weight` may be per sample, (B,), or per pixel, the targets' shape ((B, H, W) or
(B, 1, H, W)): per-pixel weights weight each sample's sums (Dice) or means (BCE, focal), and the
sample counts by its mean weight.
"""

import tensorflow as tf
import tensorflow.experimental.numpy as tnp
import tf_keras as keras

from keras_sam.common import training_objective
from keras_sam.common.loss_metric_mixins import DiceBCETerms, DiceTerms, FocalTerms


# The objective's ops in this family: TensorFlow's NumPy API, with TensorFlow's stop_gradient and
# (numerically stable) sigmoid.
OPS = training_objective.NamespaceWith(tnp, stop_gradient=tf.stop_gradient, sigmoid=tf.sigmoid)


def per_sample_arrays(y_true, y_pred, sample_weight=None):
    """Targets, predictions and weights flattened per sample, (B, N) float32.

    Returns:
        (y_true, y_pred, pixel_weights or None, sample_weights or None): per-pixel weights come
        back scaled to mean 1 per sample, with their means as the sample weights.
    """
    y_true = tf.cast(tf.convert_to_tensor(y_true), tf.float32)
    size = y_true.shape[1:].num_elements()
    if size is None:  # a shape only known when the batch arrives
        size = tf.reduce_prod(tf.shape(y_true)[1:])
    per_sample = False
    if sample_weight is not None:
        sample_weight = tf.cast(tf.convert_to_tensor(sample_weight), tf.float32)
        per_sample = sample_weight.shape.rank is not None and (
            sample_weight.shape.rank <= 1 or sample_weight.shape[1:].num_elements() == 1)
    return training_objective.flatten_per_sample(OPS, y_true, tf.cast(y_pred, tf.float32), sample_weight,
                                                 size, per_sample)


class MaskLoss(keras.losses.Loss):
    """A loss computed per sample from mask logits, that also takes per-pixel `sample_weight`.

    Subclasses define `per_sample(y_true, logits, pixel_weights)` on (B, N) arrays (the
    mixins of `keras_sam.common.loss_metric_mixins`, on this family's `_ops`).
    """

    _ops = OPS

    def per_sample(self, y_true, logits, pixel_weights=None):
        raise NotImplementedError

    # Not converted by autograph: the arithmetic branches on options and static shapes only, and
    # converting it would lengthen every training step's trace for nothing.
    @tf.autograph.experimental.do_not_convert
    def call(self, y_true, y_pred):
        y_true, y_pred, _, _ = per_sample_arrays(y_true, y_pred)
        return self.per_sample(y_true, y_pred)

    def __call__(self, y_true, y_pred, sample_weight=None):
        y_true, y_pred, pixels, samples = per_sample_arrays(y_true, y_pred, sample_weight)
        if pixels is None:
            return super().__call__(y_true, y_pred, samples)
        with tf.name_scope(self.name):
            return keras.__internal__.losses.compute_weighted_loss(
                self.per_sample(y_true, y_pred, pixels), samples, reduction=self._get_reduction())


@keras.saving.register_keras_serializable(package="keras_sam")
class DiceLoss(DiceTerms, MaskLoss):
    """Dice loss on mask logits, with MONAI's options.

    Args:
        sigmoid: apply a sigmoid to `y_pred` (True: `y_pred` are logits, as SamSegmenter gives).
        squared_pred: square the predictions and targets in the denominator.
        jaccard: compute the soft Jaccard (IoU) loss instead.
        smooth_nr: added to the numerator; keeps empty masks from giving 0/0.
        smooth_dr: added to the denominator.
        batch: sum over the batch before dividing instead of averaging per-image losses.

    Shapes: `y_true` binary, (B, H, W) or (B, 1, H, W); `y_pred` the same shape; `sample_weight`
    (B,) or per pixel like `y_true`.

    Example:
        >>> loss = DiceLoss()
        >>> float(loss(tf.ones((1, 4, 4)), tf.fill((1, 4, 4), 20.0))) < 1e-4
        True
    """

    def __init__(self, sigmoid=True, squared_pred=False, jaccard=False, smooth_nr=1e-5, smooth_dr=1e-5,
                 batch=False, reduction=keras.losses.Reduction.AUTO, name="dice_loss"):
        super().__init__(reduction=reduction, name=name)
        self._set_dice_options(sigmoid, squared_pred, jaccard, smooth_nr, smooth_dr, batch)


@keras.saving.register_keras_serializable(package="keras_sam")
class DiceBCELoss(DiceBCETerms, DiceLoss):
    """Dice loss plus binary cross-entropy on the logits, each with its weight.

    Args:
        dice_weight: weight of the Dice term.
        bce_weight: weight of the mean per-pixel binary cross-entropy.
        **kwargs: DiceLoss options.
    """


@keras.saving.register_keras_serializable(package="keras_sam")
class FocalLoss(FocalTerms, MaskLoss):
    """Sigmoid focal loss on mask logits (Lin et al. 2017), as used to train SAM.

    Args:
        alpha: weight of the positive class, in [0, 1], or None.
        gamma: focusing exponent, >= 0.
    """

    def __init__(self, alpha=0.25, gamma=2.0, reduction=keras.losses.Reduction.AUTO, name="focal_loss"):
        super().__init__(reduction=reduction, name=name)
        self._set_focal_options(alpha, gamma)


LOSSES = {"dice": DiceLoss, "dice+bce": DiceBCELoss, "focal": FocalLoss}


def get_loss(name):
    """A loss by its command-line name: 'dice', 'dice+bce' or 'focal'."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    return LOSSES[name]()
