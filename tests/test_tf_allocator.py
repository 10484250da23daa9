"""`import keras_sam` asks TensorFlow for its CPU allocator that keeps freed memory, unless the
environment already chose one."""

import os
import subprocess
import sys

import pytest

from keras_sam import tf_allocator
from keras_sam.app.speed import SpeedChoice, allocator_choice
from keras_sam.tf_allocator import ALLOCATOR_VARIABLE, prefer_reusing_allocator

_KERAS_SAM_FIRST = """
import keras_sam, tensorflow as tf
tf.ones((256, 256))
from keras_sam.tf_allocator import allocator_in_use
print(allocator_in_use())
"""
_TENSORFLOW_FIRST = """
import tensorflow as tf
tf.ones((256, 256))  # TensorFlow's runtime starts here and chooses its allocator
import keras_sam
from keras_sam.tf_allocator import allocator_in_use
print(allocator_in_use())
"""


@pytest.mark.parametrize("program, setting, expected", [
    (_KERAS_SAM_FIRST, None, "bfc"), (_KERAS_SAM_FIRST, "false", "malloc"), (_KERAS_SAM_FIRST, "true", "bfc"),
    (_TENSORFLOW_FIRST, None, "malloc"),
], ids=["keras-sam-first", "opted-out", "asked-for", "tensorflow-first"])
def test_tensorflow_uses_the_allocator_keras_sam_asks_for_unless_told_otherwise(program, setting, expected):
    environ = {key: value for key, value in os.environ.items() if key != ALLOCATOR_VARIABLE}
    if setting is not None:
        environ[ALLOCATOR_VARIABLE] = setting
    environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    result = subprocess.run([sys.executable, "-c", program], env=environ, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-1] == expected


def test_a_setting_already_in_the_environment_is_kept():
    environ = {ALLOCATOR_VARIABLE: "0"}
    assert prefer_reusing_allocator(environ) == "0" and environ == {ALLOCATOR_VARIABLE: "0"}
    environ = {}
    assert prefer_reusing_allocator(environ) == "true" and environ == {ALLOCATOR_VARIABLE: "true"}


@pytest.mark.parametrize("in_use, setting, expected", [
    ("bfc", "true", "keeps freed memory for reuse; TF_CPU_ALLOCATOR_USE_BFC=true"),
    ("malloc", "false", "TF_CPU_ALLOCATOR_USE_BFC=false in the environment"),
    ("malloc", "1", "TensorFlow started before keras_sam was imported, so TF_CPU_ALLOCATOR_USE_BFC=1 came too late"),
])
def test_the_run_says_which_allocator_it_got_and_why(monkeypatch, in_use, setting, expected):
    monkeypatch.setenv(ALLOCATOR_VARIABLE, setting)
    monkeypatch.setattr(tf_allocator, "allocator_in_use", lambda: in_use)
    assert allocator_choice() == SpeedChoice(in_use, expected)
