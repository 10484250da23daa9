"""keras-sam's command line asks TensorFlow for its CPU allocator that keeps freed memory, unless
the environment already chose one; importing the library changes nothing."""

import os
import subprocess
import sys

import pytest

from keras_sam.common import tf_allocator
from keras_sam.app.speed import SpeedChoice, allocator_choice
from keras_sam.common.tf_allocator import ALLOCATOR_VARIABLE, prefer_reusing_allocator

_MEASURE = """
import resource
from keras_sam.common.tf_allocator import allocator_in_use
scores = tf.function(lambda x: tf.reduce_sum(tf.matmul(x, x, transpose_b=True)))  # 400 MB freed each call
x = tf.ones((24, 2048, 64))
scores(x)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
scores(x)
print(allocator_in_use(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
_ASKED_FIRST = ("from keras_sam.common.tf_allocator import prefer_reusing_allocator\n"
                "prefer_reusing_allocator()  # as the command line does, before TensorFlow starts\n"
                "import tensorflow as tf\n" + _MEASURE)
_TENSORFLOW_FIRST = ("import tensorflow as tf\n"
                     "tf.ones((256, 256))  # TensorFlow's runtime starts here and chooses its allocator\n"
                     "from keras_sam.common.tf_allocator import prefer_reusing_allocator\n"
                     "prefer_reusing_allocator()\n" + _MEASURE)
_TENSORFLOW_ALONE = """
import tensorflow as tf
try:
    tf.config.experimental.get_memory_info("CPU:0")
    print("onednn")  # a default allocator that keeps statistics: oneDNN's, on CPUs it targets
except ValueError:
    print("malloc")
"""


def run(program, setting):
    environ = {key: value for key, value in os.environ.items() if key != ALLOCATOR_VARIABLE}
    if setting is not None:
        environ[ALLOCATOR_VARIABLE] = setting
    environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    result = subprocess.run([sys.executable, "-c", program], env=environ, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.split()


@pytest.fixture(scope="module")
def tensorflow_default():
    """TensorFlow's own CPU allocator on this machine, keras-sam not imported."""
    return run(_TENSORFLOW_ALONE, "false")[-1]


@pytest.mark.parametrize("program, setting, expected", [
    (_ASKED_FIRST, None, "bfc"), (_ASKED_FIRST, "false", "default"), (_ASKED_FIRST, "true", "bfc"),
    (_TENSORFLOW_FIRST, None, "default"),
], ids=["asked-first", "opted-out", "asked-for", "tensorflow-first"])
def test_tensorflow_uses_the_allocator_keras_sam_asks_for_unless_told_otherwise(program, setting, expected,
                                                                              tensorflow_default):
    in_use, page_faults = run(program, setting)[-2:]
    assert in_use == (tensorflow_default if expected == "default" else expected)
    # What the names mean: malloc maps 400 MB of fresh pages for the second call; the others reuse.
    assert (int(page_faults) > 20_000) == (in_use == "malloc"), (in_use, page_faults)


def test_importing_the_library_changes_no_environment_variable():
    program = ("import os\nbefore = dict(os.environ)\nimport keras_sam, keras_sam.data, tf_keras\n"
               "from keras_sam import SamSegmenter\nimport keras_sam.app.cli\n"
               "print(sorted(set(os.environ.items()) ^ set(before.items())))")
    environ = {key: value for key, value in os.environ.items() if key != ALLOCATOR_VARIABLE}
    environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    result = subprocess.run([sys.executable, "-c", program], env=environ, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    changed = eval(result.stdout.strip().splitlines()[-1])
    # transformers sets TF_USE_LEGACY_KERAS for tf-keras; keras-sam itself sets nothing.
    assert [name for name, _ in changed if name != "TF_USE_LEGACY_KERAS"] == []


def test_a_setting_already_in_the_environment_is_kept():
    environ = {ALLOCATOR_VARIABLE: "0"}
    assert prefer_reusing_allocator(environ) == "0" and environ == {ALLOCATOR_VARIABLE: "0"}
    environ = {}
    assert prefer_reusing_allocator(environ) == "true" and environ == {ALLOCATOR_VARIABLE: "true"}


@pytest.mark.parametrize("in_use, setting, too_late, expected", [
    ("bfc", "true", False, "keeps freed memory for reuse; TF_CPU_ALLOCATOR_USE_BFC=true"),
    ("malloc", "false", False, "TF_CPU_ALLOCATOR_USE_BFC=false in the environment"),
    ("malloc", "true", True,
     "TensorFlow started before keras-sam asked for it, so TF_CPU_ALLOCATOR_USE_BFC=true came too late"),
    ("onednn", "false", False,
     "TensorFlow's default on this CPU, keeps freed memory too; TF_CPU_ALLOCATOR_USE_BFC=false in the environment"),
])
def test_the_run_says_which_allocator_it_got_and_why(monkeypatch, in_use, setting, too_late, expected):
    monkeypatch.setenv(ALLOCATOR_VARIABLE, setting)
    monkeypatch.setattr(tf_allocator, "allocator_in_use", lambda: in_use)
    monkeypatch.setattr(tf_allocator, "asked_too_late", lambda: too_late)
    assert allocator_choice() == SpeedChoice(in_use, expected)
