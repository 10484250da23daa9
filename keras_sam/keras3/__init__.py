"""keras-sam's Keras 3 model family: keras-hub's SAM trained with compile() and fit() on JAX,
TensorFlow or PyTorch.

    import os; os.environ["KERAS_BACKEND"] = "jax"   # before Keras is imported
    from keras_sam.keras3 import SamSegmenter

Importing this package never imports tf_keras or transformers' TensorFlow classes (those would
turn `tf.keras` into tf-keras for the whole process), and its code imports no TensorFlow (keras-hub
loads TensorFlow where it is installed; tests/test_layout.py imports this package in a JAX
process that refuses TensorFlow). It shares with the tf-keras family
(`keras_sam.tfkeras`, whose modules have the same names for the same roles) what needs neither
Keras, in `keras_sam.common` and `keras_sam.data`: geometry, pre- and post-processing, the
training objective, the loss and metric arithmetic and class bodies, the overlay rendering.
"""

from keras_sam.common.training_options import COMPONENTS
from keras_sam.keras3.callbacks import MaskOverlayCallback
from keras_sam.keras3.losses import DiceBCELoss, DiceLoss, FocalLoss
from keras_sam.keras3.metrics import DiceScore, IoUScore, OnProbabilities
from keras_sam.keras3.segmenter import SamSegmenter

__all__ = ["COMPONENTS", "DiceBCELoss", "DiceLoss", "DiceScore", "FocalLoss", "IoUScore",
           "MaskOverlayCallback", "OnProbabilities", "SamSegmenter"]
