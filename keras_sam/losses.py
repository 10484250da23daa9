"""Segmentation losses on mask logits: Dice (as MONAI defines it), Dice + BCE, and focal.

The arithmetic lives in `dice_loss_per_sample` and `focal_loss_per_sample`; the Keras classes are thin
wrappers that add the options, serialisation and Keras's reduction (a mean over the batch, so the
loss never depends on a global batch size).
"""

import tensorflow as tf
import tf_keras as keras


def _flatten_per_sample(tensor):
    """(B, ...) -> (B, N)."""
    tensor = tf.convert_to_tensor(tensor)
    return tf.reshape(tensor, (tf.shape(tensor)[0], -1))


def dice_loss_per_sample(
    y_true, probs, *, squared_pred=False, jaccard=False, smooth_nr=1e-5, smooth_dr=1e-5, batch=False
):
    """Soft Dice loss of each sample, as MONAI's DiceLoss computes it.

    `1 - (2 * |X∩Y| + smooth_nr) / (|X| + |Y| + smooth_dr)` (Milletari et al. 2016, V-Net), with
    `|X|` the sum of probabilities (of their squares if `squared_pred`). With `jaccard`, the
    denominator becomes `2 * (|X| + |Y| - |X∩Y|)`.

    Args:
        y_true: binary masks, shape (B, ...).
        probs: predicted probabilities, same shape.
        batch: sum over the whole batch before dividing (one value, repeated for each sample).

    Returns:
        Shape (B,) float32.
    """
    y_true = tf.cast(_flatten_per_sample(y_true), tf.float32)
    probs = tf.cast(_flatten_per_sample(probs), tf.float32)
    intersection = tf.reduce_sum(y_true * probs, axis=1)
    ground = tf.reduce_sum(y_true * y_true if squared_pred else y_true, axis=1)
    predicted = tf.reduce_sum(probs * probs if squared_pred else probs, axis=1)
    if batch:
        intersection = tf.reduce_sum(intersection, keepdims=True)
        ground = tf.reduce_sum(ground, keepdims=True)
        predicted = tf.reduce_sum(predicted, keepdims=True)
    denominator = ground + predicted
    if jaccard:
        denominator = 2.0 * (denominator - intersection)
    loss = 1.0 - (2.0 * intersection + smooth_nr) / (denominator + smooth_dr)
    return tf.broadcast_to(loss, tf.shape(y_true)[:1])


def focal_loss_per_sample(y_true, logits, *, alpha=0.25, gamma=2.0):
    """Sigmoid focal loss (Lin et al. 2017) averaged over the pixels of each sample.

    Args:
        y_true: binary masks, shape (B, ...).
        logits: mask logits, same shape.
        alpha: weight of the positive class (0 to 1), or None for no class weighting.
        gamma: focusing exponent; 0 gives binary cross-entropy.

    Returns:
        Shape (B,) float32.
    """
    y_true = tf.cast(_flatten_per_sample(y_true), tf.float32)
    logits = tf.cast(_flatten_per_sample(logits), tf.float32)
    cross_entropy = tf.nn.sigmoid_cross_entropy_with_logits(labels=y_true, logits=logits)
    probs = tf.sigmoid(logits)
    p_t = probs * y_true + (1 - probs) * (1 - y_true)
    loss = cross_entropy * tf.pow(1 - p_t, gamma)
    if alpha is not None:
        loss *= alpha * y_true + (1 - alpha) * (1 - y_true)
    return tf.reduce_mean(loss, axis=1)


class DiceLoss(keras.losses.Loss):
    """Dice loss on mask logits, with MONAI's options.

    Args:
        sigmoid: apply a sigmoid to `y_pred` (True: `y_pred` are logits, as SamSegmenter gives).
        squared_pred: square the predictions and targets in the denominator.
        jaccard: compute the soft Jaccard (IoU) loss instead.
        smooth_nr: added to the numerator; keeps empty masks from giving 0/0.
        smooth_dr: added to the denominator.
        batch: sum over the batch before dividing instead of averaging per-image losses.

    Shapes: `y_true` binary, (B, H, W) or (B, 1, H, W); `y_pred` the same shape.

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
        if smooth_nr < 0 or smooth_dr < 0:
            raise ValueError(
                f"smooth_nr and smooth_dr must be >= 0; got smooth_nr={smooth_nr}, smooth_dr={smooth_dr}"
            )
        self.sigmoid = sigmoid
        self.squared_pred = squared_pred
        self.jaccard = jaccard
        self.smooth_nr = smooth_nr
        self.smooth_dr = smooth_dr
        self.batch = batch

    def call(self, y_true, y_pred):
        probs = tf.sigmoid(y_pred) if self.sigmoid else y_pred
        return dice_loss_per_sample(
            y_true,
            probs,
            squared_pred=self.squared_pred,
            jaccard=self.jaccard,
            smooth_nr=self.smooth_nr,
            smooth_dr=self.smooth_dr,
            batch=self.batch,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            sigmoid=self.sigmoid,
            squared_pred=self.squared_pred,
            jaccard=self.jaccard,
            smooth_nr=self.smooth_nr,
            smooth_dr=self.smooth_dr,
            batch=self.batch,
        )
        return config


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

    def call(self, y_true, y_pred):
        dice = super().call(y_true, y_pred)
        bce = focal_loss_per_sample(y_true, y_pred, alpha=None, gamma=0.0)
        return self.dice_weight * dice + self.bce_weight * bce

    def get_config(self):
        config = super().get_config()
        config.update(dice_weight=self.dice_weight, bce_weight=self.bce_weight)
        return config


class FocalLoss(keras.losses.Loss):
    """Sigmoid focal loss on mask logits (Lin et al. 2017), as used to train SAM.

    Args:
        alpha: weight of the positive class, in [0, 1], or None.
        gamma: focusing exponent, >= 0.
    """

    def __init__(self, alpha=0.25, gamma=2.0, reduction=keras.losses.Reduction.AUTO, name="focal_loss"):
        super().__init__(reduction=reduction, name=name)
        if alpha is not None and not 0 <= alpha <= 1:
            raise ValueError(f"alpha must be in [0, 1] or None; got {alpha}")
        if gamma < 0:
            raise ValueError(f"gamma must be >= 0; got {gamma}")
        self.alpha = alpha
        self.gamma = gamma

    def call(self, y_true, y_pred):
        return focal_loss_per_sample(y_true, y_pred, alpha=self.alpha, gamma=self.gamma)

    def get_config(self):
        config = super().get_config()
        config.update(alpha=self.alpha, gamma=self.gamma)
        return config


LOSSES = {"dice": DiceLoss, "dice+bce": DiceBCELoss, "focal": FocalLoss}


def get_loss(name):
    """A loss by its command-line name: 'dice', 'dice+bce' or 'focal'."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    return LOSSES[name]()
