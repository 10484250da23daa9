"""The README's demo follow-up commands and its code snippets, run as written on the demo's run.

The demo is fine-tuned for one epoch instead of thirty (its data, split and prompts are the
same: they depend on the seed only), then each command runs in the folder a new user would be in.
"""

import os
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
README = os.path.join(os.path.dirname(HERE), "README.md")

pytestmark = pytest.mark.slow


def readme():
    with open(README) as handle:
        return handle.read()


def demo_commands():
    """The indented commands after the demo's table, joined across backslashes."""
    section = readme().split("## On a fresh machine", 1)[1].split("## Fine-tuning on real data", 1)[0]
    lines = section.replace("\\\n", " ").splitlines()
    return {line.split()[1]: shlex.split(line.split("#")[0]) for line in lines
            if line.startswith("    keras-sam ")}


def python_block(heading, index=0):
    section = readme().split(heading, 1)[1]
    return section.split("```python\n")[index + 1].split("```", 1)[0]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """A folder holding keras-sam-demo/, as after the README's demo command (one epoch)."""
    folder = tmp_path_factory.mktemp("user")
    result = subprocess.run(["keras-sam", "finetune", "--demo", "--epochs", "1"], cwd=folder,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return folder


def _run(argv, cwd, **kwargs):
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=900, **kwargs)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result


def test_the_readme_predict_box_lies_on_the_lesion(demo):
    command = demo_commands()["predict"]
    result = _run(command, demo)
    assert result.stderr == "", result.stderr  # no TensorFlow log lines either
    output = command[command.index("--output") + 1]
    image = command[command.index("--image") + 1]
    truth = np.asarray(Image.open(os.path.join(demo, image.replace(".png", "_mask.png"))).convert("L")) > 0
    predicted = np.asarray(Image.open(os.path.join(demo, output, "mask_1.png"))) > 0
    dice = 2 * (truth & predicted).sum() / (truth.sum() + predicted.sum())
    assert dice >= 0.8, dice


def test_the_readme_evaluate_scores_the_runs_test_split(demo):
    import json

    command = demo_commands()["evaluate"]
    result = _run(command, demo)
    output = os.path.join(demo, command[command.index("--output") + 1])
    scored = json.load(open(os.path.join(output, "metrics.json")))
    run = json.load(open(os.path.join(demo, "keras-sam-demo", "metrics.json")))
    assert scored["counts"]["lesions"] == run["counts"]["splits"]["test"]
    assert scored["prompts"] == run["prompts"]
    assert f"Scoring the {scored['counts']['lesions']} test lesions" in result.stdout


def test_the_readme_own_code_example_runs_on_the_demo_data(demo):
    code = python_block("## In your own Keras code")
    assert "epochs=5" in code
    script = demo / "own_code.py"
    script.write_text(code.replace("epochs=5", "epochs=1"))
    _run([sys.executable, str(script)], demo)
    assert os.path.exists(os.path.join(demo, "my-sam", "config.json"))
    assert os.listdir(os.path.join(demo, "logs", "validation"))


def test_the_readme_segment_snippet_runs(demo):
    code = python_block("## In your own Keras code", 1)
    model = "from keras_sam import SamSegmenter\nmodel = SamSegmenter.from_pretrained('keras-sam-demo/model')\n"
    code = re.sub(r"^result = postprocess_masks.*$", "", code, flags=re.M)  # needs a batch x of its own
    script = demo / "segment.py"
    script.write_text(model + code + "\nassert mask.shape == image.shape[:2] and 0 <= score <= 1\n")
    _run([sys.executable, str(script)], demo)


def test_the_readme_keras3_folder_example_runs(demo):
    pytest.importorskip("keras_hub")
    code = python_block("## Keras 3", 1)
    assert "epochs=5" in code
    script = demo / "keras3_folder.py"
    script.write_text(code.replace("epochs=5", "epochs=1").replace('"logs"', '"logs-keras3"'))
    result = _run([sys.executable, str(script)], demo, env={**os.environ, "PYTHONWARNINGS": "default"})
    for warning in ("ran out of data", "shuffle=True", "pixel_values"):
        assert warning not in result.stderr, result.stderr[-2000:]
    assert os.listdir(os.path.join(demo, "logs-keras3", "validation"))
