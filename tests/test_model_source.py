"""What --model takes: a run's folder, a save_pretrained folder, .keras files of both model
families, a hub id (one line at once when the hub cannot be reached)."""

import json
import os
import socket

import numpy as np
import pytest
from conftest import tiny_segmenter

from keras_sam.app.model_source import load_segmenter, run_folder_of
from keras_sam.common.model_files import model_folder
from keras_sam.common.hub import ModelLoadError, require_tf_sam


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A run folder (run.json, model/) and the tiny model's outputs on a batch."""
    run = tmp_path_factory.mktemp("run")
    model = tiny_segmenter(seed=5)
    model.save_pretrained(run / "model")
    (run / "run.json").write_text("{}")
    rng = np.random.default_rng(0)
    inputs = {"image_embeddings": rng.normal(size=(2, 32, 16, 16)).astype("float32"),
              "input_boxes": np.array([[20, 30, 120, 140], [60, 50, 200, 230]], "float32")}
    return run, model, inputs


def _same_outputs(model, reference, inputs):
    for key, value in model(inputs).items():
        np.testing.assert_allclose(value, reference(inputs)[key], atol=1e-5)


def test_a_runs_folder_stands_for_its_model(saved):
    run, model, inputs = saved
    assert model_folder(str(run)) == str(run / "model")
    assert run_folder_of(str(run)) == run_folder_of(str(run / "model")) == str(run)
    assert run_folder_of(str(run / "model" / "config.json")) is None
    _same_outputs(load_segmenter(str(run)), model, inputs)


def test_a_folder_without_a_model_names_the_one_inside_it(saved, tmp_path):
    run, _, _ = saved
    os.makedirs(tmp_path / "models")
    os.symlink(run / "model", tmp_path / "models" / "first")
    with pytest.raises(ModelLoadError, match=r"no config.json.*did you mean .*models/first\?"):
        load_segmenter(str(tmp_path / "models"))


def test_a_tf_keras_model_file_loads(saved, tmp_path):
    _, model, inputs = saved
    model.save(tmp_path / "m.keras")
    loaded = load_segmenter(str(tmp_path / "m.keras"), freeze=("vision_encoder",))
    assert loaded.freeze == ("vision_encoder",)
    _same_outputs(loaded, model, inputs)


def test_a_keras3_model_file_from_keras_sam_convert_loads(saved, tmp_path):
    pytest.importorskip("keras_hub")
    from keras_sam.app.cli import main

    run, model, inputs = saved
    assert main(["convert", str(run / "model"), str(tmp_path / "k3.keras")]) == 0
    with open(tmp_path / "k3.keras", "rb") as handle:
        assert handle.read(2) == b"PK"
    _same_outputs(load_segmenter(str(tmp_path / "k3.keras")), model, inputs)


def test_model_files_that_are_missing_or_not_models_say_so(tmp_path):
    with pytest.raises(ModelLoadError, match="missing.keras does not exist"):
        load_segmenter(str(tmp_path / "missing.keras"))
    (tmp_path / "text.keras").write_text("not a zip")
    with pytest.raises(ModelLoadError, match="text.keras is not a Keras model file"):
        load_segmenter(str(tmp_path / "text.keras"))


def test_an_unreachable_hub_fails_in_one_line_without_transformers_retrying(monkeypatch):
    import huggingface_hub.constants

    def refuse(address, timeout=None):
        raise socket.gaierror(-2, "Name or service not known")

    def never(*args, **kwargs):
        raise AssertionError("transformers' loader was called")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(require_tf_sam(), "from_pretrained", never)
    with pytest.raises(ModelLoadError, match=r"could not download 'example-org/sam-x' from the Hugging Face hub "
                                             r"\(.* cannot be reached: Name or service not known\).*--demo"):
        load_segmenter("example-org/sam-x")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelLoadError, match=r"\(HF_HUB_OFFLINE is set\)"):
        load_segmenter("example-org/sam-x")
