"""Weights moving both ways between the Keras 3 family and transformers' TFSamModel, through the
`keras-sam convert` command. The Keras 3 family's own tests are in tests/keras3/ (run once per
backend); tests/test_family_parity.py compares the two families on the same weights."""

import importlib.util
import os

import numpy as np
import pytest
from transformers import TFSamModel

from conftest import tiny_segmenter
from toy import disks
from keras_sam.app.cli import main
from keras_sam.common.hub import load_tf_sam
from keras_sam.tfkeras.tf_sam_patches import patch_tf_sam

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
