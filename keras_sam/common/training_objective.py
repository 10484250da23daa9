"""SamSegmenter's training objective, written once for both model families (no Keras here).

What a training step minimises, given targets `y` (B, H, W), the model's output
{"mask_logits": (B, M, H, W), "iou_scores": (B, M)} and optional pixel weights (B, H, W):

1. the trained mask: with one mask per prompt, that mask; with M masks, each sample's mask with
   the lowest loss, pixel weights included (the SAM paper's "minimum over masks");
2. the mask loss: the compiled loss on the trained masks (the family's Keras calls it, so the
   user's loss, its reduction and its loss weights work as Keras made them);
3. the IoU head's loss: the mean-squared error between the predicted IoU of each mask and its
   true IoU (the mask thresholded at logit 0; no gradient flows through the target); each
   sample counts by its mean pixel weight, averaged over the samples like a Keras loss;
4. the reduction across replicas: a model copy that sees a share of the global batch returns its
   share of the global mean (`replica_share`), so that the gradients the strategy sums across
   replicas equal those of one replica on the global batch. Keras does this to its compiled loss
   under tf.distribute; JAX's DataParallel computes one loss on the global batch (1 replica).

The functions take `ops`: a NumPy-like namespace with `stop_gradient` and `sigmoid` (see
`ObjectiveOps`): the tf-keras family's is TensorFlow's NumPy API, the Keras 3 family's
`keras.ops`; `numpy_ops` is NumPy's, for everything but gradients.
"""

from typing import Any, NamedTuple, Protocol

import numpy as np

from keras_sam.common import losses_and_scores as objectives


class ObjectiveOps(Protocol):
    """The ops the objective uses: NumPy's names (`sum`, `mean`, `square`, `stack`, `argmin`,
    `take_along_axis`, `where`, `reshape`, `ones_like`, ...) plus `stop_gradient(x)` and
    `sigmoid(x)`."""

    def stop_gradient(self, x: Any) -> Any:
        ...

    def sigmoid(self, x: Any) -> Any:
        ...


class NamespaceWith:
    """A NumPy-like namespace (`tensorflow.experimental.numpy`, `numpy`) with the functions it
    lacks added (`stop_gradient`, `sigmoid`).

    Args:
        namespace: the module whose functions the objective calls.
        **extras: functions to add, by name.
    """

    def __init__(self, namespace, **extras):
        self._namespace = namespace
        self.__dict__.update(extras)

    def __getattr__(self, name):
        return getattr(self._namespace, name)


numpy_ops = NamespaceWith(np, stop_gradient=lambda x: x, sigmoid=lambda x: 1.0 / (1.0 + np.exp(-x)))


class ObjectiveTerms(NamedTuple):
    """One batch's objective, before the compiled loss is applied.

    trained: (B, H, W) the logits the compiled loss trains (best of M by loss).
    sample_weights: (B,) each sample's weight (mean pixel weight), or None.
    iou_errors: (B,) each sample's mean-squared error of the IoU head (unweighted), or None when the
        IoU head does not train.
    iou_loss: the IoU head's weighted term of this replica's batch, not yet shared across
        replicas (a scalar), or None.
    """

    trained: Any
    sample_weights: Any
    iou_errors: Any
    iou_loss: Any


def flatten_per_sample(ops, y_true, y_pred, sample_weight, size, per_sample):
    """Targets, predictions and weights as (B, N) float32 rows, N = `size` values per sample.

    Args:
        y_true, y_pred: (B, ...) arrays with `size` values per sample.
        sample_weight: None, per-sample weights (B,) (or (B, 1, ...)), or per-pixel weights.
        per_sample: whether `sample_weight` holds one weight per sample.

    Returns:
        (y_true, y_pred, pixel_weights or None, sample_weights or None): per-pixel weights come
        back scaled to mean 1 per sample, with their means as the sample weights.
    """
    y_true = objectives.flatten(ops, y_true, size)
    y_pred = objectives.flatten(ops, y_pred, size)
    if sample_weight is None:
        return y_true, y_pred, None, None
    if per_sample:
        return y_true, y_pred, None, ops.reshape(sample_weight, (-1,))
    pixels, samples = objectives.split_pixel_weights(ops, objectives.flatten(ops, sample_weight, size))
    return y_true, y_pred, pixels, samples


def sample_weights_of(ops, pixel_weights):
    """(B,) each sample's weight (its mean pixel weight) from (B, H, W) pixel weights, or None."""
    if pixel_weights is None:
        return None
    size = int(np.prod(pixel_weights.shape[1:]))
    return objectives.split_pixel_weights(ops, objectives.flatten(ops, pixel_weights, size))[1]


def per_pixel(ops, sample_weight, grid):
    """Per-sample weights (B,) or (B, 1) spread over the (grid, grid) logits grid: (B, grid, grid)."""
    return ops.reshape(sample_weight, (-1, 1, 1)) * ops.ones((1, grid, grid), dtype="float32")


def per_sample_mean(ops, values, pixel_weights=None):
    """(B, N) per-pixel losses -> (B,) their mean, each pixel counted by its weight (mean 1)."""
    return ops.mean(values if pixel_weights is None else values * pixel_weights, axis=1)


def per_sample_loss(ops, keras, loss, y, logits, pixel_weights, per_sample_arrays, mask_loss_type):
    """(B,) each sample's loss of one mask, pixel weights applied: what the best-of-M choice compares.

    Args:
        ops: the family's ops.
        keras: the family's Keras module (`tf_keras` or `keras`), to resolve a loss by name.
        loss: the compiled loss: a keras-sam MaskLoss (its `per_sample` on (B, N) rows), or any
            Keras loss, its name or a loss function (its unreduced per-pixel values on (B, H, W, 1)
            arrays, averaged per sample by the pixel weights).
        y, logits: (B, H, W) targets and one mask's logits.
        pixel_weights: (B, H, W) or None.
        per_sample_arrays: the family's `(y_true, y_pred, weights) -> (B, N) rows, pixel weights,
            sample weights`.
        mask_loss_type: the family's MaskLoss class.
    """
    if isinstance(loss, mask_loss_type):
        y_true, logits, pixels, _ = per_sample_arrays(y, logits, pixel_weights)
        return loss.per_sample(y_true, logits, pixels)
    loss = keras.losses.get(loss) if isinstance(loss, str) else loss
    function = loss.call if isinstance(loss, keras.losses.Loss) else loss
    _, values, pixels, _ = per_sample_arrays(y, function(y[..., None], logits[..., None]), pixel_weights)
    return per_sample_mean(ops, values, pixels)


def replica_share(value, replicas):
    """This replica's share of a loss averaged over its own samples: `value / replicas`.

    With R replicas each averaging its B samples, the strategy's sum of the replicas' gradients
    is then the gradient of the mean over all R*B samples: one replica on the global batch.
    """
    return value if replicas == 1 else value * (1.0 / replicas)


def mean_over_batch(ops, values, weights=None):
    """Keras's "sum_over_batch_size": the sum of (weighted) per-sample values over the sample count."""
    weighted = values if weights is None else values * weights
    return ops.sum(weighted) / ops.sum(ops.ones_like(weighted))


def trained_masks(ops, y, logits, per_sample_loss):
    """(B, H, W) the mask each sample trains: the only one, or the one of lowest loss.

    Args:
        y: (B, H, W) binary targets.
        logits: (B, M, H, W) mask logits.
        per_sample_loss: `f(y, logits_m) -> (B,)` the loss of each sample's mask m (pixel weights
            applied by the caller).
    """
    count = logits.shape[1]
    if count == 1:
        return logits[:, 0]
    losses = ops.stack([per_sample_loss(y, logits[:, m]) for m in range(count)], axis=1)
    best = ops.argmin(losses, axis=1)
    return ops.take_along_axis(logits, ops.reshape(best, (-1, 1, 1, 1)), axis=1)[:, 0]


def highest_scored_masks(ops, logits, iou_scores):
    """(B, H, W) each sample's mask with the highest predicted IoU: the one the model hands out,
    which the metrics score. logits (B, M, H, W), iou_scores (B, M)."""
    best = ops.argmax(iou_scores, axis=1)
    return ops.take_along_axis(logits, ops.reshape(best, (-1, 1, 1, 1)), axis=1)[:, 0]


def true_iou(ops, y, logits):
    """(B, M) the IoU of each mask, thresholded at logit 0, with the target: the IoU head's target."""
    size = int(np.prod(y.shape[1:]))
    truth = objectives.flatten(ops, y, size)
    ious = []
    for m in range(logits.shape[1]):
        mask = logits[:, m]
        predicted = objectives.flatten(ops, ops.where(mask > 0, ops.ones_like(mask), ops.zeros_like(mask)), size)
        ious.append(objectives.overlap_scores(ops, truth, predicted)[1])
    return ops.stop_gradient(ops.stack(ious, axis=1))


def iou_head_errors(ops, y, logits, iou_scores):
    """(B,) each sample's mean-squared error between predicted and true IoU over its M masks."""
    return ops.mean(ops.square(iou_scores - true_iou(ops, y, logits)), axis=1)


def objective_terms(ops, y, y_pred, pixel_weights, per_sample_loss, iou_loss_weight):
    """Everything of a training step's loss but the compiled loss itself (see the module docstring).

    Args:
        y: (B, H, W) binary targets on the logits grid.
        y_pred: the model's output dict.
        pixel_weights: (B, H, W) weights (per-sample weights spread over the pixels), or None.
        per_sample_loss: `f(y, logits_m) -> (B,)` the compiled loss of each sample, pixel weights
            applied (for the best-of-M choice).
        iou_loss_weight: weight of the IoU head's loss; 0 (or None) when the IoU head does not train.

    Returns:
        ObjectiveTerms.
    """
    logits, iou_scores = y_pred["mask_logits"], y_pred["iou_scores"]
    trained = trained_masks(ops, y, logits, per_sample_loss)
    sample_weights = sample_weights_of(ops, pixel_weights)
    if not iou_loss_weight:
        return ObjectiveTerms(trained, sample_weights, None, None)
    errors = iou_head_errors(ops, y, logits, iou_scores)
    return ObjectiveTerms(trained, sample_weights, errors,
                          iou_loss_weight * mean_over_batch(ops, errors, sample_weights))
