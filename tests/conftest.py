"""Shared test helpers: tiny SAM models and a learnable toy problem (disks with box prompts)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
from transformers import TFSamModel

from keras_sam import SamSegmenter, tiny_sam_config


def disks(n, seed=0, image_size=256, grid=64):
    """n images of a bright disk on a dark background, the disk's box and its mask on the grid."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:grid, :grid]
    scale = image_size // grid
    pixels, boxes, masks = [], [], []
    for _ in range(n):
        cx, cy = rng.uniform(grid * 0.25, grid * 0.75, size=2)
        radius = rng.uniform(grid * 0.1, grid * 0.22)
        mask = ((xx - cx) ** 2 + (yy - cy) ** 2 < radius**2).astype(np.float32)
        image = np.kron(mask * 2.0 - 1.0, np.ones((scale, scale)))
        pixels.append(np.repeat(image[None], 3, axis=0))
        boxes.append(np.array([cx - radius, cy - radius, cx + radius, cy + radius]) * scale)
        masks.append(mask)
    x = {
        "pixel_values": np.stack(pixels).astype(np.float32),
        "input_boxes": np.stack(boxes).astype(np.float32),
    }
    return x, np.stack(masks)


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
