"""The Keras 3 family on JAX, TensorFlow (and PyTorch where installed), each in its own process,
and weights moving both ways between it and transformers' TFSamModel."""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from transformers import TFSamModel

from conftest import tiny_segmenter
from toy import disks
from keras_sam.app.cli import main
from keras_sam.hub import load_tf_sam
from keras_sam.tf_sam_patches import patch_tf_sam

HERE = os.path.dirname(__file__)
BACKENDS = ["jax", "tensorflow"] + (["torch"] if importlib.util.find_spec("torch") else [])
pytestmark = pytest.mark.skipif(importlib.util.find_spec("keras_hub") is None,
                                reason="the Keras 3 family needs keras-hub (pip install 'keras-sam[keras3]')")


def prompts(seed=1):
    x, _ = disks(4, seed=seed)
    centres = (x["input_boxes"][:, None, :2] + x["input_boxes"][:, None, 2:]) / 2
    return {**x, "input_points": centres.astype(np.float32), "input_labels": np.ones((4, 1), np.int32)}


def tf_keras_outputs(checkpoint, inputs):
    """What transformers' TFSamModel (loaded and fixed as keras-sam does) predicts from a checkpoint."""
    sam = patch_tf_sam(load_tf_sam(checkpoint))
    output = sam(pixel_values=inputs["pixel_values"], input_boxes=inputs["input_boxes"][:, None],
                 input_points=inputs["input_points"][:, None], input_labels=inputs["input_labels"][:, None],
                 multimask_output=True)
    return output.pred_masks.numpy()[:, 0], output.iou_scores.numpy()[:, 0]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A random tiny TFSamModel checkpoint, and its masks and IoU scores for 4 disks with prompts."""
    folder = tmp_path_factory.mktemp("reference")
    model = tiny_segmenter(seed=3, multimask_output=True)
    model.save_pretrained(folder / "checkpoint")
    inputs = prompts()
    outputs = model(inputs)
    np.savez(folder / "outputs.npz", **inputs, mask_logits=outputs["mask_logits"].numpy(),
             iou_scores=outputs["iou_scores"].numpy())
    return folder


def readme_example():
    """The first python block of the README's Keras 3 section."""
    with open(os.path.join(os.path.dirname(HERE), "README.md")) as handle:
        section = handle.read().split("## Keras 3", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.fixture(scope="module")
def reports(reference, tmp_path_factory):
    """Each backend's report, run in parallel processes."""
    runs = {}
    for backend in BACKENDS:
        output = tmp_path_factory.mktemp(f"keras3-{backend}")
        example = output / "readme_example.py"
        example.write_text(readme_example().replace('"jax"', f'"{backend}"', 1))
        environment = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
        environment.pop("TF_USE_LEGACY_KERAS", None)
        runs[backend] = (output, subprocess.Popen(
            [sys.executable, os.path.join(HERE, "keras3", "check_backend.py"), HERE, str(reference), str(output),
             str(example)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment))
    results = {}
    for backend, (output, process) in runs.items():
        out, err = process.communicate(timeout=900)
        assert process.returncode == 0, f"{backend}: {err[-3000:]}"
        results[backend] = (json.loads(out.strip().splitlines()[-1]), output)
    return results


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_fit_evaluate_predict_save_and_load_on_the_backend(reports, backend):
    report, _ = reports[backend]
    assert report["backend"] == backend and report["legacy_keras"] is None  # no tf_keras imported
    losses = report["losses"]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
    assert report["encoder_unchanged"] and report["decoder_changed"]
    assert {"loss", "dice", "accuracy", "iou_head_loss"} <= set(report["evaluate"])
    assert report["predict_shapes"] == {"mask_logits": [16, 3, 64, 64], "iou_scores": [16, 3]}
    assert report["embeddings_error"] < 1e-4
    assert report["loaded_error"] < 1e-5 and report["loaded_freeze"] == ["vision_encoder", "prompt_encoder"]
    assert report["preset_error"].startswith("could not load keras-hub preset 'sam_base_sa1b'")
    assert "\n" not in report["preset_error"]
    assert report["readme_printed"] == "(2, 1, 64, 64)"  # the README's example ran to its end


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_converted_tfsammodel_predicts_the_same(reports, backend):
    report, _ = reports[backend]
    assert report["converted_mask_error"] < 1e-4 and report["converted_iou_error"] < 1e-4


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_keras3_finetune_converted_back_loads_in_tfsammodel(reports, backend):
    _, output = reports[backend]
    expected = np.load(output / "outputs.npz")
    masks, scores = tf_keras_outputs(output / "checkpoint", expected)
    np.testing.assert_allclose(masks, expected["mask_logits"], atol=1e-4)
    np.testing.assert_allclose(scores, expected["iou_scores"], atol=1e-4)


def test_the_convert_command_goes_both_ways(reference, tmp_path):
    assert main(["convert", str(reference / "checkpoint"), str(tmp_path / "model.keras")]) == 0
    assert main(["convert", str(tmp_path / "model.keras"), str(tmp_path / "back")]) == 0
    assert {"config.json", "model.safetensors", "tf_model.h5", "preprocessor_config.json"} <= set(
        os.listdir(tmp_path / "back"))
    # transformers alone reads its tf_model.h5 (its safetensors path is broken: transformers#40028)
    plain = TFSamModel.from_pretrained(tmp_path / "back", use_safetensors=False)
    assert plain.config.to_dict() == load_tf_sam(tmp_path / "back").config.to_dict()
    expected = np.load(reference / "outputs.npz")
    masks, scores = tf_keras_outputs(tmp_path / "back", expected)
    np.testing.assert_allclose(masks, expected["mask_logits"], atol=1e-4)
    np.testing.assert_allclose(scores, expected["iou_scores"], atol=1e-4)
