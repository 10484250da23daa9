"""Models saved by keras-sam before the package layout changed (tests/fixtures, written by
make_fixtures.py) still load through the public loading paths and predict what they predicted
then. The Keras 3 model's own check runs per backend in tests/keras3/test_segmenter.py."""

import os

import numpy as np
import pytest
import tf_keras as keras

from keras_sam import SamSegmenter
from keras_sam.common.model_files import load_segmenter

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")


@pytest.fixture(scope="module")
def saved():
    with np.load(os.path.join(FIXTURES, "inputs_and_outputs.npz")) as arrays:
        return {key: arrays[key] for key in arrays.files}


def inputs(saved):
    return {key[len("input_"):]: value for key, value in saved.items() if key.startswith("input_")}


def assert_predicts_as_saved(model, saved, family="tf_keras", atol=1e-5):
    predicted = model.predict(inputs(saved), verbose=0)
    for key in ("mask_logits", "iou_scores"):
        np.testing.assert_allclose(np.asarray(predicted[key]), saved[f"{family}_{key}"], atol=atol, rtol=0,
                                   err_msg=key)


@pytest.mark.parametrize("name", ["tf_keras_model.keras", "tf_keras_savedmodel"])
def test_a_saved_tf_keras_model_loads_with_load_model_and_predicts_the_same(saved, name):
    model = keras.models.load_model(os.path.join(FIXTURES, name))
    assert isinstance(model, SamSegmenter) and model.multimask_output
    assert_predicts_as_saved(model, saved)


def test_a_save_pretrained_folder_loads_and_predicts_the_same(saved):
    model = SamSegmenter.from_pretrained(os.path.join(FIXTURES, "tf_keras_pretrained"), multimask_output=True)
    assert_predicts_as_saved(model, saved)


def test_the_command_lines_loader_reads_the_tf_keras_file(saved):
    model = load_segmenter(os.path.join(FIXTURES, "tf_keras_model.keras"))
    assert_predicts_as_saved(model, saved)  # it keeps the saved multimask setting


def test_the_command_lines_loader_converts_the_keras3_file_into_a_tf_keras_model(saved):
    # Across the two families the same weights agree within the parity suite's tolerance.
    model = load_segmenter(os.path.join(FIXTURES, "keras3_model.keras"))
    assert model.multimask_output
    assert_predicts_as_saved(model, saved, family="keras3", atol=1e-4)
