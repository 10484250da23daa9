"""`keras-sam finetune --adapt lora|adapter|full`: what trains, what is saved, and bad input."""

import json
import os

import numpy as np
import pytest
from cli_errors import error_of
from transformers import TFSamModel

from keras_sam.app.cli import main
from keras_sam.app.model_source import load_segmenter


def finetune(phantom_dir, output, *extra):
    return ["finetune", "--data", phantom_dir, "--model", "tiny", "--output", output, "--epochs", "1",
            "--batch-size", "4", "--val-split", "0.25", "--test-split", "0.25", *extra]


@pytest.mark.parametrize("extra, message", [
    (["--adapt", "lora", "--lora-rank", "0"], "--lora-rank must be at least 1; got 0"),
    (["--adapt", "lora", "--lora-rank", "-3"], "--lora-rank must be at least 1; got -3"),
    (["--adapt", "lora", "--freeze", "vision_encoder"],
     "--adapt lora trains the image encoder, which --freeze vision_encoder keeps fixed"),
    (["--adapt", "lora", "--lora-targets", "qkv,query"], "valid targets are qkv, proj, mlp"),
    (["--adapt", "prefix"], "invalid choice: 'prefix'"),
    (["--recompute"], "with the frozen, cached encoder (--adapt decoder) there is nothing to recompute"),
])
def test_bad_adaptation_options_are_one_line_errors(phantom_dir, tmp_path, capsys, extra, message):
    output = str(tmp_path / "run")
    assert message in error_of(finetune(phantom_dir, output, *extra), capsys)
    assert not os.path.exists(output)


def test_lora_run_trains_without_a_cache_and_saves_an_ordinary_sam(phantom_dir, tmp_path, capsys):
    output = str(tmp_path / "lora")
    assert main(finetune(phantom_dir, output, "--adapt", "lora", "--lora-rank", "2", "--lora-targets",
                         "qkv,mlp", "--recompute")) == 0
    assert not os.path.exists(os.path.join(output, "embedding-cache"))
    settings = json.load(open(os.path.join(output, "run.json")))
    assert (settings["adapt"], settings["lora_rank"], settings["lora_targets"], settings["recompute"]) == (
        "lora", 2, "qkv,mlp", True)
    sam = TFSamModel.from_pretrained(os.path.join(output, "model"))
    starting = load_segmenter("tiny")  # not the same weights: the run's were seeded, trained and merged
    assert len(sam.weights) == len(starting.sam.weights)
    assert main(finetune(phantom_dir, output, "--adapt", "lora", "--lora-rank", "2", "--lora-targets",
                         "qkv,mlp", "--recompute")) == 0
    assert "already complete" in capsys.readouterr().out


def test_adapter_run_saves_a_keras_file_that_loads_with_its_adapters(phantom_dir, tmp_path):
    output = str(tmp_path / "adapter")
    assert main(finetune(phantom_dir, output, "--adapt", "adapter")) == 0
    model = load_segmenter(os.path.join(output, "model.keras"))
    assert model.adaptation.method == "adapter"
    assert np.abs(np.concatenate([w.numpy().ravel() for w in model.adaptation.weights
                                  if "up_kernel" in w.name])).max() > 0
