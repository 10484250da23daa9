"""keras-sam: fine-tune Segment Anything (SAM) on medical images with Keras compile() and fit().

The names below load on first use, so importing a part of keras-sam pulls in only what that part
needs: `keras_sam.data` and `keras_sam.common.geometry` import no Keras at all. In a program that has
already imported tf_keras, `import keras_sam` loads the tf-keras model family at once, which
registers its classes for `tf_keras.models.load_model`.

Importing keras-sam changes no process-wide setting. For SAM's large tensors TensorFlow is much
faster with a CPU allocator that keeps freed memory: `keras_sam.common.tf_allocator` says how to ask
for it (the `keras-sam` command line does).
"""

import importlib
import sys

__version__ = "0.1.0"

_EXPORTS = {
    "DiceBCELoss": "keras_sam.tfkeras.losses",
    "DiceLoss": "keras_sam.tfkeras.losses",
    "DiceScore": "keras_sam.tfkeras.metrics",
    "FocalLoss": "keras_sam.tfkeras.losses",
    "FusedAdam": "keras_sam.tfkeras.optimizers",
    "IoUScore": "keras_sam.tfkeras.metrics",
    "SamSegmenter": "keras_sam.tfkeras.segmenter",
    "SegmentationOutput": "keras_sam.tfkeras.segmenter",
    "best_mask_logits": "keras_sam.tfkeras.segmenter",
    "postprocess_masks": "keras_sam.common.postprocessing",
    "processor_for_config": "keras_sam.common.configs",
    "sam_vit_base_config": "keras_sam.common.configs",
    "tiny_sam_config": "keras_sam.common.configs",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'keras_sam' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))


if sys.modules.get("tf_keras") is not None:  # imported (None marks an import refused)
    importlib.import_module("keras_sam.tfkeras.segmenter")
