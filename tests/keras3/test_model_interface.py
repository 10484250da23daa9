"""The Keras 3 SamSegmenter implements keras_sam.common.model_interface.SegmenterModel."""

import keras

from model_interface_checks import check_segmenter_model
from keras_sam.common.configs import tiny_sam_config
from keras_sam.keras3 import SamSegmenter


def test_the_keras3_segmenter_implements_the_interface():
    keras.utils.set_random_seed(0)
    check_segmenter_model(SamSegmenter.from_sam_config(tiny_sam_config()))
