"""Shared test helpers: tiny SAM models, the toy problem (tests/toy.py) and a phantom folder."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest
from transformers import TFSamModel

from keras_sam import SamSegmenter, tiny_sam_config
from toy import disks


def tiny_segmenter(seed=0, **kwargs):
    """A SamSegmenter over a freshly built tiny TFSamModel with seeded random weights."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    return SamSegmenter(TFSamModel(tiny_sam_config()), **kwargs)


@pytest.fixture
def toy_data():
    return disks(32)


@pytest.fixture(scope="session")
def phantom_dir(tmp_path_factory):
    """A small BUSI-layout folder of phantoms (read-only for tests: copy it to change it)."""
    from keras_sam.data import write_busi_phantoms

    root = tmp_path_factory.mktemp("busi") / "Dataset_BUSI_with_GT"
    return write_busi_phantoms(str(root), counts={"benign": 12, "malignant": 6, "normal": 3}, seed=0)
