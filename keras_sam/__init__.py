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

from keras_sam.common.lazy_exports import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    # The tf-keras family's names (keras_sam.tfkeras); `keras_sam.keras3` has the Keras 3 family's.
    **dict.fromkeys(("DiceBCELoss", "DiceLoss", "DiceScore", "FocalLoss", "FusedAdam", "IoUScore",
                     "SamSegmenter", "SegmentationOutput", "best_mask_logits"), "keras_sam.tfkeras"),
    "postprocess_masks": "keras_sam.common.postprocessing",
    "processor_for_config": "keras_sam.common.configs",
    "sam_vit_base_config": "keras_sam.common.configs",
    "tiny_sam_config": "keras_sam.common.configs",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


if sys.modules.get("tf_keras") is not None:  # imported (None marks an import refused)
    importlib.import_module("keras_sam.tfkeras.segmenter")
