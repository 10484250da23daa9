"""The training objective's arithmetic (keras_sam.common.training_objective) on hand-made masks, in NumPy:
the values both families' compute_loss are built from."""

import numpy as np
import pytest

from keras_sam.common import losses_and_scores
from keras_sam.common.training_objective import (mean_over_batch, numpy_ops, objective_terms, per_pixel,
                                                 replica_share, trained_masks, true_iou)

# Two 2x2 targets and three candidate masks each, as logits (+5 inside, -5 outside).
Y = np.array([[[1, 1], [0, 0]], [[0, 0], [0, 1]]], np.float32)
MASKS = np.array([
    [[[1, 0], [0, 0]], [[1, 1], [0, 0]], [[1, 1], [1, 1]]],  # IoU 1/2, 1, 1/2
    [[[0, 0], [0, 1]], [[1, 0], [0, 0]], [[0, 0], [1, 1]]],  # IoU 1, 0, 1/2
], np.float32)
LOGITS = np.where(MASKS > 0, 5.0, -5.0).astype(np.float32)


def dice_per_sample(y, logits):
    size = y[0].size
    return losses_and_scores.dice_loss_on_logits(numpy_ops, y.reshape(-1, size), logits.reshape(-1, size))


def test_the_trained_mask_is_each_samples_lowest_loss():
    trained = trained_masks(numpy_ops, Y, LOGITS, dice_per_sample)
    np.testing.assert_array_equal(trained, LOGITS[[0, 1], [1, 0]])


def test_one_mask_is_trained_as_it_is():
    np.testing.assert_array_equal(trained_masks(numpy_ops, Y, LOGITS[:, :1], dice_per_sample), LOGITS[:, 0])


def test_the_iou_heads_target_is_each_masks_iou_at_logit_zero():
    np.testing.assert_allclose(true_iou(numpy_ops, Y, LOGITS), [[0.5, 1.0, 0.5], [1.0, 0.0, 0.5]])


def test_the_iou_head_loss_weights_samples_by_their_mean_pixel_weight():
    scores = np.array([[0.5, 1.0, 0.5], [0.0, 0.0, 0.5]], np.float32)  # sample 1 misses mask 0 by 1
    weights = per_pixel(numpy_ops, np.array([1.0, 3.0], np.float32), 2)
    terms = objective_terms(numpy_ops, Y, {"mask_logits": LOGITS, "iou_scores": scores}, weights,
                            dice_per_sample, iou_loss_weight=2.0)
    np.testing.assert_allclose(terms.iou_errors, [0.0, 1 / 3])
    np.testing.assert_allclose(terms.sample_weights, [1.0, 3.0])
    # Keras's reduction: weighted errors summed over the samples, divided by the sample count.
    assert float(terms.iou_loss) == pytest.approx(2.0 * (0.0 * 1 + 1 / 3 * 3) / 2)
    frozen = objective_terms(numpy_ops, Y, {"mask_logits": LOGITS, "iou_scores": scores}, weights,
                             dice_per_sample, iou_loss_weight=0.0)
    assert frozen.iou_loss is None and frozen.iou_errors is None


def test_replicas_each_return_their_share_of_the_global_mean():
    values = np.array([1.0, 2.0, 3.0, 6.0])
    shares = [replica_share(mean_over_batch(np, part), 2) for part in np.split(values, 2)]
    assert sum(shares) == pytest.approx(mean_over_batch(np, values))
    assert replica_share(5.0, 1) == 5.0


def test_the_shared_objective_and_model_interface_import_no_keras():
    import subprocess
    import sys

    code = ("import sys, keras_sam.common.training_objective, keras_sam.common.model_interface; "
            "print([m for m in ('tensorflow', 'tf_keras', 'keras', 'jax', 'torch') if m in sys.modules])")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]"
