"""The small SAM shipped inside keras-sam: loadable by name with no hub, inside the wheel, its card
true to its log, and the script that made it runnable."""

import glob
import json
import os
import re
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from transformers import TFSamModel

from keras_sam import SamSegmenter
from keras_sam.common.hub import PRETRAINED_DIRECTORY, shipped_model_path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FOLDER = shipped_model_path("sam-small-shapes")
ENVIRONMENT = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "HF_HUB_OFFLINE": "1"}


def card_scores(folder):
    """The held-out Dice the card states, and the one the log recorded."""
    with open(os.path.join(folder, "README.md")) as handle:
        card = handle.read()
    stated = {"box": float(re.search(r"\*\*([0-9.]+) with the object's box\*\*", card)[1]),
              "point": float(re.search(r"\*\*([0-9.]+) with one\s+point inside it\*\*", card)[1]),
              "filled_box": float(re.search(r"against ([0-9.]+) for the\s+filled box", card)[1])}
    with open(os.path.join(folder, "pretraining.log")) as handle:
        logged = json.loads(re.search(r"held-out Dice: (\{.*\})", handle.read())[1])
    return stated, logged


def test_it_loads_by_name_offline_and_as_a_plain_tfsammodel(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    model = SamSegmenter.from_pretrained("sam-small-shapes")
    plain = TFSamModel.from_pretrained(FOLDER)
    assert [w.shape for w in plain.weights] == [w.shape for w in model.sam.weights]
    assert all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(plain.weights, model.sam.weights))


def test_its_card_states_what_its_log_recorded():
    stated, logged = card_scores(FOLDER)
    assert stated == pytest.approx({name: round(value, 3) for name, value in logged.items()}, abs=5e-4)
    assert stated["box"] > stated["filled_box"]  # it segments better than the box it is given
    size = sum(os.path.getsize(path) for path in glob.glob(os.path.join(FOLDER, "*")))
    assert size < 8 * 2**20


@pytest.mark.slow
def test_the_wheel_holds_the_model_and_no_other_package(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", ROOT, "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp_path)], check=True, env=ENVIRONMENT, timeout=600)
    wheel, = glob.glob(str(tmp_path / "keras_sam-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    shipped = os.path.relpath(FOLDER, os.path.dirname(PRETRAINED_DIRECTORY)).replace(os.sep, "/")
    for name in ("config.json", "tf_model.h5", "preprocessor_config.json", "README.md", "pretraining.log"):
        assert f"keras_sam/{shipped}/{name}" in names, name
    assert {name.split("/")[0] for name in names if not name.startswith("keras_sam-")} == {"keras_sam"}


@pytest.mark.slow
def test_a_short_pretraining_writes_a_loadable_model_with_its_card(tmp_path):
    command = [sys.executable, os.path.join(ROOT, "training", "pretrain_small_sam.py"),
               "--output", str(tmp_path / "model"), "--work-dir", str(tmp_path / "work"),
               "--scenes", "24", "--steps", "4", "--chunk", "2", "--batch-size", "4", "--held-out", "3"]
    result = subprocess.run(command, capture_output=True, text=True, env=ENVIRONMENT, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    model = SamSegmenter.from_pretrained(tmp_path / "model")
    assert model.sam.config.vision_config.image_size == 256
    stated, logged = card_scores(tmp_path / "model")
    assert stated == pytest.approx({name: round(value, 3) for name, value in logged.items()}, abs=5e-4)
    log = (tmp_path / "model" / "pretraining.log").read_text()
    assert "step 2 (box)" in log and "step 4 (points)" in log
