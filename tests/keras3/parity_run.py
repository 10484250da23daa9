"""Run in its own process with KERAS_BACKEND set: the parity harness on the Keras 3 family.

argv: the tests folder, the shared checkpoint folder, the .npz file to write. Refuses every import
of tf_keras and of transformers' TensorFlow modelling code, as the Keras 3 family must not need them.
"""

import importlib.abc
import os
import sys


class BlockTensorFlowKeras(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "tf_keras" or name.endswith(("modeling_tf_sam", "modeling_tf_utils")):
            raise ImportError(f"the Keras 3 family imported {name}")
        return None


sys.meta_path.insert(0, BlockTensorFlowKeras())

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, sys.argv[1])
from parity_harness import measure  # noqa: E402
from keras_sam.keras3 import DiceBCELoss, DiceLoss, FocalLoss, SamSegmenter  # noqa: E402
from keras_sam.keras3.convert import export_weights  # noqa: E402


class Keras3Family:
    losses = {"dice": DiceLoss, "dice+bce": DiceBCELoss, "focal": FocalLoss,
              "keras_bce": lambda: keras.losses.BinaryCrossentropy(from_logits=True)}

    @staticmethod
    def load(multimask_output):
        return SamSegmenter.from_pretrained(sys.argv[2], multimask_output=multimask_output)

    @staticmethod
    def sgd(learning_rate):
        return keras.optimizers.SGD(learning_rate)

    @staticmethod
    def decoder_weights(model):
        weights = export_weights((model.image_encoder, model.prompt_encoder, model.mask_decoder))
        return {name: value for name, value in weights.items() if name.startswith("mask_decoder.")}

    @staticmethod
    def numpy(tensor):
        return np.asarray(keras.ops.convert_to_numpy(tensor))


results = measure(Keras3Family)
np.savez(sys.argv[3], backend=np.asarray(keras.backend.backend()), **results)
