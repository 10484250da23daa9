"""The command line's first second: --help, --version and option errors load no TensorFlow, and
TensorFlow's native log records stay out of what a command prints."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from keras_sam.app.quiet import LogRecordFilter, without_log_records

STARTUP = """WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
I0000 00:00:1796535514.741221    4824 port.cc:153] oneDNN custom operations are on.
I0000 00:00:1796535514.805498    4824 cpu_feature_guard.cc:227] This TensorFlow binary is optimized
To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild TensorFlow.
E0000 00:00:1796535763.494179    9645 cuda_platform.cc:52] failed call to cuInit: UNKNOWN ERROR (303)
W0000 00:00:1796535763.494179    9645 util.cc:131] something
"""


def test_log_records_and_their_continuations_are_dropped_the_rest_kept():
    text = STARTUP + ("Checking data: 100%|##########| 22/22\nF0000 00:00:17.5 1 x.cc:5] fatal\n  its detail\n"
                      "Traceback (most recent call last):\nI0000 00:00:1.5    2 y.cc:9] late\n")
    assert without_log_records(text) == ("Checking data: 100%|##########| 22/22\nF0000 00:00:17.5 1 x.cc:5] "
                                         "fatal\n  its detail\nTraceback (most recent call last):\n")


def test_a_progress_bar_passes_at_once_and_a_record_split_across_writes_is_still_dropped():
    stream = LogRecordFilter()
    assert stream.feed("\rScoring 1/8") == "\rScoring 1/8"  # no newline yet, shown now
    assert stream.feed("\rScoring 2/8\n") == "\rScoring 2/8\n"
    assert stream.feed("E0000 00:00:17") == ""  # may be a record: held back
    assert stream.feed("96535763.494179    9645 cuda_platform.cc:52] cuInit\nEpoch 1/2\n") == "Epoch 1/2\n"
    assert stream.feed("I00") == "" and stream.flush() == "I00"



def test_tf_keras_slow_callback_warnings_are_dropped_and_other_warnings_kept():
    import logging

    from keras_sam.app.quiet import _drop_slow_callback_warnings

    def record(message, *args):
        return logging.LogRecord("tensorflow", logging.WARNING, __file__, 1, message, args, None)

    assert not _drop_slow_callback_warnings(record(
        "Callback method `%s` is slow compared to the batch time (batch time: %.4fs vs `%s` time: "
        "%.4fs). Check your callbacks.", "on_train_batch_end", 0.01, "on_train_batch_end", 0.02))
    assert _drop_slow_callback_warnings(record("Some other warning"))


@pytest.mark.parametrize("args, status, says", [
    (["--help"], 0, "finetune"), (["--version"], 0, "keras-sam 0."), (["predict", "--help"], 0, "--multimask"),
    (["finetune", "--epochs", "0"], 2, "--epochs must be at least 1"), (["evaluate"], 2, "required"),
    (["finetune", "--demo", "--prompt", "circle"], 2, "invalid choice"),
    # mistakes named before TensorFlow loads
    (["finetune", "--data", "no-such-folder", "--model", "tiny", "--output", "o"], 2, "--data no-such-folder is not a folder"),
    (["finetune", "--data", ".", "--output", "o"], 2, "finetune needs --model"),
    (["predict", "--model", "tiny", "--image", "no-such.png", "--box", "1,2,3,4", "--output", "o"], 2,
     "--image no-such.png does not exist"),
    (["predict", "--model", "tiny", "--image", "setup.cfg", "--output", "o"], 2, "needs at least one --box"),
    (["predict", "--model", "setup.cfg", "--image", "README.md", "--box", "1,2,3,4", "--output", "o"], 2,
     "--model setup.cfg is a file, not a model"),
    (["evaluate", "--model", "no-such-model", "--data", ".", "--output", "o"], 2,
     "no such folder or file, not a model that comes with keras-sam (sam-small-shapes, tiny)"),
    (["evaluate", "--model", "runs/no-such/model", "--data", ".", "--output", "o"], 2, "does not exist"),
])
def test_help_version_and_option_errors_load_no_tensorflow(args, status, says):
    result = subprocess.run([sys.executable, "-c", "import sys\nfrom keras_sam.app.cli import main\ntry:\n"
                             "    main()\nexcept SystemExit as exit:\n    code = exit.code\n"
                             "print('LOADED', sorted(m for m in sys.modules if m.split('.')[0] in "
                             "('tensorflow', 'tf_keras', 'transformers', 'keras', 'jax')))\nsys.exit(code)", *args],
                            capture_output=True, text=True, timeout=120,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert result.returncode == status, result.stderr
    assert says in result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1] == "LOADED []"


@pytest.mark.slow
def test_predict_prints_no_tensorflow_log_line(phantom_dir, tmp_path):
    image = os.path.join(phantom_dir, "benign", "benign (1).png")
    result = subprocess.run(["keras-sam", "predict", "--model", "sam-small-shapes", "--image", image,
                             "--box", "10,10,100,90", "--output", str(tmp_path / "pred")],
                            env={k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"},
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith("benign (1).png: mask_1.png: "), lines
