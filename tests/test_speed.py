"""Speed options are chosen by measurement on the machine that runs (the timing itself faked here),
recorded in the run folder, and reused when the run resumes."""

import json
import os

import pytest

import keras_sam.app.finetune
import keras_sam.app.speed
from conftest import tiny_segmenter
from keras_sam.app.cli import main
from keras_sam.app.run_directory import RunDirectory
from keras_sam.app.speed import (MIN_STEPS_TO_PROBE, SpeedChoice, allocator_choice, choose_jit_compile,
                                 choose_precision, cpu_supports_bfloat16, too_short_to_probe)


@pytest.mark.parametrize("timings, expected", [
    ({False: 0.50, True: 0.30}, True),
    ({False: 0.30, True: 0.50}, False),
    ({False: 0.40, True: 0.40}, False),  # a tie keeps XLA off: no compiling for nothing
])
def test_the_faster_way_is_kept(timings, expected):
    asked = []
    choice = choose_jit_compile(lambda jit: asked.append(jit) or timings[jit])
    assert choice.value is expected and sorted(asked) == [False, True]
    assert choice.seconds_per_step == {"without_xla": timings[False], "with_xla": timings[True]}
    assert f"{timings[True]:.3f} s a step with XLA" in choice.reason


def test_a_run_too_short_to_repay_the_probe_keeps_xla_off_and_says_why():
    choice = too_short_to_probe(MIN_STEPS_TO_PROBE - 1)
    assert choice.value is False and f"{MIN_STEPS_TO_PROBE - 1} training steps are too few" in choice.reason
    assert too_short_to_probe(MIN_STEPS_TO_PROBE) is None


@pytest.mark.parametrize("asked, has_bfloat16, expected", [
    ("auto", True, "mixed_bfloat16"), ("auto", False, "float32"),
    ("float32", True, "float32"), ("mixed_bfloat16", False, "mixed_bfloat16"),
])
def test_precision_follows_the_cpu_unless_asked(asked, has_bfloat16, expected):
    assert choose_precision(asked, has_bfloat16).value == expected


@pytest.mark.parametrize("argv, precision, jit_compile", [
    (["--demo"], "the sam-small-shapes preset's",
     "the sam-small-shapes preset's: its steps are too short to repay compiling"),
    (["--demo", "--precision", "float32", "--jit-compile"], "set by --precision float32", "set by --jit-compile"),
    (["--data", "d", "--model", "facebook/sam-vit-base", "--output", "o"], None, None),
    (["--data", "d", "--model", "tiny", "--output", "o", "--no-jit-compile"], "the tiny preset's",
     "set by --no-jit-compile"),
])
def test_the_log_gives_the_true_reason_for_each_speed_setting(argv, precision, jit_compile):
    from keras_sam.app.cli import build_parser
    from keras_sam.app.settings import speed_setting_sources

    args = build_parser().parse_args(["finetune", *argv])
    assert speed_setting_sources(args) == {"precision": precision, "jit_compile": jit_compile}
    if precision:
        assert choose_precision("float32", True, precision).reason == precision


@pytest.mark.parametrize("flags, expected", [
    ("fpu sse avx512f avx512_bf16 amx_tile", True), ("fpu sse amx_bf16", True), ("fpu sse avx2", False)])
def test_bfloat16_is_read_from_the_cpu_flags(tmp_path, flags, expected):
    (tmp_path / "cpuinfo").write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    assert cpu_supports_bfloat16(str(tmp_path / "cpuinfo")) is expected
    assert cpu_supports_bfloat16(str(tmp_path / "missing")) is False


def test_choices_are_kept_beside_the_settings(tmp_path):
    run = RunDirectory(tmp_path)
    assert run.recorded_choice("jit_compile") is None
    run.record_choice("precision", SpeedChoice("float32", "asked for"))
    run.record_choice("jit_compile", SpeedChoice(True, "measured", {"with_xla": 0.1, "without_xla": 0.2}))
    assert RunDirectory(tmp_path).recorded_choice("jit_compile") == SpeedChoice(
        True, "measured", {"with_xla": 0.1, "without_xla": 0.2})
    assert RunDirectory(tmp_path).recorded_choice("precision").value == "float32"


def test_a_run_probes_xla_once_says_so_and_a_resumed_run_reuses_it(phantom_dir, tmp_path, monkeypatch, capsys):
    saved = tmp_path / "saved-model"  # not a preset: the run measures
    tiny_segmenter(seed=0).save_pretrained(saved)
    probes = []

    def fake_timer(model, dataset, loss):
        probes.append(model)
        return lambda jit_compile: 0.9 if jit_compile else 0.3  # XLA slower on this "machine"

    monkeypatch.setattr(keras_sam.app.finetune, "step_timer", fake_timer)
    monkeypatch.setattr(keras_sam.app.speed, "MIN_STEPS_TO_PROBE", 1)  # the phantoms make a short run
    output = tmp_path / "run"
    argv = ["finetune", "--data", phantom_dir, "--model", str(saved), "--output", str(output), "--epochs", "1",
            "--precision", "float32", "--val-split", "0.25", "--test-split", "0.25"]
    assert main(argv) == 0
    log = capsys.readouterr().out
    assert "XLA: off (measured on this machine: 0.900 s a step with XLA, 0.300 s without" in log
    allocator = allocator_choice()
    assert f"TensorFlow's CPU allocator: {allocator.value} ({allocator.reason})" in log
    recorded = json.loads((output / "speed.json").read_text())
    assert recorded["jit_compile"]["value"] is False and recorded["precision"]["value"] == "float32"
    assert recorded["cpu_allocator"] == allocator.to_json()
    assert "jit_compile" in json.loads((output / "run.json").read_text())  # the settings keep "measure"
    os.remove(output / "metrics.json")  # as if killed before the end: the same command resumes
    assert main(argv) == 0
    assert len(probes) == 1 and "XLA: off (measured on this machine" in capsys.readouterr().out
