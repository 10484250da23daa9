"""From a --model value to a tf-keras SamSegmenter: a preset, a run's folder, a saved model
folder, a .keras file of either model family, or a hub id."""

import os

from keras_sam.common import model_files
from keras_sam.app.defaults import preset_of
from keras_sam.common.hub import require_tf_sam
from keras_sam.tfkeras.segmenter import SamSegmenter

RUN_SETTINGS = "run.json"
"""The file that marks a `keras-sam finetune` run's folder (keras_sam.app.run_directory)."""


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
    """A SamSegmenter from a --model value: a preset built with random weights (seed them first
    with keras.utils.set_random_seed), or anything `keras_sam.common.model_files.load_segmenter` takes
    (a run's folder, a save_pretrained folder, a .keras file of either family, a hub id).

    Raises:
        ModelLoadError: the model cannot be found or read; the message says what to give.
    """
    preset = preset_of(model)
    if preset.random_config is not None:
        return SamSegmenter(require_tf_sam()(preset.random_config()), freeze=freeze)
    return model_files.load_segmenter(model, freeze=freeze)
