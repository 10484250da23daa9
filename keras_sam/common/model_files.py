"""A tf-keras SamSegmenter from whatever keras-sam writes or loads: a `save_pretrained` folder (or a
`keras-sam finetune` run's folder, which holds one as model/), a `.keras` file of either model
family, a shipped model's name or a hub id. The command line and export both load through here."""

import json
import os
import tempfile
import zipfile

from keras_sam.common.hub import ModelLoadError


def model_folder(path):
    """The saved model `path` names where it is a run's folder: its model/ inside; else `path`."""
    inside = os.path.join(path, "model")
    if (os.path.isdir(path) and not os.path.exists(os.path.join(path, "config.json"))
            and os.path.exists(os.path.join(inside, "config.json"))):
        return inside
    return path


def load_segmenter(source, freeze=("vision_encoder", "prompt_encoder")):
    """A SamSegmenter from a folder, a .keras file, a shipped model's name or a hub id.

    Args:
        source: a run's folder (its model/ is loaded), a folder written by save_pretrained, a
            .keras file (tf-keras's `model.save`, or Keras 3's, which `keras-sam convert` writes:
            converted through its transformers checkpoint, keeping its multimask setting), a
            shipped model's name ("sam-small-shapes") or a hub id.
        freeze: the components that stay fixed in training.

    Raises:
        ModelLoadError: the model cannot be found or read; the message names it.
    """
    from keras_sam.tfkeras.segmenter import SamSegmenter  # here: keras_sam.common imports no Keras

    source = os.fspath(source)
    if not source.endswith(".keras"):
        return SamSegmenter.from_pretrained(model_folder(source), freeze=freeze)
    segmenter = _from_keras_file(source)
    segmenter.freeze = freeze
    return segmenter


def _from_keras_file(path):
    from keras_sam.tfkeras.segmenter import SamSegmenter, load_model_file

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
        multimask = checkpoint_from_keras_file(path, folder)
        return SamSegmenter.from_pretrained(folder, multimask_output=multimask)
