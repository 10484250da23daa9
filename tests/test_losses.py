import numpy as np
import pytest
import tensorflow as tf

from keras_sam.tfkeras.losses import DiceBCELoss, DiceLoss, FocalLoss, get_loss

# Hand-made 3x3 masks. Sample 0: truth has 3 pixels, prediction covers 2 of them plus 1 more.
TRUTH = np.array(
    [
        [[1, 1, 1], [0, 0, 0], [0, 0, 0]],
        [[0, 0, 0], [0, 0, 0], [0, 0, 0]],
    ],
    np.float32,
)
PROBS = np.array(
    [
        [[1, 1, 0], [1, 0, 0], [0, 0, 0]],
        [[0.5, 0, 0], [0, 0, 0], [0, 0, 0]],
    ],
    np.float32,
)


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        # MONAI: 1 - (2*I + nr) / (|Y| + |X| + dr). Sample 0: I=2, |Y|=3, |X|=3; sample 1: I=0, |X|=0.5.
        ({"smooth_nr": 0.0, "smooth_dr": 1e-5}, [1 - 4 / (6 + 1e-5), 1 - 0 / (0.5 + 1e-5)]),
        ({}, [1 - (4 + 1e-5) / (6 + 1e-5), 1 - 1e-5 / (0.5 + 1e-5)]),
        # squared_pred: sample 1 has |X| = 0.25.
        ({"squared_pred": True, "smooth_nr": 0.0}, [1 - 4 / (6 + 1e-5), 1.0]),
        # jaccard: denominator 2 * (|X| + |Y| - I) = 2 * 4 = 8.
        ({"jaccard": True, "smooth_nr": 0.0, "smooth_dr": 0.0}, [1 - 4 / 8, 1.0]),
        # batch: I=2, |Y|=3, |X|=3.5 over the whole batch, one value for both samples.
        ({"batch": True, "smooth_nr": 0.0, "smooth_dr": 0.0}, [1 - 4 / 6.5] * 2),
    ],
)
def test_dice_loss_matches_monai_formula(kwargs, expected):
    loss = DiceLoss(sigmoid=False, reduction="none", **kwargs)
    np.testing.assert_allclose(loss(TRUTH, PROBS).numpy(), expected, rtol=1e-5)


def test_dice_loss_takes_logits_and_averages_over_the_batch():
    logits = np.where(TRUTH > 0, 30.0, -30.0).astype(np.float32)
    assert float(DiceLoss()(TRUTH, logits)) == pytest.approx(0.0, abs=1e-5)
    logits[0] = -logits[0]
    # Sample 0 fully wrong (loss ~1); sample 1 empty and predicted empty (loss 0 thanks to smoothing).
    assert float(DiceLoss()(TRUTH, logits)) == pytest.approx(0.5, abs=1e-4)


def test_dice_loss_is_the_same_for_batch_size_one():
    logits = np.random.default_rng(0).normal(size=TRUTH.shape).astype(np.float32)
    full = DiceLoss(reduction="none")(TRUTH, logits).numpy()
    single = [float(DiceLoss()(TRUTH[i : i + 1], logits[i : i + 1])) for i in range(2)]
    np.testing.assert_allclose(full, single, rtol=1e-6)


def test_dice_bce_adds_binary_cross_entropy():
    logits = np.random.default_rng(1).normal(size=TRUTH.shape).astype(np.float32)
    bce = tf.reduce_mean(
        tf.nn.sigmoid_cross_entropy_with_logits(labels=TRUTH, logits=logits), axis=[1, 2]
    ).numpy()
    dice = DiceLoss(reduction="none")(TRUTH, logits).numpy()
    combined = DiceBCELoss(bce_weight=0.5, reduction="none")(TRUTH, logits).numpy()
    np.testing.assert_allclose(combined, dice + 0.5 * bce, rtol=1e-5)


def test_focal_loss_down_weights_easy_pixels():
    easy = np.where(TRUTH > 0, 4.0, -4.0).astype(np.float32)
    hard = np.zeros_like(easy)
    focal = FocalLoss(alpha=None, gamma=2.0)
    assert float(focal(TRUTH, easy)) < 0.01 * float(focal(TRUTH, hard))
    # gamma=0 and no alpha is plain binary cross-entropy: log(2) for logits of 0.
    assert float(FocalLoss(alpha=None, gamma=0.0)(TRUTH, hard)) == pytest.approx(np.log(2), rel=1e-5)


@pytest.mark.parametrize("cls", [DiceLoss, DiceBCELoss, FocalLoss])
def test_losses_round_trip_through_config(cls):
    loss = cls(name="mine")
    clone = cls.from_config(loss.get_config())
    assert clone.get_config() == loss.get_config()


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: DiceLoss(smooth_nr=-1), "smooth_nr=-1"),
        (lambda: DiceBCELoss(sigmoid=False), "works on logits"),
        (lambda: FocalLoss(alpha=2), "alpha must be in"),
        (lambda: FocalLoss(gamma=-1), "gamma must be"),
        (lambda: get_loss("hinge"), "dice, dice\\+bce, focal"),
    ],
)
def test_bad_loss_options_are_rejected(make, message):
    with pytest.raises(ValueError, match=message):
        make()
