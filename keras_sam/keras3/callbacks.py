"""The mask overlay callback for Keras 3 models (everything but the base class is shared)."""

import keras

from keras_sam.common.overlays import OverlayCallbackMixin


class MaskOverlayCallback(OverlayCallbackMixin, keras.callbacks.Callback):
    """Writes overlays of predicted masks, truth and prompts to TensorBoard every few epochs.

    The same arguments and pictures as `keras_sam.tfkeras.callbacks.MaskOverlayCallback` (tf-keras): see
    there.
    """
