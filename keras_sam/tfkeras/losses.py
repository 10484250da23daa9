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

from keras_sam.common import losses_and_scores as objectives
from keras_sam.common import training_objective


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

    Subclasses define `per_sample(y_true, logits, pixel_weights)` on (B, N) arrays.
    """

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
class DiceLoss(MaskLoss):
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

    def __init__(
        self,
        sigmoid=True,
        squared_pred=False,
        jaccard=False,
        smooth_nr=1e-5,
        smooth_dr=1e-5,
        batch=False,
        reduction=keras.losses.Reduction.AUTO,
        name="dice_loss",
    ):
        super().__init__(reduction=reduction, name=name)
        objectives.check_dice_options(smooth_nr, smooth_dr)
        self.sigmoid = sigmoid
        self.squared_pred = squared_pred
        self.jaccard = jaccard
        self.smooth_nr = smooth_nr
        self.smooth_dr = smooth_dr
        self.batch = batch

    def per_sample(self, y_true, logits, pixel_weights=None):
        return objectives.dice_loss_on_logits(OPS, y_true, logits, pixel_weights, **self._dice_options())

    def _dice_options(self):
        return {"sigmoid": self.sigmoid, "squared_pred": self.squared_pred, "jaccard": self.jaccard,
                "smooth_nr": self.smooth_nr, "smooth_dr": self.smooth_dr, "batch": self.batch}

    def get_config(self):
        return {**super().get_config(), **self._dice_options()}


@keras.saving.register_keras_serializable(package="keras_sam")
class DiceBCELoss(DiceLoss):
    """Dice loss plus binary cross-entropy on the logits, each with its weight.

    Args:
        dice_weight: weight of the Dice term.
        bce_weight: weight of the mean per-pixel binary cross-entropy.
        **kwargs: DiceLoss options.
    """

    def __init__(self, dice_weight=1.0, bce_weight=1.0, name="dice_bce_loss", **kwargs):
        if kwargs.get("sigmoid") is False:
            raise ValueError("DiceBCELoss works on logits; sigmoid=False is not supported")
        super().__init__(name=name, **kwargs)
        self.dice_weight = dice_weight
        self.bce_weight = bce_weight

    def per_sample(self, y_true, logits, pixel_weights=None):
        return objectives.dice_bce_loss(OPS, y_true, logits, pixel_weights, dice_weight=self.dice_weight,
                                        bce_weight=self.bce_weight, **self._dice_options())

    def get_config(self):
        return {**super().get_config(), "dice_weight": self.dice_weight, "bce_weight": self.bce_weight}


@keras.saving.register_keras_serializable(package="keras_sam")
class FocalLoss(MaskLoss):
    """Sigmoid focal loss on mask logits (Lin et al. 2017), as used to train SAM.

    Args:
        alpha: weight of the positive class, in [0, 1], or None.
        gamma: focusing exponent, >= 0.
    """

    def __init__(self, alpha=0.25, gamma=2.0, reduction=keras.losses.Reduction.AUTO, name="focal_loss"):
        super().__init__(reduction=reduction, name=name)
        objectives.check_focal_options(alpha, gamma)
        self.alpha = alpha
        self.gamma = gamma

    def per_sample(self, y_true, logits, pixel_weights=None):
        return objectives.focal_loss(OPS, y_true, logits, pixel_weights, alpha=self.alpha, gamma=self.gamma)

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "gamma": self.gamma}


LOSSES = {"dice": DiceLoss, "dice+bce": DiceBCELoss, "focal": FocalLoss}


def get_loss(name):
    """A loss by its command-line name: 'dice', 'dice+bce' or 'focal'."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    return LOSSES[name]()
