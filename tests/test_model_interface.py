"""The tf-keras SamSegmenter implements keras_sam.common.model_interface.SegmenterModel (the Keras 3 one
is checked in tests/keras3/test_model_interface.py), and the modules that take a model use its
members directly."""

import os
import re

import pytest

from conftest import tiny_segmenter
from model_interface_checks import check_segmenter_model

LIBRARY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "keras_sam")
USERS = [os.path.join("common", name) for name in ("embeddings.py", "inference.py", "postprocessing.py",
                                                   "evaluation.py", "overlays.py")] + [
    os.path.join(family, "callbacks.py") for family in ("tfkeras", "keras3")]


def test_the_tf_keras_segmenter_implements_the_interface():
    check_segmenter_model(tiny_segmenter(seed=0))


@pytest.mark.parametrize("module", USERS)
def test_no_module_that_takes_a_model_probes_it(module):
    with open(os.path.join(LIBRARY, module)) as handle:
        source = handle.read()
    assert not re.search(r"(getattr|hasattr)\((self\.)?model\b", source)
