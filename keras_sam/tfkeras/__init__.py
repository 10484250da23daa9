"""keras-sam's tf-keras model family: transformers' TFSamModel trained with tf-keras compile()
and fit(). The same module names as `keras_sam.keras3` for the same roles (segmenter, losses,
metrics, callbacks, adaptation), plus what only TFSamModel needs (its patches, LoRA and adapter
layers, recomputed encoder blocks, the fused optimizer, the input checks).

    from keras_sam.tfkeras import SamSegmenter   # also `from keras_sam import SamSegmenter`

Every module here imports `tf_keras as keras`. The names below load on first use.
"""

import importlib

_EXPORTS = {
    "DiceBCELoss": "keras_sam.tfkeras.losses",
    "DiceLoss": "keras_sam.tfkeras.losses",
    "FocalLoss": "keras_sam.tfkeras.losses",
    "DiceScore": "keras_sam.tfkeras.metrics",
    "IoUScore": "keras_sam.tfkeras.metrics",
    "OnProbabilities": "keras_sam.tfkeras.segmenter",
    "MaskOverlayCallback": "keras_sam.tfkeras.callbacks",
    "SamSegmenter": "keras_sam.tfkeras.segmenter",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'keras_sam.tfkeras' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
