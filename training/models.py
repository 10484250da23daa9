"""The --model argument: 'tiny' (seeded random weights), a saved directory, or a hub id."""

import tf_keras as keras
from transformers import TFSamModel

from keras_sam import SamSegmenter, tiny_sam_config


def load_segmenter(name, *, seed=0, freeze=("vision_encoder", "prompt_encoder")):
    """A SamSegmenter from the command line's --model value.

    'tiny' builds the tiny configuration with random weights drawn from `seed`, so the same command
    builds the same model; anything else goes to SamSegmenter.from_pretrained.
    """
    if name == "tiny":
        keras.utils.set_random_seed(seed)
        return SamSegmenter(TFSamModel(tiny_sam_config()), freeze=freeze)
    return SamSegmenter.from_pretrained(name, freeze=freeze)
