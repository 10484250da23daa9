"""SamSegmenter in an existing tf-keras code base: data sources, saving, weights, Keras metrics, logs."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from conftest import tiny_segmenter
from toy import disks
from keras_sam import DiceBCELoss, DiceLoss, DiceScore, FocalLoss, IoUScore
from keras_sam.tfkeras.callbacks import MaskOverlayCallback
from keras_sam.tfkeras.optimizers import FusedAdam
from keras_sam.common.overlays import take_samples

HERE = os.path.dirname(__file__)
ENVIRONMENT = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


@pytest.fixture(scope="module")
def data():
    return disks(8, seed=3)


@pytest.fixture(scope="module")
def model():
    model = tiny_segmenter(seed=1)
    model.compile(optimizer=keras.optimizers.legacy.Adam(1e-3))
    return model


def batches(x, y, size=4):
    return [({key: value[start:start + size] for key, value in x.items()}, y[start:start + size])
            for start in range(0, len(y), size)]


class DiskSequence(keras.utils.Sequence):
    def __init__(self, x, y):
        super().__init__()
        self.items = batches(x, y)

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]


def unknown_dims(x, y):
    """A tf.data pipeline whose static shapes say nothing but the rank."""
    signature = ({"pixel_values": tf.TensorSpec((None,) * 4), "input_boxes": tf.TensorSpec((None, None))},
                 tf.TensorSpec((None,) * 3))
    return tf.data.Dataset.from_generator(lambda: iter(batches(x, y)), output_signature=signature)


def unknown_rank(x, y):
    """A pipeline through tf.py_function: not even the rank is known."""
    def opaque(inputs, targets):
        pixels, boxes, masks = tf.py_function(lambda *a: a, [inputs["pixel_values"], inputs["input_boxes"],
                                                             targets], [tf.float32] * 3)
        return {"pixel_values": pixels, "input_boxes": boxes}, masks
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(4).map(opaque)


def forever(x, y):
    while True:
        yield from batches(x, y)


@pytest.mark.parametrize("source", [
    lambda x, y: {"x": forever(x, y), "steps_per_epoch": 2},
    lambda x, y: {"x": DiskSequence(x, y)},
    lambda x, y: {"x": unknown_dims(x, y)},
    lambda x, y: {"x": unknown_rank(x, y)},
], ids=["generator", "sequence", "unknown-dims", "unknown-rank"])
def test_fit_takes_every_keras_data_source(model, data, source):
    history = model.fit(epochs=1, verbose=0, **source(*data))
    assert np.isfinite(history.history["loss"][0]) and 0 <= history.history["dice"][0] <= 1


def test_a_shape_unknown_when_tracing_is_checked_when_the_batch_arrives(model, data):
    x, y = data
    wrong = {"pixel_values": x["pixel_values"], "input_boxes": x["input_boxes"][:, :3]}
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"input_boxes must have shape \(B, 4\) or \(B, 1, 4\); got"):
        model.evaluate(unknown_dims(wrong, y), verbose=0)


def test_importing_keras_sam_registers_its_classes_for_load_model():
    program = ("import tf_keras as keras, keras_sam\n"
               "print(all(keras.saving.get_registered_object('keras_sam>' + name) is not None for name in "
               "('SamSegmenter', 'DiceLoss', 'DiceBCELoss', 'FocalLoss', 'DiceScore', 'IoUScore', "
               "'OnProbabilities', 'FusedAdam')))")
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                            env=ENVIRONMENT, timeout=300)
    assert result.stdout.strip().splitlines()[-1] == "True", result.stderr[-2000:]


def test_whole_model_checkpoints_load_compiled_with_their_optimizer_state(data, tmp_path):
    x, y = data
    model = tiny_segmenter(seed=2)
    model.compile(metrics=["accuracy", DiceScore()])
    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0, callbacks=[  # whole-model saves
        keras.callbacks.ModelCheckpoint(str(tmp_path / "model.keras"), monitor="loss", save_best_only=True),
        keras.callbacks.ModelCheckpoint(str(tmp_path / "saved_model"), monitor="loss")])
    saved = model.predict(x, batch_size=4, verbose=0)["mask_logits"]
    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    continued = model.predict(x, batch_size=4, verbose=0)["mask_logits"]
    with pytest.raises(ValueError, match=r"cannot save SamSegmenter to .*\.h5.*Save to a \.keras file"):
        model.save(tmp_path / "model.h5")
    loaded = {path: keras.models.load_model(tmp_path / path)  # no custom_objects: the classes are registered
              for path in ("model.keras", "saved_model")}
    for reloaded in loaded.values():
        assert isinstance(reloaded.loss, DiceLoss) and isinstance(reloaded.optimizer, FusedAdam)
        assert [m["config"]["name"] for m in reloaded.get_compile_config()["metrics"]] == ["accuracy", "dice"]
        assert reloaded.freeze == ("vision_encoder", "prompt_encoder")
        assert len(reloaded.trainable_variables) == len(model.trainable_variables)
        np.testing.assert_allclose(reloaded.predict(x, batch_size=4, verbose=0)["mask_logits"], saved, atol=1e-5)
    # One more epoch after loading the .keras file is the uninterrupted run's second epoch: Adam's
    # moments and step count came back (a SavedModel restores no optimizer state, for any tf-keras
    # model).
    loaded = loaded["model.keras"]
    loaded.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    np.testing.assert_allclose(loaded.predict(x, batch_size=4, verbose=0)["mask_logits"], continued, atol=1e-5)
    # Unfreezing after training: Adam has no state for the newly trainable weights, so it starts
    # afresh (with a warning) instead of failing at the next step.
    with pytest.warns(UserWarning, match="it starts afresh"):
        loaded.freeze = ("vision_encoder",)
    before = loaded.sam.prompt_encoder.get_weights()
    loaded.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert any(not np.array_equal(a, b) for a, b in zip(before, loaded.sam.prompt_encoder.get_weights()))


def test_a_plain_functional_model_with_a_keras_sam_loss_saves_and_loads(tmp_path):
    inputs = keras.Input((8, 8))
    functional = keras.Model(inputs, keras.layers.Dense(8)(inputs))
    functional.compile(loss=DiceLoss(smooth_nr=0.5), metrics=[IoUScore()])
    functional.save(tmp_path / "plain.keras")
    loaded = keras.models.load_model(tmp_path / "plain.keras")
    assert isinstance(loaded.loss, DiceLoss) and loaded.loss.smooth_nr == 0.5


@pytest.mark.slow
def test_global_mixed_precision_policies():
    # Each policy in its own process (the policy is global), both at once.
    processes = {policy: subprocess.Popen(
        [sys.executable, os.path.join(HERE, "dropin", "mixed_precision.py"), HERE, policy],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENVIRONMENT)
        for policy in ("mixed_bfloat16", "mixed_float16")}
    for policy, process in processes.items():
        out, err = process.communicate(timeout=600)
        assert process.returncode == 0, err[-3000:]
        report = json.loads(out.strip().splitlines()[-1])
        # At the layer: transformers' attention fails under the policy; patched, it computes in
        # the policy's dtype, close to float32 with the same weights.
        assert report["unpatched_fails"]
        assert report["attention_dtype"] == report["compute_dtype"] == policy.split("_")[1]
        assert report["attention_error"] < (0.05 if policy == "mixed_bfloat16" else 0.01)
        # The model: fit, evaluate, predict and segment run; what comes out is float32.
        assert np.isfinite(report["losses"]).all() and report["losses"][1] < report["losses"][0]
        assert np.isfinite(list(report["evaluate"].values())).all()
        assert report["predict_dtypes"] == ["float32"] and report["segment_dtype"] == "float32"
        # Keras wraps the optimizer for loss scaling under float16, as for any model.
        assert report["optimizer"] == ("LossScaleOptimizer" if policy == "mixed_float16" else "Adam")
        # The same weights give nearly the same masks (the README states the figures).
        assert report["mask_agreement"] > 0.98
        assert abs(report["dice_policy"] - report["dice_float32"]) < 0.02


# ------------------------------------------------------------------------------------- weights
TRUTH = np.array([[[1, 1], [0, 0]], [[1, 0], [0, 0]]], np.float32)
LOGITS = np.array([[[2.0, -1.0], [1.0, -3.0]], [[-0.5, 0.5], [0.0, 2.0]]], np.float32)
PIXEL_WEIGHTS = np.array([[[1, 3], [0, 0]], [[2, 2], [2, 2]]], np.float32)


def sigmoid(values):
    return 1 / (1 + np.exp(-values))


def weighted_dice(truth, probs, weights):
    """MONAI's Dice with every sum weighted, per sample (numpy, written out)."""
    losses = []
    for t, p, w in zip(truth, probs, weights):
        losses.append(1 - (2 * (w * t * p).sum() + 1e-5) / ((w * t).sum() + (w * p).sum() + 1e-5))
    return np.array(losses)


def weighted_bce(truth, logits, weights):
    bce = -(truth * np.log(sigmoid(logits)) + (1 - truth) * np.log(1 - sigmoid(logits)))
    return np.array([(w * b).sum() / w.sum() for b, w in zip(bce, weights)])


@pytest.mark.parametrize("loss, expected_per_sample", [
    (DiceLoss(), lambda w: weighted_dice(TRUTH, sigmoid(LOGITS), w)),
    (DiceBCELoss(), lambda w: weighted_dice(TRUTH, sigmoid(LOGITS), w) + weighted_bce(TRUTH, LOGITS, w)),
    (FocalLoss(alpha=None, gamma=0.0), lambda w: weighted_bce(TRUTH, LOGITS, w)),
], ids=["dice", "dice+bce", "focal"])
def test_per_pixel_weights_weight_each_samples_pixels_and_the_sample_by_its_mean(loss, expected_per_sample):
    means = PIXEL_WEIGHTS.mean(axis=(1, 2))  # 1.0 and 2.0
    expected = (expected_per_sample(PIXEL_WEIGHTS) * means).mean()
    assert float(loss(TRUTH, LOGITS, PIXEL_WEIGHTS)) == pytest.approx(expected, rel=1e-5)
    assert float(loss(TRUTH[:, None], LOGITS[:, None], PIXEL_WEIGHTS[:, None])) == pytest.approx(expected, rel=1e-5)
    constant = np.ones_like(PIXEL_WEIGHTS) * np.array([3.0, 0.5])[:, None, None]
    assert float(loss(TRUTH, LOGITS, constant)) == pytest.approx(
        float(loss(TRUTH, LOGITS, np.array([3.0, 0.5]))), rel=1e-6)  # a constant map is a sample weight


def test_per_pixel_weights_make_dice_areas_weighted_sums():
    predicted = np.where(LOGITS > 0, 5.0, -5.0).astype(np.float32)
    metric = DiceScore()
    metric.update_state(TRUTH, predicted, sample_weight=PIXEL_WEIGHTS)
    # Sample 0: truth {0,1} weights 1+3, predicted {0,2} weights 1+0, both {0} weight 1: 2/5;
    # sample 1: truth {0} (2), predicted {1,3} (4), none shared: 0. Samples weigh 1 and 2.
    assert float(metric.result()) == pytest.approx((2 / 5 * 1 + 0 * 2) / 3, rel=1e-6)


def test_best_of_three_and_the_iou_head_use_the_weights(data):
    x, y = data
    model = tiny_segmenter(seed=5, multimask_output=True)
    model.compile(loss=FocalLoss(alpha=None, gamma=0.0))
    outputs = model(x)
    weights = np.random.default_rng(0).uniform(0, 2, size=y.shape).astype(np.float32)
    per_mask = np.stack([
        weighted_bce(y, outputs["mask_logits"][:, m].numpy(), weights) for m in range(3)], axis=1)
    means = weights.mean(axis=(1, 2))
    true_iou = np.stack([[((t > 0) & (p > 0)).sum() / max(((t > 0) | (p > 0)).sum(), 1)
                          for t, p in zip(y, outputs["mask_logits"][:, m].numpy())] for m in range(3)], 1)
    iou_error = ((outputs["iou_scores"].numpy() - true_iou) ** 2).mean(axis=1)
    expected = (per_mask.min(axis=1) * means).mean() + (iou_error * means).mean()
    assert float(model.compute_loss(x, y, outputs, weights)) == pytest.approx(expected, rel=1e-4)


def test_class_weight_is_per_pixel_weights_by_class(data):
    x, y = data
    model = tiny_segmenter(seed=6)
    model.compile(optimizer=keras.optimizers.legacy.SGD(0.0))  # nothing moves: compare one step
    trained = model.fit(x, y, batch_size=8, epochs=1, class_weight={0: 1.0, 1: 5.0}, verbose=0)
    by_class = np.where(y > 0, 5.0, 1.0).astype(np.float32)
    evaluated = model.evaluate(x, y, sample_weight=by_class, batch_size=8, verbose=0, return_dict=True)
    assert trained.history["loss"][0] == pytest.approx(evaluated["loss"], rel=1e-5)
    assert trained.history["loss"][0] != pytest.approx(
        model.evaluate(x, y, batch_size=8, verbose=0, return_dict=True)["loss"], rel=1e-3)
    with pytest.raises(ValueError, match=r"class_weight holds classes \[2\]"):
        model.fit(x, y, class_weight={2: 1.0}, verbose=0)


# ------------------------------------------------------------------------ Keras metrics, logs
def test_keras_metrics_score_the_masks_predict_gives(data):
    x, y = data
    model = tiny_segmenter(seed=1)
    model.compile(metrics=["accuracy", keras.metrics.BinaryIoU(target_class_ids=[1], name="binary_iou"),
                           keras.metrics.Precision(name="precision"), keras.metrics.Recall(name="recall"),
                           keras.metrics.AUC(name="auc"), keras.metrics.AUC(from_logits=True, name="auc_logits"),
                           DiceScore()])
    result = model.evaluate(x, y, batch_size=4, verbose=0, return_dict=True)
    logits = model.predict(x, batch_size=4, verbose=0)["mask_logits"][:, 0]
    predicted, truth = logits > 0, y > 0.5
    assert predicted.any() and (~predicted).any()
    both, either = (predicted & truth).sum(), (predicted | truth).sum()
    assert result["accuracy"] == pytest.approx((predicted == truth).mean(), abs=1e-6)
    assert result["binary_iou"] == pytest.approx(both / either, abs=1e-5)
    assert result["precision"] == pytest.approx(both / predicted.sum(), abs=1e-5)
    assert result["recall"] == pytest.approx(both / truth.sum(), abs=1e-5)
    auc = keras.metrics.AUC()
    auc.update_state(y.reshape(-1), sigmoid(logits).reshape(-1))
    assert result["auc"] == pytest.approx(float(auc.result()), abs=1e-5)
    assert result["auc_logits"] == pytest.approx(result["auc"], abs=1e-5)
    assert result["dice"] == pytest.approx(np.mean([
        2 * (p & t).sum() / (p.sum() + t.sum()) for p, t in zip(predicted, truth)]), abs=1e-5)


def test_logs_have_unique_names_and_the_iou_head_loss_does_not_depend_on_batching(model, data):
    x, y = data
    values = model.evaluate(x, y, batch_size=3, verbose=0)
    names = model.metrics_names
    assert len(names) == len(set(names)) == len(values)
    assert names == ["loss", "dice", "iou", "iou_head_loss"]
    by_batch = [model.evaluate(x, y, batch_size=size, verbose=0, return_dict=True) for size in (3, 8)]
    for name in names:
        assert by_batch[0][name] == pytest.approx(by_batch[1][name], abs=1e-6), name


# ------------------------------------------------------------------------------- overlays
@pytest.mark.parametrize("source", [
    lambda x, y: tf.data.Dataset.from_tensor_slices((x, y[:, None])).batch(3),  # (B, 1, H, W) targets
    lambda x, y: forever(x, y),
    lambda x, y: DiskSequence(x, y),
    lambda x, y: (x, y),
    lambda x, y: [({k: v[0] for k, v in x.items()}, y[0])] * 5,
], ids=["batched-with-set-axis", "generator", "sequence", "arrays", "samples"])
def test_the_overlay_callback_takes_what_fit_takes(data, source):
    x, y = data
    samples = take_samples(source(x, y), max_samples=5)
    assert len(samples) == 5
    for sample_x, sample_y in samples:
        assert sample_x["pixel_values"].shape == (3, 256, 256) and sample_y.size == 64 * 64


def test_the_overlay_callback_draws_from_batched_targets_with_a_set_axis(model, data):
    x, y = data
    dataset = tf.data.Dataset.from_tensor_slices((x, y[:, None])).batch(4)
    overlays = MaskOverlayCallback(dataset, max_samples=3, display_size=64).render(model)
    assert len(overlays) == 3 and overlays[0].shape == (64, 64, 3)
