"""LoRA on the Keras 3 family's image encoder through Keras's own Dense.enable_lora (TensorFlow
backend, in this process: Keras 3 works beside tf-keras)."""

import importlib.util

import numpy as np
import pytest

from toy import disks

pytestmark = pytest.mark.skipif(importlib.util.find_spec("keras_hub") is None,
                                reason="the Keras 3 family needs keras-hub (pip install 'keras-sam[keras3]')")


@pytest.fixture(scope="module")
def toy():
    return disks(8, seed=2)


def tiny_keras3(seed=0):
    import keras

    from keras_sam import tiny_sam_config
    from keras_sam.keras3 import SamSegmenter

    keras.utils.set_random_seed(seed)
    return SamSegmenter.from_sam_config(tiny_sam_config())


def test_lora_on_every_qkv_unchanged_at_start_learns_alone_and_saves_merged(toy, tmp_path):
    import keras

    from keras_sam.keras3 import SamSegmenter

    x, y = toy
    model = tiny_keras3()
    before = np.asarray(model(x)["mask_logits"])
    model.adapt("lora", rank=2, targets=("qkv",))
    np.testing.assert_array_equal(np.asarray(model(x)["mask_logits"]), before)
    lora = [v for v in model.image_encoder.weights if v.name.startswith("lora_kernel")]
    assert len(lora) == 2 * 2  # A and B on the qkv of each of the tiny encoder's 2 blocks
    encoder_trainable = [v for v in model.image_encoder.trainable_weights]
    assert {id(v) for v in encoder_trainable} == {id(v) for v in lora}
    frozen = {v.path: np.asarray(v) for v in model.image_encoder.weights if not v.name.startswith("lora_kernel")}
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    for variable in model.image_encoder.weights:
        if variable.path in frozen:
            np.testing.assert_array_equal(np.asarray(variable), frozen[variable.path], err_msg=variable.path)
    after = np.asarray(model(x)["mask_logits"])
    assert np.abs(after - before).max() > 1e-4
    model.save_pretrained(str(tmp_path / "merged"))
    plain = SamSegmenter.from_pretrained(str(tmp_path / "merged"))
    np.testing.assert_allclose(np.asarray(plain(x)["mask_logits"]), after, atol=1e-5)


def test_keras3_lora_refuses_bad_options_and_adapters():
    with pytest.raises(ValueError, match="at least 1"):
        tiny_keras3().adapt("lora", rank=0)
    with pytest.raises(ValueError, match="valid targets are qkv, proj, mlp"):
        tiny_keras3().adapt("lora", targets=("query",))
    with pytest.raises(ValueError, match="tf-keras family only"):
        tiny_keras3().adapt("adapter")


def test_keras3_keras_file_keeps_lora_and_predicts_the_same(toy, tmp_path):
    import keras

    x, y = toy
    model = tiny_keras3().adapt("lora", rank=2, targets=("qkv", "proj"))
    model.compile(optimizer=keras.optimizers.Adam(1e-2))
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    model.save(str(tmp_path / "lora.keras"))
    loaded = keras.models.load_model(str(tmp_path / "lora.keras"))
    assert loaded.get_config()["lora"] == {"rank": 2, "targets": ["qkv", "proj"]}
    np.testing.assert_allclose(np.asarray(loaded(x)["mask_logits"]), np.asarray(model(x)["mask_logits"]),
                               atol=1e-5)
    loaded.fit(x, y, batch_size=4, epochs=1, verbose=0)  # goes on training
