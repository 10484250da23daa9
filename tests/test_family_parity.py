"""Parity of the two model families: the same weights (through keras_sam.keras3.convert) and the
same batch give the same outputs, losses, decoder gradients, metrics and fit steps.

The tf-keras family is measured in this process; the Keras 3 family in one process per backend
(tests/keras3/parity_run.py), all by tests/parity_harness.py. Each comparison is a test of its own.

Tolerances: about 10x what was measured here (tiny config, random weights, float32, both backends;
the two families implement the same layers with different op orders, so they agree to float32
rounding): outputs 5.3e-6 at most (logits of order 1), losses 3.6e-7 relative, logged metrics
9.1e-7 relative, decoder gradients 2.2e-6 of the case's largest gradient, weights after fit 1.2e-7.
For scale: the IoU head's term, which the tf-keras family once left out of its logged loss, is
0.2 to 0.6 of this batch's loss.
"""

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
import tf_keras as keras

from conftest import tiny_segmenter
from parity_harness import LOSSES, STEP_CASES, WEIGHTINGS, case_name, measure
from keras_sam import DiceBCELoss, DiceLoss, FocalLoss, SamSegmenter
from keras_sam.keras3.convert import _torch_name_and_value  # TF weight names -> PyTorch names

HERE = os.path.dirname(__file__)
BACKENDS = ["jax", "tensorflow"] + (["torch"] if importlib.util.find_spec("torch") else [])
pytestmark = [pytest.mark.slow, pytest.mark.skipif(importlib.util.find_spec("keras_hub") is None,
                                                   reason="the Keras 3 family needs keras-hub")]
OUTPUT_TOLERANCE = 5e-5  # absolute, on logits of order 1 and IoU scores in [0, 1]
LOSS_TOLERANCE = 5e-6  # relative
GRADIENT_TOLERANCE = 2e-5  # relative to the case's largest gradient
WEIGHT_TOLERANCE = 1e-6  # absolute, on the decoder's weights after fit


class TfKerasFamily:
    losses = {"dice": DiceLoss, "dice+bce": DiceBCELoss, "focal": FocalLoss,
              "keras_bce": lambda: keras.losses.BinaryCrossentropy(from_logits=True)}
    checkpoint = None

    @classmethod
    def load(cls, multimask_output):
        return SamSegmenter.from_pretrained(cls.checkpoint, multimask_output=multimask_output)

    @staticmethod
    def sgd(learning_rate):
        return keras.optimizers.legacy.SGD(learning_rate)

    @staticmethod
    def decoder_weights(model):
        named = (_torch_name_and_value(weight.name.split("/", 1)[1], weight.numpy())
                 for weight in model.sam.mask_decoder.weights)
        return dict(named)

    @staticmethod
    def numpy(tensor):
        return np.asarray(tensor.numpy())


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """(tf-keras results, {backend: Keras 3 results, or the error output of its process})."""
    folder = tmp_path_factory.mktemp("parity")
    tiny_segmenter(seed=3).save_pretrained(folder / "checkpoint")
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    environment.pop("TF_USE_LEGACY_KERAS", None)
    processes = {backend: subprocess.Popen(
        [sys.executable, os.path.join(HERE, "keras3", "parity_run.py"), HERE, str(folder / "checkpoint"),
         str(folder / f"{backend}.npz")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**environment, "KERAS_BACKEND": backend}) for backend in BACKENDS}
    TfKerasFamily.checkpoint = str(folder / "checkpoint")
    reference = measure(TfKerasFamily)
    others = {}
    for backend, process in processes.items():
        _, err = process.communicate(timeout=900)
        others[backend] = dict(np.load(folder / f"{backend}.npz")) if process.returncode == 0 else err[-3000:]
    return reference, others


def _pair(measured, backend):
    reference, others = measured
    other = others[backend]
    assert isinstance(other, dict), f"the Keras 3 family on {backend} failed:\n{other}"
    assert str(other["backend"]) == backend
    return reference, other


@pytest.mark.parametrize("backend", BACKENDS)
def test_both_families_measured_the_same_things(measured, backend):
    reference, other = _pair(measured, backend)
    assert set(reference) == set(other) - {"backend"}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("multimask", [False, True])
def test_the_same_outputs(measured, backend, multimask):
    reference, other = _pair(measured, backend)
    for key in ("mask_logits", "iou_scores"):
        expected = reference[f"outputs/{multimask}/{key}"]
        assert expected.shape == other[f"outputs/{multimask}/{key}"].shape
        np.testing.assert_allclose(other[f"outputs/{multimask}/{key}"], expected, atol=OUTPUT_TOLERANCE)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("multimask", [False, True])
@pytest.mark.parametrize("weighting", WEIGHTINGS)
def test_the_same_loss(measured, backend, loss, multimask, weighting):
    reference, other = _pair(measured, backend)
    key = f"loss/{case_name(loss, multimask, weighting)}"
    assert float(other[key]) == pytest.approx(float(reference[key]), rel=LOSS_TOLERANCE)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", STEP_CASES, ids=lambda case: case_name(*case))
def test_the_same_logged_loss_and_metrics(measured, backend, case):
    reference, other = _pair(measured, backend)
    for metric in ("loss", "dice", "iou", "iou_head_loss"):
        key = f"evaluate/{case_name(*case)}/{metric}"
        assert float(other[key]) == pytest.approx(float(reference[key]), rel=LOSS_TOLERANCE, abs=1e-7), key


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", STEP_CASES, ids=lambda case: case_name(*case))
def test_the_same_decoder_gradients(measured, backend, case):
    reference, other = _pair(measured, backend)
    prefix = f"gradient/{case_name(*case)}/"
    names = [key for key in reference if key.startswith(prefix)]
    assert len(names) > 50
    largest = max(float(np.abs(reference[name]).max()) for name in names)
    assert largest > 1e-3  # the step moved the decoder
    for name in names:
        np.testing.assert_allclose(other[name], reference[name], atol=GRADIENT_TOLERANCE * largest, err_msg=name)


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_same_outputs_and_gradients_without_a_prompt(measured, backend):
    reference, other = _pair(measured, backend)
    for key in ("mask_logits", "iou_scores"):
        np.testing.assert_allclose(other[f"no_prompt/{key}"], reference[f"no_prompt/{key}"], atol=OUTPUT_TOLERANCE)
    gradients = [name for name in reference if name.startswith("no_prompt/gradient/")]
    scale = max(np.abs(reference[name]).max() for name in gradients)
    assert scale > 0
    for name in gradients:
        np.testing.assert_allclose(other[name], reference[name], atol=GRADIENT_TOLERANCE * scale, err_msg=name)


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_same_fit(measured, backend):
    reference, other = _pair(measured, backend)
    np.testing.assert_allclose(other["fit/loss"], reference["fit/loss"], rtol=LOSS_TOLERANCE)
    for name in (key for key in reference if key.startswith("fit/") and key != "fit/loss"):
        np.testing.assert_allclose(other[name], reference[name], atol=WEIGHT_TOLERANCE, err_msg=name)
