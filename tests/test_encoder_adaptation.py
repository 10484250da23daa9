"""LoRA and adapters on the tf-keras SamSegmenter's image encoder (keras_sam.tfkeras.adaptation)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras
from transformers import TFSamModel

from conftest import disks, tiny_segmenter
from keras_sam import SamSegmenter
from keras_sam.tfkeras.lora import LoraDense

HERE = os.path.dirname(__file__)


def dataset(x, y, batch=4):
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch)


def encoder_values(model):
    return [variable.numpy() for variable in model.sam.vision_encoder.weights]


@pytest.fixture(scope="module")
def toy():
    return disks(8, seed=1)


@pytest.mark.parametrize("method, options", [("lora", {"rank": 2, "targets": ("qkv", "proj", "mlp")}),
                                             ("adapter", {})])
def test_unchanged_at_step_zero_then_learns_with_the_encoder_bit_identical(toy, method, options):
    x, y = toy
    model = tiny_segmenter()
    before = model(x)["mask_logits"].numpy()
    model.adapt(method, **options)
    np.testing.assert_array_equal(model(x)["mask_logits"].numpy(), before)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    added = {id(v) for v in model.adaptation.trainable_weights}
    assert added and added <= {id(v) for v in model.trainable_variables}
    encoder_ids = {id(v) for v in model.sam.vision_encoder.weights}
    assert not encoder_ids & {id(v) for v in model.trainable_variables}
    encoder = encoder_values(model)
    model.fit(dataset(x, y), epochs=1, verbose=0)
    for old, variable in zip(encoder, model.sam.vision_encoder.weights):
        np.testing.assert_array_equal(variable.numpy(), old, err_msg=variable.name)
    assert np.abs(model(x)["mask_logits"].numpy() - before).max() > 1e-4
    # Adam's two slots per trained weight, and none for the frozen encoder.
    slots = [v for v in model.optimizer.variables() if v.shape.rank]
    assert len(slots) == 2 * len(model.trainable_variables)


def test_lora_adds_rank_sized_updates_to_the_chosen_layers_only():
    model = tiny_segmenter().adapt("lora", rank=3, targets=("qkv",))
    vision = model.sam.config.vision_config
    updates = model.adaptation.additions
    assert len(updates) == vision.num_hidden_layers and all(isinstance(u, LoraDense) for u in updates)
    assert updates[0].lora_a.shape == (vision.hidden_size, 3)
    assert updates[0].lora_b.shape == (3, 3 * vision.hidden_size)
    assert not updates[0].lora_b.numpy().any()


@pytest.mark.parametrize("arguments, message", [
    ({"rank": 0}, "at least 1"),
    ({"rank": -2}, "at least 1"),
    ({"targets": ("qkv", "query")}, "valid targets are qkv, proj, mlp"),
])
def test_bad_lora_options_are_refused_naming_the_value(arguments, message):
    with pytest.raises(ValueError, match=message):
        tiny_segmenter().adapt("lora", **arguments)


def test_an_unknown_method_and_a_second_adaptation_are_refused():
    model = tiny_segmenter()
    with pytest.raises(ValueError, match="decoder, lora, adapter, full"):
        model.adapt("prefix")
    model.adapt("lora")
    with pytest.raises(ValueError, match="already has lora"):
        model.adapt("adapter")


def test_full_and_decoder_set_what_trains():
    model = tiny_segmenter().adapt("full")
    assert "vision_encoder" not in model.freeze and model.sam.vision_encoder.trainable
    model.adapt("decoder")
    assert "vision_encoder" in model.freeze and not model.sam.vision_encoder.trainable


def trained_lora_model(toy):
    x, y = toy
    model = tiny_segmenter().adapt("lora", rank=2, targets=("qkv", "mlp"))
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.fit(dataset(x, y), epochs=1, verbose=0)
    return model


def test_save_pretrained_merges_lora_so_plain_tfsammodel_matches(toy, tmp_path):
    x, _ = toy
    model = trained_lora_model(toy)
    expected = model(x)["mask_logits"].numpy()
    kernels = [v.numpy() for v in model.sam.vision_encoder.weights]
    model.save_pretrained(str(tmp_path / "merged"))
    plain = TFSamModel.from_pretrained(str(tmp_path / "merged"))
    got = plain(pixel_values=x["pixel_values"], input_boxes=x["input_boxes"][:, None],
                multimask_output=False).pred_masks[:, 0, 0].numpy()
    np.testing.assert_allclose(got, expected[:, 0], atol=1e-5)
    assert np.abs(got - SamSegmenter(TFSamModel(model.sam.config))(x)["mask_logits"].numpy()[:, 0]).max() > 1e-3
    # The model itself stays unmerged, its kernels exactly as they were.
    for old, variable in zip(kernels, model.sam.vision_encoder.weights):
        np.testing.assert_array_equal(variable.numpy(), old)
    np.testing.assert_array_equal(model(x)["mask_logits"].numpy(), expected)


def test_adapters_refuse_save_pretrained_pointing_to_keras_files(tmp_path):
    with pytest.raises(ValueError, match=r"model.save\('model.keras'\)"):
        tiny_segmenter().adapt("adapter").save_pretrained(str(tmp_path / "out"))


@pytest.mark.parametrize("method", ["lora", "adapter"])
def test_keras_file_keeps_the_unmerged_structure_and_resumes_exactly(toy, tmp_path, method):
    x, y = toy
    model = tiny_segmenter().adapt(method, rank=2)
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.fit(dataset(x, y), epochs=1, verbose=0)
    path = str(tmp_path / "adapted.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.adaptation.options() == model.adaptation.options()
    for a, b in zip(model.adaptation.weights, loaded.adaptation.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    np.testing.assert_allclose(loaded(x)["mask_logits"].numpy(), model(x)["mask_logits"].numpy(), atol=1e-6)
    assert int(loaded.optimizer.iterations.numpy()) == int(model.optimizer.iterations.numpy()) == 2
    # One more epoch each: the resumed model steps exactly like the original.
    model.fit(dataset(x, y), epochs=1, verbose=0)
    loaded.fit(dataset(x, y), epochs=1, verbose=0)
    for a, b in zip(model.adaptation.weights, loaded.adaptation.weights):
        np.testing.assert_allclose(b.numpy(), a.numpy(), atol=1e-6)


def test_weights_checkpoint_restores_lora_into_a_fresh_adapted_model(toy, tmp_path):
    x, _ = toy
    model = trained_lora_model(toy)
    model.save_weights(str(tmp_path / "ckpt"))
    fresh = tiny_segmenter(seed=7).adapt("lora", rank=2, targets=("qkv", "mlp"))
    fresh.load_weights(str(tmp_path / "ckpt")).assert_existing_objects_matched()
    np.testing.assert_array_equal(fresh(x)["mask_logits"].numpy(), model(x)["mask_logits"].numpy())


@pytest.mark.slow
def test_a_mirrored_lora_step_over_two_devices_matches_one_device():
    result = subprocess.run([sys.executable, os.path.join(HERE, "distributed", "mirrored_lora.py"), HERE],
                            capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["replicas"] == 2
    for run in ("one", "two"):
        assert figures[run]["encoder_unchanged"]
        assert min(figures[run]["lora_b"]) > 0  # every update learned something
    np.testing.assert_allclose(figures["two"]["loss"], figures["one"]["loss"], atol=1e-5)
    np.testing.assert_allclose(figures["two"]["lora_b"], figures["one"]["lora_b"], rtol=1e-4)


def lora_gradients(toy, recompute):
    x, y = toy
    model = tiny_segmenter().adapt("lora", rank=2)
    for update in model.adaptation.additions:  # B away from zero, so A gets a gradient too
        update.lora_b.assign(tf.random.stateless_normal(update.lora_b.shape, seed=(1, 2)) * 0.1)
    if recompute:
        model.recompute_encoder()
    model.compile()

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = model.compute_loss(x, y, model(x, training=True))
        return loss, tape.gradient(loss, model.trainable_variables)

    loss, gradients = step()
    return model, float(loss), [g.numpy() for g in gradients]


def test_recomputing_the_encoder_blocks_gives_the_same_loss_and_gradients(toy):
    _, plain_loss, plain = lora_gradients(toy, recompute=False)
    model, loss, recomputed = lora_gradients(toy, recompute=True)
    assert loss == pytest.approx(plain_loss, abs=1e-6)
    assert max(np.abs(g).max() for g in plain) > 1e-3
    for a, b in zip(plain, recomputed):
        np.testing.assert_allclose(b, a, atol=1e-5)
    config = model.get_config()
    assert config["recompute_encoder"] is True
    assert SamSegmenter.from_config(config)._recomputes_encoder
