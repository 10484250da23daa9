"""The Keras 3 SamSegmenter on the backend of this process (see conftest.py: the suite runs this
file once per backend): fit, evaluate, predict, embeddings, saving, presets, the README example."""

import contextlib
import io
import os
import runpy
import sys

import keras
import numpy as np
import pytest

from toy import disks
from keras_sam.common.configs import tiny_sam_config
from keras_sam.keras3 import DiceLoss, DiceScore, SamSegmenter

README = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "README.md")


def weights_of(layer):
    return [np.array(keras.ops.convert_to_numpy(weight)) for weight in layer.weights]


@pytest.fixture(scope="module")
def trained():
    """A tiny model fitted 4 epochs on 16 disks, with its weights before and its history."""
    keras.utils.set_random_seed(0)
    model = SamSegmenter.from_sam_config(tiny_sam_config(), multimask_output=True)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=DiceLoss(), metrics=[DiceScore(), "accuracy"])
    x, y = disks(16, seed=2)
    encoder, decoder = weights_of(model.image_encoder), weights_of(model.mask_decoder)
    history = model.fit(x, y, batch_size=8, epochs=4, verbose=0)
    return model, x, y, encoder, decoder, history.history["loss"]


def test_the_backend_is_this_process_and_no_tf_keras_is_loaded():
    assert keras.backend.backend() == os.environ["KERAS_BACKEND"]
    assert os.environ.get("TF_USE_LEGACY_KERAS") is None
    assert "tf_keras" not in sys.modules


def test_fit_lowers_the_loss_keeps_the_frozen_encoder_and_moves_the_decoder(trained):
    model, _, _, encoder, decoder, losses = trained
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
    assert all(np.array_equal(a, b) for a, b in zip(encoder, weights_of(model.image_encoder)))
    assert any(not np.array_equal(a, b) for a, b in zip(decoder, weights_of(model.mask_decoder)))


def test_evaluate_logs_loss_metrics_and_the_iou_head_loss(trained):
    model, x, y, *_ = trained
    result = model.evaluate(x, y, batch_size=8, verbose=0, return_dict=True)
    assert {"loss", "dice", "accuracy", "iou_head_loss"} <= set(result)
    assert 0 <= result["dice"] <= 1 and result["iou_head_loss"] > 0


def test_predict_gives_three_masks_and_scores_per_prompt(trained):
    model, x, *_ = trained
    predicted = model.predict(x, batch_size=8, verbose=0)
    assert {key: value.shape for key, value in predicted.items()} == {"mask_logits": (16, 3, 64, 64),
                                                                      "iou_scores": (16, 3)}


def test_cached_embeddings_predict_what_pixels_predict(trained):
    model, x, *_ = trained
    embeddings = keras.ops.convert_to_numpy(model.image_embeddings(x["pixel_values"][:4]))
    assert embeddings.shape == (4, *model.embedding_shape)
    from_embeddings = model.predict({"image_embeddings": embeddings, "input_boxes": x["input_boxes"][:4]}, verbose=0)
    from_pixels = model.predict({key: value[:4] for key, value in x.items()}, verbose=0)
    np.testing.assert_allclose(from_embeddings["mask_logits"], from_pixels["mask_logits"], atol=1e-4)


def test_a_saved_model_loads_with_its_weights_and_options(trained, tmp_path):
    model, x, *_ = trained
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(loaded.predict(x, batch_size=8, verbose=0)["mask_logits"],
                               model.predict(x, batch_size=8, verbose=0)["mask_logits"], atol=1e-5)
    assert list(loaded.freeze) == ["vision_encoder", "prompt_encoder"]


def test_a_checkpoint_written_by_save_pretrained_loads_the_same(trained, tmp_path):
    model, x, *_ = trained
    model.save_pretrained(tmp_path / "checkpoint")
    loaded = SamSegmenter.from_pretrained(tmp_path / "checkpoint", multimask_output=True)
    np.testing.assert_allclose(loaded.predict(x, batch_size=8, verbose=0)["mask_logits"],
                               model.predict(x, batch_size=8, verbose=0)["mask_logits"], atol=1e-5)


def test_a_preset_that_cannot_download_is_one_clear_line(monkeypatch):
    import kagglehub

    def offline(*args, **kwargs):
        raise ConnectionError("Failed to resolve 'www.kaggle.com'")

    monkeypatch.setattr(kagglehub, "model_download", offline)
    with pytest.raises(OSError) as raised:
        SamSegmenter.from_preset("sam_base_sa1b")
    assert str(raised.value).startswith("could not load keras-hub preset 'sam_base_sa1b'")
    assert "\n" not in str(raised.value)


def test_the_readme_example_runs_to_its_end(tmp_path):
    with open(README) as handle:
        section = handle.read().split("## Keras 3", 1)[1]
    example = section.split("```python\n", 1)[1].split("```", 1)[0]
    script = tmp_path / "readme_example.py"
    script.write_text(example.replace('"jax"', f'"{keras.backend.backend()}"', 1))
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        runpy.run_path(str(script), run_name="__main__")
    assert printed.getvalue().strip().splitlines()[-1] == "(2, 1, 64, 64)"


def test_the_keras3_model_saved_before_the_layout_change_loads_and_predicts_the_same():
    # tests/fixtures/keras3_model.keras, written on jax by tests/fixtures/make_fixtures.py.
    fixtures = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures")
    model = keras.models.load_model(os.path.join(fixtures, "keras3_model.keras"))
    assert isinstance(model, SamSegmenter) and model.multimask_output
    with np.load(os.path.join(fixtures, "inputs_and_outputs.npz")) as saved:
        x = {key[len("input_"):]: saved[key] for key in saved.files if key.startswith("input_")}
        predicted = model.predict(x, verbose=0)
        for key in ("mask_logits", "iou_scores"):
            np.testing.assert_allclose(keras.ops.convert_to_numpy(predicted[key]), saved[f"keras3_{key}"],
                                       atol=1e-5, rtol=0, err_msg=key)


class RandomEncoder:
    """Image embeddings of the tiny model's shape without running (and compiling) an encoder:
    the decoder's training is what is tested."""

    embedding_shape = (32, 16, 16)
    encoder_dtype = "float32"
    encoder_weights = [np.zeros(1, np.float32)]

    def image_embeddings(self, pixels):
        rng = np.random.default_rng(int(np.abs(pixels).sum() * 1000) % 2**32)
        return rng.normal(size=(len(pixels), *self.embedding_shape)).astype(np.float32)

    def trace_image_embeddings(self, batch_size):
        pass


def test_corrective_clicks_train_in_fit_with_the_shared_clicker(tmp_path):
    """PromptOptions(kind="clicks") batches: the clicks come from keras_sam.common.clicks, the
    arithmetic the tf-keras family shares, inside the traced step."""
    from keras_sam.common.configs import processor_for_config
    from keras_sam.data import (PromptOptions, build_dataset, cache_embeddings, find_records, read_lesions,
                                write_busi_phantoms)
    from keras_sam.common.embeddings import EmbeddingCache

    root = write_busi_phantoms(str(tmp_path / "busi"), counts={"benign": 2, "malignant": 1}, seed=0)
    lesions = read_lesions(find_records(root), progress=False).lesions[:2]
    processor = processor_for_config(tiny_sam_config())
    cache = EmbeddingCache(RandomEncoder())
    cache_embeddings(lesions, processor, cache, progress=False)
    dataset = build_dataset(lesions, processor, batch_size=2, prompts=PromptOptions("clicks", click_rounds=1),
                            epochs=(0, 1), embeddings=cache)
    keras.utils.set_random_seed(0)
    model = SamSegmenter.from_sam_config(tiny_sam_config())
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=DiceLoss())
    before = weights_of(model.mask_decoder)
    history = model.fit(dataset, epochs=1, verbose=0).history  # the rounds run in the traced step
    assert np.isfinite(history["loss"][0])
    assert any(not np.array_equal(a, b) for a, b in zip(before, weights_of(model.mask_decoder)))
    inputs, _ = next(iter(dataset))
    with pytest.raises(ValueError, match="drawn from the targets"):  # predict has no targets to click from
        model({key: np.asarray(value) for key, value in inputs.items()})


def test_click_scoring_runs_on_this_backend_and_its_first_click_is_segments(tmp_path):
    """keras_sam.common.evaluation.evaluate_clicks takes a Keras 3 model on every backend (on JAX it
    must not be traced by TensorFlow), and its first click scores what segment() gives for it."""
    from keras_sam.common.clicks import first_click
    from keras_sam.common.configs import processor_for_config
    from keras_sam.common.evaluation import evaluate_clicks
    from keras_sam.common.losses_and_scores import dice_per_sample
    from keras_sam.data import build_dataset, find_records, read_lesions, write_busi_phantoms
    from keras_sam.data.readers import load_image, load_target

    root = write_busi_phantoms(str(tmp_path / "busi"), counts={"benign": 2, "malignant": 1}, seed=0)
    lesions = read_lesions(find_records(root), progress=False).lesions[:3]
    processor = processor_for_config(tiny_sam_config())
    keras.utils.set_random_seed(1)
    model = SamSegmenter.from_sam_config(tiny_sam_config())
    dataset = build_dataset(lesions, processor, batch_size=2, training=False, with_ids=True)
    curves = evaluate_clicks(model, lesions, dataset, processor, max_clicks=3, progress=False)
    assert list(curves) == [lesion.id for lesion in lesions]
    for lesion in lesions:
        assert curves[lesion.id].shape == (3,) and np.all((0 <= curves[lesion.id]) & (curves[lesion.id] <= 1))
        truth = load_target(lesion)
        click = first_click(truth)
        mask = model.segment(load_image(lesion.image_path), points=[[click.x, click.y]], labels=[1]).masks[0]
        assert curves[lesion.id][0] == pytest.approx(dice_per_sample(truth[None], mask[None])[0], abs=1e-3)
