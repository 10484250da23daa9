"""From a --model value to a tf-keras SamSegmenter: a preset, a run's folder, a saved model
folder, a .keras file of either model family, or a hub id."""

import json
import os
import tempfile
import zipfile

from keras_sam.app.defaults import preset_of
from keras_sam.hub import ModelLoadError, require_tf_sam
from keras_sam.segmenter import SamSegmenter, load_model_file

RUN_SETTINGS = "run.json"
"""The file that marks a `keras-sam finetune` run's folder (keras_sam.app.run_directory)."""


def model_folder(model):
    """The saved model a --model value names where it is a run's folder: its model/ inside;
    otherwise the value unchanged."""
    inside = os.path.join(model, "model")
    if (os.path.isdir(model) and not os.path.exists(os.path.join(model, "config.json"))
            and os.path.exists(os.path.join(inside, "config.json"))):
        return inside
    return model


def run_folder_of(model):
    """The `keras-sam finetune` run a --model value comes from (the run's folder or its model/),
    or None."""
    path = os.path.abspath(model)
    for candidate in (path, os.path.dirname(path)):
        if (os.path.isfile(os.path.join(candidate, RUN_SETTINGS))
                and path in (candidate, os.path.join(candidate, "model"))):
            return candidate
    return None


def load_segmenter(model, freeze=("vision_encoder", "prompt_encoder")):
    """A SamSegmenter from a --model value.

    Args:
        model: a preset built with random weights (seed them first with
            keras.utils.set_random_seed), a run's folder (its model/ is loaded), a folder written by
            save_pretrained, a .keras file (tf-keras's `model.save` or Keras 3's, which
            `keras-sam convert` writes), or a hub id.
        freeze: the components that stay fixed in training.

    Raises:
        ModelLoadError: the model cannot be found or read; the message says what to give.
    """
    preset = preset_of(model)
    if preset.random_config is not None:
        return SamSegmenter(require_tf_sam()(preset.random_config()), freeze=freeze)
    if model.endswith(".keras"):
        segmenter = _from_keras_file(model)
        segmenter.freeze = freeze
        return segmenter
    return SamSegmenter.from_pretrained(model_folder(model), freeze=freeze)


def _from_keras_file(path):
    if not os.path.isfile(path):
        raise ModelLoadError(f"{path} does not exist")
    try:
        with zipfile.ZipFile(path) as archive:
            version = json.loads(archive.read("metadata.json"))["keras_version"]
    except (zipfile.BadZipFile, KeyError, ValueError) as error:
        raise ModelLoadError(f"{path} is not a Keras model file ({error})") from error
    if version.startswith("2."):  # tf-keras's own model.save
        return load_model_file(path)
    try:
        from keras_sam.keras3.convert import checkpoint_from_keras_file
    except ImportError as error:
        raise ModelLoadError(f"{path} was written by Keras {version}: reading it needs the Keras 3 "
                             f"family, pip install 'keras-sam[keras3]' ({error})") from error
    with tempfile.TemporaryDirectory(prefix="keras-sam-model-") as folder:
        checkpoint_from_keras_file(path, folder)
        return SamSegmenter.from_pretrained(folder)
