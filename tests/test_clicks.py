"""Corrective clicks: the simulated user on hand-made masks, NoC, the in-graph clicker, the mask fed
back, and a clicks training step traced once from cached embeddings."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow.experimental.numpy as tnp
import tf_keras as keras

from conftest import tiny_segmenter
from keras_sam.common import clicks
from keras_sam.common.clicks import Click, clicks_to_reach, first_click, next_click, simulate_clicks
from keras_sam.common.training_objective import NamespaceWith


def _square(shape, top, left, side):
    mask = np.zeros(shape, bool)
    mask[top:top + side, left:left + side] = True
    return mask


def test_the_first_click_is_positive_at_the_interior_most_pixel():
    # A 7x7 square with a one-pixel tail: the square's centre is farthest from every border.
    mask = _square((12, 16), 2, 3, 7)
    mask[5, 10:15] = True
    assert first_click(mask) == Click(6.5, 5.5, 1)
    # The image's edge is a border: a square in the corner is clicked at its centre, not the corner.
    assert first_click(_square((10, 10), 0, 0, 5)) == Click(2.5, 2.5, 1)
    assert first_click(np.zeros((4, 4), bool)) is None


def test_a_missed_region_gets_a_positive_click_and_a_false_positive_a_negative_one():
    truth = _square((20, 20), 2, 2, 9)
    missed = truth.copy()
    missed[2:11, 6:11] = False  # the right part of the lesion, columns 6..10, is missed
    click = next_click(truth, missed)
    assert click.label == 1 and 6 <= click.x - 0.5 <= 10 and truth[int(click.y), int(click.x)]
    extra = truth | _square((20, 20), 13, 12, 5)  # a false positive far from the lesion
    assert next_click(truth, extra) == Click(14.5, 15.5, 0)
    # Both: the larger region wins (here the 5x9 miss over the 3x3 false positive).
    both = missed | _square((20, 20), 15, 15, 3)
    assert next_click(truth, both).label == 1
    assert next_click(truth, truth) is None


def test_noc_counts_the_clicks_to_each_threshold_and_caps_lesions_that_never_reach_it():
    dice = np.array([[0.80, 0.86, 0.91, 0.95],
                     [0.92, 0.93, 0.94, 0.95],
                     [0.10, 0.50, 0.70, 0.84],
                     [0.85, 0.80, 0.89, 0.90]])
    np.testing.assert_array_equal(clicks_to_reach(dice, 0.85), [2, 1, 4, 1])
    np.testing.assert_array_equal(clicks_to_reach(dice, 0.90), [3, 1, 4, 4])
    np.testing.assert_array_equal(clicks_to_reach(dice, 0.90, cap=20), [3, 1, 20, 4])
    summary = clicks.summarize_clicks(np.pad(dice, ((0, 0), (0, 16)), mode="edge"))  # 20 clicks
    assert summary["noc85"] == pytest.approx((2 + 1 + 20 + 1) / 4)
    assert summary["noc90"] == pytest.approx((3 + 1 + 20 + 4) / 4)
    assert summary["dice_at"][:2] == pytest.approx([dice[:, 0].mean(), dice[:, 1].mean()])
    assert len(summary["dice_at"]) == 20


def test_the_simulated_user_clicks_each_lesions_errors_and_feeds_the_mask_back():
    # A stand-in model: each positive click paints a 5x5 square, each negative one erases one;
    # its "logits" are the mask, so the previous call's must come back as `previous`.
    truths = [_square((16, 16), 2, 2, 10), _square((20, 12), 4, 3, 5)]
    calls = []

    def predict(points, labels, previous):
        calls.append((points.shape, None if previous is None else previous.copy()))
        masks = []
        for row, row_labels, truth in zip(points, labels, truths):
            mask = np.zeros(truth.shape, bool)
            for (x, y), label in zip(row, row_labels):
                if label >= 0:
                    mask[max(int(y) - 2, 0):int(y) + 3, max(int(x) - 2, 0):int(x) + 3] = label == 1
            masks.append(mask)
        logits = np.stack([np.pad(m, ((0, 20 - m.shape[0]), (0, 20 - m.shape[1]))) for m in masks]) * 1.0
        return logits, masks

    result = simulate_clicks(predict, truths, max_clicks=6)
    assert result.dice.shape == (2, 6)
    assert [shape for shape, _ in calls] == [(2, k, 2) for k in range(1, 7)]
    assert calls[0][1] is None and calls[1][1] is not None and calls[1][1][0].sum() == 25
    assert result.dice[1, 0] == 1.0  # a 5x5 lesion: exact after its first click...
    assert len(result.clicks[1]) == 1  # ...and never clicked again
    assert result.dice[0, -1] > result.dice[0, 0]  # the 10x10 one grows with positive clicks
    assert all(click.label == 1 for click in result.clicks[0])


@pytest.mark.parametrize("family", ["numpy", "tensorflow"])
def test_the_training_clicker_clicks_deep_inside_the_larger_error_by_its_kind(family):
    truth = np.zeros((3, 24, 24), np.float32)
    truth[:, 4:16, 4:16] = 1
    logits = np.where(truth > 0, 1.0, -1.0).astype(np.float32)
    logits[0, 4:16, 10:16] = -1  # sample 0 misses a 12x6 strip of its lesion
    logits[1, 17:24, 12:24] = 1  # sample 1 has a 7x12 false positive (touching the image's edge)
    logits[2] = logits[0]  # sample 2 misses the strip too, but takes no click (inactive)
    noise = np.random.default_rng(0).uniform(size=truth.shape).astype(np.float32)
    active = np.array([True, True, False])
    if family == "numpy":
        ops, args = clicks.numpy_click_ops, (truth, logits, noise)
    else:
        ops = NamespaceWith(tnp, cast=tf.cast)
        args = tuple(tf.constant(value) for value in (truth, logits, noise))
    points, labels = clicks.error_clicks(ops, *args, active=active)
    points, labels = np.asarray(points), np.asarray(labels)
    np.testing.assert_array_equal(labels, [1, 0, clicks.NO_CLICK])
    (x0, y0), (x1, y1) = points[0] - 0.5, points[1] - 0.5
    assert 11 <= x0 <= 14 and 5 <= y0 <= 14  # at least 2 pixels inside the 12x6 strip
    assert 13 <= x1 <= 22 and 18 <= y1 <= 22  # at least 2 inside the false positive, edge included
    # Only the valid part of the grid is clicked: with the false positive outside it, nothing is left.
    valid = np.ones_like(truth)
    valid[:, 17:] = 0
    _, labels = clicks.error_clicks(clicks.numpy_click_ops, truth, logits, noise, valid=valid)
    assert np.asarray(labels)[1] == clicks.NO_CLICK


def test_feeding_the_previous_mask_back_changes_the_output():
    model = tiny_segmenter(seed=4)
    embeddings = tf.random.stateless_normal((2, *model.embedding_shape), seed=(1, 2))
    points = {"input_points": tf.constant([[[100.0, 120.0]], [[60.0, 50.0]]]),
              "input_labels": tf.ones((2, 1), tf.int32)}
    alone = model({"image_embeddings": embeddings, **points})["mask_logits"].numpy()
    rows = tf.range(model.mask_grid)[None, :, None] * tf.ones((2, 1, model.mask_grid), tf.int32)
    previous = tf.where(rows < 32, 8.0, -8.0)  # the top half of the grid predicted
    fed_back = model({"image_embeddings": embeddings, **points, "input_masks": previous})["mask_logits"].numpy()
    assert np.abs(fed_back - alone).max() > 1e-3


def test_a_clicks_training_step_runs_traced_once_from_cached_embeddings(phantom_dir, tmp_path):
    from keras_sam.data import PromptOptions, build_dataset, cache_embeddings, find_records, read_lesions
    from keras_sam.common.embeddings import EmbeddingCache

    lesions = read_lesions(find_records(phantom_dir)).lesions[:6]
    model = tiny_segmenter(seed=5)
    cache = EmbeddingCache(model, str(tmp_path / "cache"))
    cache_embeddings(lesions, model.processor, cache, progress=False)
    prompts = PromptOptions("clicks", click_rounds=3)
    train = build_dataset(lesions, model.processor, batch_size=3, prompts=prompts, embeddings=cache)
    x, y = next(iter(train))
    assert x["click_rounds"].shape == (3, 3) and "input_points" not in x
    first, last = model.click_prompts(x, y)
    most = int(tf.reduce_max(tf.reduce_sum(x["click_rounds"], axis=1)))
    assert first["input_points"].shape == (3, 1, 2) and "input_masks" not in first
    assert last["input_points"].shape == (3, 1 + most, 2) and last["input_masks"].shape == (3, 64, 64)
    labels = last["input_labels"].numpy()
    np.testing.assert_array_equal(labels[:, 0], 1)  # the first click is positive
    rounds = x["click_rounds"].numpy().sum(axis=1)
    for row, count in zip(labels, rounds):  # r corrective clicks, then padding
        assert set(row[1:1 + count]) <= {0, 1, clicks.NO_CLICK} and set(row[1 + count:]) <= {clicks.NO_CLICK}
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    history = model.fit(train, epochs=1, steps_per_epoch=2, verbose=0)  # batches of 1 to 3 rounds
    assert model.train_function.experimental_get_tracing_count() == 1
    assert np.isfinite(history.history["loss"]).all()


def test_clicks_with_the_prompt_encoder_frozen_warn_that_the_mask_fed_back_cannot_be_learned(capsys):
    from keras_sam.app.cli import build_parser
    from keras_sam.app.settings import resolve

    args = build_parser().parse_args(["finetune", "--demo", "--output", "unused", "--prompt", "clicks",
                                      "--freeze", "vision_encoder,prompt_encoder"])
    resolve(args)
    assert "--prompt clicks with the prompt encoder frozen" in capsys.readouterr().out
    resolve(build_parser().parse_args(["finetune", "--demo", "--output", "unused", "--prompt", "clicks"]))
    assert "frozen" not in capsys.readouterr().out
