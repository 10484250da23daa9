import numpy as np
import pytest

from keras_sam.tfkeras.metrics import DiceScore, IoUScore
from keras_sam.common.losses_and_scores import dice_per_sample, iou_per_sample

TRUTH = np.array([[[1, 1, 1], [0, 0, 0], [0, 0, 0]], [[0, 0, 0], [0, 0, 0], [0, 0, 0]],
                  [[1, 0, 0], [0, 0, 0], [0, 0, 0]]], np.float32)
PRED = np.array([[[1, 1, 0], [1, 0, 0], [0, 0, 0]], [[0, 0, 0], [0, 0, 0], [0, 0, 0]],
                 [[0, 0, 0], [0, 0, 0], [0, 0, 1]]], np.float32)


def test_per_sample_scores_on_hand_made_masks():
    # Sample 0: I=2, |Y|=3, |X|=3; sample 1: both empty (a perfect answer); sample 2: disjoint.
    np.testing.assert_allclose(dice_per_sample(TRUTH, PRED), [4 / 6, 1.0, 0.0])
    np.testing.assert_allclose(iou_per_sample(TRUTH, PRED), [2 / 4, 1.0, 0.0])


@pytest.mark.parametrize("metric_cls, expected", [(DiceScore, (4 / 6 + 1) / 3), (IoUScore, 0.5)])
def test_metric_is_the_mean_of_per_sample_scores_however_batched(metric_cls, expected):
    logits = np.where(PRED > 0, 5.0, -5.0).astype(np.float32)
    whole, split = metric_cls(), metric_cls()
    whole.update_state(TRUTH, logits)
    split.update_state(TRUTH[:1], logits[:1])
    split.update_state(TRUTH[1:], logits[1:])
    assert float(whole.result()) == pytest.approx(expected, rel=1e-6)
    assert float(split.result()) == pytest.approx(expected, rel=1e-6)


def test_metric_weights_samples_and_accepts_a_mask_axis():
    logits = np.where(PRED > 0, 5.0, -5.0).astype(np.float32)[:, None]
    metric = DiceScore()
    metric.update_state(TRUTH[:, None], logits, sample_weight=np.array([1.0, 0.0, 0.0]))
    assert float(metric.result()) == pytest.approx(4 / 6, rel=1e-6)
    metric.reset_state()
    assert float(metric.result()) == 0.0


def test_metrics_round_trip_through_config():
    metric = IoUScore(threshold=0.5, name="val_iou")
    assert IoUScore.from_config(metric.get_config()).get_config() == metric.get_config()
