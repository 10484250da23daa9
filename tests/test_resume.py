"""A killed `keras-sam finetune` resumes where it stopped and ends as an uninterrupted run does."""

import csv
import glob
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from transformers import TFSamModel

from conftest import disks
from keras_sam.app.cli import main

EPOCHS = 8


def settings(phantom_dir):
    return ["finetune", "--data", phantom_dir, "--model", "tiny", "--epochs", str(EPOCHS),
            "--batch-size", "4", "--val-split", "0.25", "--test-split", "0.25", "--seed", "3",
            "--prompt", "box+points"]


def epochs_logged(output):
    path = os.path.join(output, "training.csv")
    if not os.path.exists(path):
        return []
    with open(path) as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


@pytest.mark.slow
def test_a_killed_run_resumes_and_ends_like_an_uninterrupted_one(phantom_dir, tmp_path):
    killed = str(tmp_path / "killed")
    command = [sys.executable, "-m", "keras_sam.app.cli", *settings(phantom_dir), "--output", killed]
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env=environment)
    deadline = time.time() + 240
    while len(epochs_logged(killed)) < 2 and time.time() < deadline and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = epochs_logged(killed)
    assert 2 <= len(done) < EPOCHS, f"the run was not killed during training: {done}"
    assert not os.path.exists(os.path.join(killed, "metrics.json"))
    assert not glob.glob(os.path.join(killed, "**", "*.tmp"), recursive=True)

    resumed = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Resuming after epoch" in resumed.stdout
    assert "Epoch 1/" not in resumed.stdout and f"Epoch {EPOCHS}/{EPOCHS}" in resumed.stdout
    assert epochs_logged(killed)[-1] == EPOCHS - 1

    uninterrupted = str(tmp_path / "uninterrupted")
    assert main([*settings(phantom_dir), "--output", uninterrupted]) == 0
    # The same epochs in the same order with the same prompts: the same training curve...
    assert curve(killed) == pytest.approx(curve(uninterrupted), abs=1e-6)
    # ...and the same model, up to float rounding (Adam turns ~1e-9 gradient noise on untrained
    # parameters into steps of the learning rate's order, hence the weights' looser tolerance).
    ours = TFSamModel.from_pretrained(os.path.join(killed, "model"))
    theirs = TFSamModel.from_pretrained(os.path.join(uninterrupted, "model"))
    for a, b in zip(ours.weights, theirs.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=5e-4, err_msg=a.name)
    x, _ = disks(4)
    inputs = {"pixel_values": x["pixel_values"], "input_boxes": x["input_boxes"][:, None],
              "multimask_output": False}
    np.testing.assert_allclose(ours(**inputs).pred_masks.numpy(), theirs(**inputs).pred_masks.numpy(),
                               atol=1e-4)


def curve(output):
    """Validation Dice by epoch (an epoch logged twice, killed between log and backup, counts once)."""
    with open(os.path.join(output, "training.csv")) as handle:
        return list({int(row["epoch"]): float(row["val_dice"]) for row in csv.DictReader(handle)}.values())
