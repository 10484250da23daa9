"""keras-sam's tf-keras model family: transformers' TFSamModel trained with tf-keras compile()
and fit(). The same module names as `keras_sam.keras3` for the same roles (segmenter, losses,
metrics, callbacks, adaptation), plus what only TFSamModel needs (its patches, LoRA and adapter
layers, recomputed encoder blocks, the fused optimizer, the input checks).

    from keras_sam.tfkeras import SamSegmenter   # also `from keras_sam import SamSegmenter`

Every module here imports `tf_keras as keras`. The names below load on first use.
"""

from keras_sam.common.lazy_exports import lazy_exports

_EXPORTS = {
    **dict.fromkeys(("DiceBCELoss", "DiceLoss", "FocalLoss"), "keras_sam.tfkeras.losses"),
    **dict.fromkeys(("DiceScore", "IoUScore", "OnProbabilities"), "keras_sam.tfkeras.metrics"),
    **dict.fromkeys(("SamSegmenter", "SegmentationOutput", "best_mask_logits"), "keras_sam.tfkeras.segmenter"),
    "FusedAdam": "keras_sam.tfkeras.optimizers",
    "MaskOverlayCallback": "keras_sam.tfkeras.callbacks",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
