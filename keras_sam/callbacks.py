"""The tf-keras family's callbacks under their first public name: `from keras_sam.callbacks import
MaskOverlayCallback` keeps working. They live in `keras_sam.tfkeras.callbacks`; the Keras 3
family's overlay callback is `keras_sam.keras3.MaskOverlayCallback`."""

from keras_sam.tfkeras.callbacks import (LearningRateLogger, MaskOverlayCallback, NonFiniteLossError,
                                         StopOnNonFiniteLoss)

__all__ = ["LearningRateLogger", "MaskOverlayCallback", "NonFiniteLossError", "StopOnNonFiniteLoss"]
