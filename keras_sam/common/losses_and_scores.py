"""The arithmetic of keras-sam's losses and metrics, written once for every backend.

Each function takes `ops`, a NumPy-like namespace: `numpy` itself, `tensorflow.experimental.numpy`
(the tf-keras family) or `keras.ops` (the Keras 3 family); they name these functions alike.
Arrays come flattened per sample, (B, N) float32, with optional per-pixel weights of the same
shape. The Keras classes in `losses.py` and `metrics.py` are thin wrappers over these.

Per-pixel weights: a sample's pixels count by their weights (Dice weights its sums; BCE and focal
take weighted means), and the sample itself counts by its mean weight (`split_pixel_weights`), so
a constant weight map equals a per-sample weight.
"""

import numpy as np


def flatten(ops, tensor, size):
    """(B, ...) -> (B, size)."""
    return ops.reshape(tensor, (-1, size))


def split_pixel_weights(ops, weights):
    """(B, N) pixel weights -> (pixel weights scaled to mean 1 per sample, (B,) per-sample means).

    A sample whose weights are all zero gets pixel weights of 1 and a sample weight of 0.
    """
    means = ops.mean(weights, axis=1)
    safe = ops.where(means > 0, means, 1.0)
    scaled = ops.where(means[:, None] > 0, weights / safe[:, None], 1.0)
    return scaled, means


def dice_loss(ops, y_true, probs, weights=None, *, squared_pred=False, jaccard=False, smooth_nr=1e-5,
              smooth_dr=1e-5, batch=False):
    """Soft Dice loss of each sample, as MONAI's DiceLoss computes it.

    `1 - (2 * |X∩Y| + smooth_nr) / (|X| + |Y| + smooth_dr)` (Milletari et al. 2016, V-Net), with
    `|X|` the sum of probabilities (of their squares if `squared_pred`); with `jaccard` the
    denominator becomes `2 * (|X| + |Y| - |X∩Y|)`; every sum weighted by `weights`.

    Args:
        y_true, probs: (B, N) binary masks and predicted probabilities.
        weights: optional (B, N) pixel weights.
        batch: sum over the whole batch before dividing (one value, repeated for each sample).

    Returns:
        (B,) losses.
    """
    weights = 1.0 if weights is None else weights
    intersection = ops.sum(weights * y_true * probs, axis=1)
    ground = ops.sum(weights * (y_true * y_true if squared_pred else y_true), axis=1)
    predicted = ops.sum(weights * (probs * probs if squared_pred else probs), axis=1)
    if batch:
        each = ops.ones_like(intersection)
        intersection, ground, predicted = (each * ops.sum(total) for total in (intersection, ground, predicted))
    denominator = ground + predicted
    if jaccard:
        denominator = 2.0 * (denominator - intersection)
    return 1.0 - (2.0 * intersection + smooth_nr) / (denominator + smooth_dr)


def dice_loss_on_logits(ops, y_true, logits, weights=None, *, sigmoid=True, **options):
    """`dice_loss` of `ops.sigmoid(logits)` (of `logits` themselves, as probabilities, when not
    `sigmoid`); `options` are dice_loss's. `ops` needs `sigmoid` (keras.ops has it)."""
    return dice_loss(ops, y_true, ops.sigmoid(logits) if sigmoid else logits, weights, **options)


def dice_bce_loss(ops, y_true, logits, weights=None, *, dice_weight=1.0, bce_weight=1.0, **dice_options):
    """`dice_weight` times the Dice loss plus `bce_weight` times the binary cross-entropy (the
    focal loss with gamma 0 and no alpha) of each sample, on logits.

    Returns:
        (B,) losses.
    """
    dice = dice_loss_on_logits(ops, y_true, logits, weights, **dice_options)
    bce = focal_loss(ops, y_true, logits, weights, alpha=None, gamma=0.0)
    return dice_weight * dice + bce_weight * bce


def focal_loss(ops, y_true, logits, weights=None, *, alpha=0.25, gamma=2.0):
    """Sigmoid focal loss (Lin et al. 2017): the (weighted) mean over each sample's pixels.

    Args:
        y_true, logits: (B, N) binary masks and mask logits.
        weights: optional (B, N) pixel weights.
        alpha: weight of the positive class (0 to 1), or None for no class weighting.
        gamma: focusing exponent; 0 gives binary cross-entropy.

    Returns:
        (B,) losses.
    """
    # Binary cross-entropy on logits, stable for any magnitude.
    cross_entropy = ops.maximum(logits, 0.0) - logits * y_true + ops.log1p(ops.exp(-ops.abs(logits)))
    probs = 1.0 / (1.0 + ops.exp(-logits))
    p_t = probs * y_true + (1.0 - probs) * (1.0 - y_true)
    loss = cross_entropy if gamma == 0 else cross_entropy * ops.power(1.0 - p_t, gamma)
    if alpha is not None:
        loss = loss * (alpha * y_true + (1.0 - alpha) * (1.0 - y_true))
    if weights is None:
        return ops.mean(loss, axis=1)
    return ops.sum(weights * loss, axis=1) / ops.maximum(ops.sum(weights, axis=1), 1e-12)


def overlap_scores(ops, y_true, predicted, weights=None):
    """Dice and IoU of each sample's binary masks (1 when both are empty).

    Args:
        y_true, predicted: (B, N) 0/1 masks (threshold logits first).
        weights: optional (B, N) pixel weights: areas are sums of weights.

    Returns:
        (dice, iou), each (B,).
    """
    weights = 1.0 if weights is None else weights
    intersection = ops.sum(weights * y_true * predicted, axis=1)
    true_area = ops.sum(weights * y_true, axis=1)
    predicted_area = ops.sum(weights * predicted, axis=1)
    total = true_area + predicted_area
    union = total - intersection
    dice = ops.where(total > 0, 2.0 * intersection / ops.maximum(total, 1e-12), 1.0)
    iou = ops.where(union > 0, intersection / ops.maximum(union, 1e-12), 1.0)
    return dice, iou


def score_sums(ops, y_true, logits, pixel_weights, sample_weights, threshold, which):
    """What a Dice or IoU metric adds up for a batch: (sum of weighted scores, sum of weights).

    Args:
        y_true, logits: (B, N) binary masks and mask logits.
        pixel_weights, sample_weights: from `split_pixel_weights` (or per-sample weights), or None.
        threshold: logit above which a pixel is in the mask.
        which: 0 for Dice, 1 for IoU.
    """
    truth = ops.where(y_true > 0.5, ops.ones_like(y_true), ops.zeros_like(y_true))
    predicted = ops.where(logits > threshold, ops.ones_like(logits), ops.zeros_like(logits))
    scores = overlap_scores(ops, truth, predicted, pixel_weights)[which]
    weights = ops.ones_like(scores) if sample_weights is None else sample_weights * ops.ones_like(scores)
    return ops.sum(scores * weights), ops.sum(weights)


def check_dice_options(smooth_nr, smooth_dr):
    if smooth_nr < 0 or smooth_dr < 0:
        raise ValueError(f"smooth_nr and smooth_dr must be >= 0; got smooth_nr={smooth_nr}, smooth_dr={smooth_dr}")


def check_focal_options(alpha, gamma):
    if alpha is not None and not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1] or None; got {alpha}")
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0; got {gamma}")


def dice_per_sample(y_true, y_pred_mask):
    """Dice 2|X∩Y| / (|X| + |Y|) of each sample's binary masks, in NumPy; 1 when both are empty.

    Args:
        y_true: binary masks (B, ...).
        y_pred_mask: binary predicted masks (B, ...): threshold logits at 0 first.

    Returns:
        (B,) float32 array.
    """
    return _numpy_overlap(y_true, y_pred_mask)[0]


def iou_per_sample(y_true, y_pred_mask):
    """Intersection over union |X∩Y| / |X∪Y| of each sample's binary masks, in NumPy."""
    return _numpy_overlap(y_true, y_pred_mask)[1]


def _numpy_overlap(y_true, y_pred_mask):
    y_true, y_pred_mask = np.asarray(y_true), np.asarray(y_pred_mask)
    size = int(np.prod(y_true.shape[1:]))
    truth = (y_true.reshape(-1, size) > 0.5).astype(np.float32)
    predicted = (y_pred_mask.reshape(-1, size) > 0.5).astype(np.float32)
    return overlap_scores(np, truth, predicted)
