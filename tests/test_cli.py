"""The command line, run in-process: a short fine-tune on phantoms, then evaluate and predict."""

import csv
import json
import os
import re
import shutil

import numpy as np
import pytest
from PIL import Image
from cli_errors import error_of
from transformers import TFSamModel

from keras_sam.app.cli import main


@pytest.fixture(scope="module")
def run(phantom_dir, tmp_path_factory):
    output = str(tmp_path_factory.mktemp("cli") / "run")
    argv = ["finetune", "--data", phantom_dir, "--model", "tiny", "--output", output,
            "--epochs", "2", "--batch-size", "4", "--val-split", "0.25", "--test-split", "0.25"]
    assert main(argv) == 0
    return output, argv


def test_finetune_writes_model_logs_manifest_and_metrics(run):
    output, _ = run
    assert {"model", "logs", "split.json", "metrics.json", "test_lesions.csv", "best_worst.png"} <= set(
        os.listdir(output))
    TFSamModel.from_pretrained(os.path.join(output, "model"))
    metrics = json.load(open(os.path.join(output, "metrics.json")))
    assert set(metrics) == {"test", "val", "counts", "prompts", "kept_epoch"}
    assert metrics["kept_epoch"] in (1, 2)
    assert metrics["prompts"] == {"kind": "box", "jitter": 20.0, "seed": 0}
    for split in ("test", "val"):
        assert set(metrics[split]) == {"finetuned", "before", "box_baseline"}
        for row in metrics[split].values():
            assert set(row) == {"dice", "iou", "hd95", "hd95_median", "nsd", "nsd_median",
                                "surface_unit", "nsd_tolerance", "per_class"}
            assert row["surface_unit"] == "px"  # PNG files carry no pixel spacing
            assert set(row["per_class"]) == {"benign", "malignant"}
            assert 0 <= row["iou"] <= row["dice"] <= 1
    assert metrics["counts"]["per_class"]["normal"]["empty_mask_images_left_out"] == 3
    events = os.listdir(os.path.join(output, "logs", "validation"))
    assert events
    with open(os.path.join(output, "training.csv")) as handle:  # the rate, as in TensorBoard's scalars
        assert "learning_rate" in next(csv.reader(handle))


def test_the_same_command_again_says_the_run_is_complete(run, capsys):
    output, argv = run
    before = os.path.getmtime(os.path.join(output, "metrics.json"))
    assert main(argv) == 0
    assert "already complete" in capsys.readouterr().out
    assert os.path.getmtime(os.path.join(output, "metrics.json")) == before


def test_evaluate_and_predict_on_the_saved_model(run, phantom_dir, tmp_path, capsys):
    output, _ = run
    evaluation = tmp_path / "eval"
    assert main(["evaluate", "--model", os.path.join(output, "model"), "--data", phantom_dir,
                 "--output", str(evaluation), "--manifest", os.path.join(output, "split.json")]) == 0
    metrics = json.load(open(evaluation / "metrics.json"))
    run_metrics = json.load(open(os.path.join(output, "metrics.json")))
    assert metrics["counts"]["lesions"] == run_metrics["counts"]["splits"]["test"]
    assert metrics["counts"]["scored"] == "test split"
    # finetune scored from float16 cached embeddings, evaluate from pixels: equal up to rounding.
    assert metrics["model"]["dice"] == pytest.approx(run_metrics["test"]["finetuned"]["dice"], abs=0.01)
    # The same prompts as during the run: each lesion's jitter comes from the lesion itself.
    assert metrics["box_baseline"] == run_metrics["test"]["box_baseline"]
    assert (evaluation / "lesions.csv").exists() and (evaluation / "best_worst.png").exists()

    image = os.path.join(phantom_dir, "benign", "benign (1).png")
    width, height = Image.open(image).size
    prediction = tmp_path / "pred"
    assert main(["predict", "--model", os.path.join(output, "model"), "--image", image,
                 "--output", str(prediction), "--box", "10,10,100,90", "--box", "50,40,150,120",
                 "--point", "60,50", "--point", "5,5,0"]) == 0
    masks = [np.asarray(Image.open(prediction / f"mask_{k}.png")) for k in (1, 2)]
    assert all(mask.shape == (height, width) for mask in masks)
    assert set(np.unique(masks[0])) <= {0, 255}
    assert Image.open(prediction / "overlay.png").size == (width, height)
    assert len(json.load(open(prediction / "predictions.json"))) == 2


def test_evaluate_scores_simulated_corrective_clicks(run, phantom_dir, tmp_path):
    output, _ = run
    evaluation = tmp_path / "eval-clicks"
    assert main(["evaluate", "--model", os.path.join(output, "model"), "--data", phantom_dir,
                 "--output", str(evaluation), "--clicks", "3"]) == 0
    metrics = json.load(open(evaluation / "metrics.json"))
    clicks = metrics["model"]["clicks"]
    assert len(clicks["dice_at"]) == 3 and 1 <= clicks["noc85"] <= clicks["noc90"] <= 3
    with open(evaluation / "lesions.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert np.mean([float(row["dice_at_1"]) for row in rows]) == pytest.approx(clicks["dice_at"][0], abs=1e-6)
    assert np.mean([int(row["noc90"]) for row in rows]) == pytest.approx(clicks["noc90"])
    assert (evaluation / "clicks.png").exists()


def _damaged(relative, content):
    """A data set with one file replaced (bytes, or an array saved as PNG); None removes it."""
    def damage(data):
        path = os.path.join(data, relative)
        if content is None:
            os.remove(path)
        elif isinstance(content, bytes):
            with open(path, "wb") as handle:
                handle.write(content)
        else:
            Image.fromarray(content(path)).save(path)
    return damage


def _three_values(path):
    values = np.zeros(Image.open(path).size[::-1], np.uint8)
    values[:4], values[4:8] = 128, 255
    return values


BAD_INPUTS = [
    # arguments and flags
    (["finetune", "--model", "tiny", "--output", "{out}"], None, "needs --data"),
    (["finetune", "--data", "{missing}", "--model", "tiny", "--output", "{out}"], None, "is not a folder"),
    (["finetune", "--data", "{empty}", "--model", "tiny", "--output", "{out}"], None, "is empty"),
    (["finetune", "--demo", "--epochs", "0", "--output", "{out}"], None, "--epochs must be at least 1; got 0"),
    (["finetune", "--demo", "--batch-size", "two", "--output", "{out}"], None, "--batch-size must be a whole number"),
    (["finetune", "--demo", "--lr", "0", "--output", "{out}"], None, "--lr must be above 0; got 0.0"),
    (["finetune", "--demo", "--val-split", "0.6", "--test-split", "0.5", "--output", "{out}"], None,
     "sum to 1 or more"),
    (["finetune", "--demo", "--val-split", "1.5", "--output", "{out}"], None, "--val-split must be in"),
    (["finetune", "--demo", "--freeze", "encoder", "--output", "{out}"], None, "--freeze encoder is not a component"),
    (["finetune", "--demo", "--data", "{data}", "--output", "{out}"], None, "--demo generates its own data"),
    (["finetune", "--demo", "--precision", "bfloat16", "--output", "{out}"], None,
     "--precision: invalid choice: 'bfloat16'"),
    (["finetune", "--demo", "--output", "{file}"], None, "is a file, not a folder"),
    (["finetune", "--data", "{data}", "--model", "{missing}", "--output", "{out}"], None, "does not exist"),
    (["finetune", "--data", "{data}", "--model", "facebook/sam-vit-nonexistent-offline",
      "--output", "{out}"], None, "could not download .*--demo"),
    (["predict", "--model", "tiny", "--image", "{image}", "--output", "{out}", "--box", "1,2,3"], None,
     "--box must be x0,y0,x1,y1"),
    (["predict", "--model", "tiny", "--image", "{image}", "--output", "{out}", "--box", "50,50,10,60"], None,
     "x1 > x0"),
    (["predict", "--model", "tiny", "--image", "{image}", "--output", "{out}", "--point", "5,5,7"], None,
     "label 1 \\(inside\\) or 0"),
    (["predict", "--model", "tiny", "--image", "{image}", "--output", "{out}", "--box", "0,0,5000,10"], None,
     "reaches outside the"),
    (["predict", "--model", "tiny", "--image", "{missing}", "--output", "{out}", "--box", "0,0,5,5"], None,
     "does not exist"),
    (["predict", "--model", "tiny", "--image", "{image}", "--output", "{out}"], None, "at least one --box"),
    # data files
    (["finetune", "--data", "{copy}", "--model", "tiny", "--output", "{out}"],
     _damaged("benign/benign (2).png", b"not a png"), "benign \\(2\\).png cannot be decoded as an image"),
    (["finetune", "--data", "{copy}", "--model", "tiny", "--output", "{out}"],
     _damaged("malignant/malignant (2).png", b""), "malignant \\(2\\).png is empty \\(0 bytes\\)"),
    (["finetune", "--data", "{copy}", "--model", "tiny", "--output", "{out}"],
     _damaged("benign/benign (3)_mask.png", lambda path: np.zeros((9, 7), np.uint8)),
     "benign \\(3\\)_mask.png is 7x9 but its image is"),
    (["finetune", "--data", "{copy}", "--model", "tiny", "--output", "{out}"],
     _damaged("benign/benign (4)_mask.png", None), "benign \\(4\\).png has no mask"),
    (["finetune", "--data", "{copy}", "--model", "tiny", "--output", "{out}"],
     _damaged("benign/benign (5)_mask.png", _three_values), "masks must be binary; .* has values 0, 128, 255"),
    (["finetune", "--data", "{copy}", "--layout", "images-labels", "--model", "tiny", "--output", "{out}"],
     None, "images does not exist: this layout needs images/ and labels/"),
    (["evaluate", "--data", "{empty}", "--model", "tiny", "--output", "{out}"], None, "no known layout"),
    (["finetune", "--demo", "--prompt", "clicks", "--click-rounds", "0", "--output", "{out}"], None,
     "--click-rounds must be at least 1 .*the default is"),
    (["finetune", "--demo", "--click-rounds", "3", "--output", "{out}"], None,
     "--click-rounds 3 sets the corrective rounds of --prompt clicks; this run's prompt is box"),
    (["evaluate", "--data", "{data}", "--model", "tiny", "--clicks", "51", "--output", "{out}"], None,
     "--clicks must be between 0 .* and 50"),
]


@pytest.mark.parametrize("argv, damage, message", BAD_INPUTS)
def test_bad_inputs_are_one_line_with_status_2_and_leave_nothing(argv, damage, message, phantom_dir,
                                                                tmp_path, capsys, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    os.makedirs(tmp_path / "empty")
    (tmp_path / "a-file").write_text("")
    values = {"out": str(tmp_path / "out"), "missing": str(tmp_path / "missing"),
              "empty": str(tmp_path / "empty"), "data": phantom_dir, "file": str(tmp_path / "a-file"),
              "copy": str(tmp_path / "copy"),
              "image": os.path.join(phantom_dir, "benign", "benign (1).png")}
    if "{copy}" in argv:
        shutil.copytree(phantom_dir, values["copy"])
        if damage:
            damage(values["copy"])
    err = error_of([part.format(**values) for part in argv], capsys)
    assert re.search(message, err), err
    assert not os.path.exists(tmp_path / "out")


def test_an_output_holding_a_different_run_is_refused_and_left_untouched(run, phantom_dir, capsys):
    output, argv = run
    listing = sorted(os.listdir(output))
    changed = [*argv[:-8], "--epochs", "3", "--batch-size", "4", "--val-split", "0.25",
               "--test-split", "0.25"]
    err = error_of(changed, capsys)
    assert ("holds a different keras-sam run (--epochs 3, the run in the folder has 2); choose another "
            "folder or pass --overwrite") in err
    assert sorted(os.listdir(output)) == listing


def test_evaluate_given_a_run_scores_its_test_split_with_its_prompts(run, phantom_dir, tmp_path, capsys):
    output, _ = run
    split = json.load(open(os.path.join(output, "metrics.json")))["counts"]["splits"]  # lesions per split
    for model in (output, os.path.join(output, "model")):  # the run's folder, or its model/
        assert main(["evaluate", "--model", model, "--data", phantom_dir, "--output", str(tmp_path / "e")]) == 0
        metrics = json.load(open(tmp_path / "e" / "metrics.json"))
        assert metrics["counts"]["lesions"] == split["test"] < sum(split.values())
        assert metrics["prompts"] == {"kind": "box", "jitter": 20.0, "seed": 0}  # the run's, not a default
        assert "Scoring the" in capsys.readouterr().out
    assert main(["evaluate", "--model", output, "--data", phantom_dir, "--output", str(tmp_path / "all"),
                 "--all-lesions", "--prompt", "points"]) == 0
    said = capsys.readouterr().out
    metrics = json.load(open(tmp_path / "all" / "metrics.json"))
    trained_on = split["train"] + split["val"]
    assert f"warning: {trained_on} of the {sum(split.values())} lesions scored were used in training" in said
    assert metrics["counts"]["lesions"] == sum(split.values()) and metrics["counts"]["scored"] == "all lesions"
    assert metrics["prompts"]["kind"] == "points" and "box_baseline" not in metrics
    rows = list(csv.DictReader(open(tmp_path / "all" / "lesions.csv")))
    assert rows[0]["points"] and not rows[0]["box"]


def test_evaluate_warns_when_nothing_says_what_the_model_was_trained_on(run, phantom_dir, tmp_path, capsys):
    output, _ = run
    plain = shutil.copytree(os.path.join(output, "model"), tmp_path / "plain")
    assert main(["evaluate", "--model", str(plain), "--data", phantom_dir, "--output", str(tmp_path / "e")]) == 0
    assert "warning: scoring every lesion in" in capsys.readouterr().out
    lesions = sum(json.load(open(os.path.join(output, "metrics.json")))["counts"]["splits"].values())
    assert json.load(open(tmp_path / "e" / "metrics.json"))["counts"]["lesions"] == lesions


def test_evaluate_with_no_prompt_warns_for_a_box_trained_model_and_says_when_no_normal_image_is_left(
        run, phantom_dir, tmp_path, capsys):
    output, _ = run  # a box run, split without its normal images
    with pytest.warns(UserWarning, match="segmenting with no prompt, but this model was fine-tuned with box"):
        assert main(["evaluate", "--model", output, "--data", phantom_dir, "--prompt", "none", "--include-normal",
                     "--output", str(tmp_path / "e")]) == 0
    assert "warning: --include-normal found no image without a lesion to score in the test split" in (
        capsys.readouterr().out)


def test_predict_takes_several_images_writes_candidates_and_records_the_prompts(run, phantom_dir, tmp_path):
    output, _ = run
    folder = os.path.join(phantom_dir, "malignant")
    pattern = os.path.join(phantom_dir, "benign", "benign ([12]).png")
    prediction = tmp_path / "pred"
    assert main(["predict", "--model", output, "--image", folder, "--image", pattern, "--output", str(prediction),
                 "--point", "60,50", "--point", "5,5,0", "--multimask"]) == 0
    names = sorted(os.listdir(prediction))
    assert names == sorted([f"malignant ({k})" for k in range(1, 7)] + ["benign (1)", "benign (2)"])
    record = json.load(open(prediction / "benign (2)" / "predictions.json"))
    assert len(record) == 1
    assert record[0]["points"] == [[60.0, 50.0], [5.0, 5.0]] and record[0]["labels"] == [1, 0]
    assert record[0]["box"] is None and record[0]["image"].endswith("benign (2).png")
    candidates = record[0]["candidates"]
    assert len(candidates) == 3
    assert all(0 <= candidate["predicted_iou"] <= 1 for candidate in candidates)
    assert record[0]["predicted_iou"] == max(candidate["predicted_iou"] for candidate in candidates)
    probability = np.asarray(Image.open(prediction / "benign (2)" / candidates[0]["probability"]))
    mask = np.asarray(Image.open(prediction / "benign (2)" / candidates[0]["mask"])) > 0
    assert probability.shape == mask.shape and probability.dtype == np.uint8
    # The mask is the probability above one half.
    assert np.mean((probability > 127) == mask) > 0.99


def test_files_and_folders_are_written_with_the_users_umask(run, phantom_dir, tmp_path):
    output, _ = run
    assert os.stat(os.path.join(output, "metrics.json")).st_mode & 0o777 == 0o666 & ~_umask()
    assert os.stat(os.path.join(output, "model")).st_mode & 0o777 == 0o777 & ~_umask()
    for name in os.listdir(os.path.join(output, "model")):
        assert os.stat(os.path.join(output, "model", name)).st_mode & 0o777 == 0o666 & ~_umask(), name


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_a_run_trained_with_points_is_scored_with_points(phantom_dir, tmp_path):
    output = str(tmp_path / "points")
    assert main(["finetune", "--data", phantom_dir, "--model", "tiny", "--output", output, "--epochs", "1",
                 "--prompt", "points", "--val-split", "0.25", "--test-split", "0.25"]) == 0
    metrics = json.load(open(os.path.join(output, "metrics.json")))
    assert metrics["prompts"]["kind"] == "points"
    assert set(metrics["test"]) == {"finetuned", "before"}  # no box was drawn, so no box baseline
    rows = list(csv.DictReader(open(os.path.join(output, "test_lesions.csv"))))
    assert rows and all(row["points"] and row["labels"] and not row["box"] for row in rows)
    assert "predicts_lesion" not in rows[0] and "dice_at_1" not in rows[0]  # no-prompt and click columns absent


def test_predict_on_a_folder_leaves_out_the_images_its_box_does_not_fit(run, phantom_dir, tmp_path, capsys):
    output, _ = run
    folder = os.path.join(phantom_dir, "malignant")
    names = sorted(name for name in os.listdir(folder) if "_mask" not in name)
    fits = [name for name in names if min(Image.open(os.path.join(folder, name)).size) >= 260]
    assert 0 < len(fits) < len(names)  # the phantoms' sizes vary
    assert main(["predict", "--model", output, "--image", folder, "--box", "200,200,260,260",
                 "--output", str(tmp_path / "pred")]) == 0
    assert sorted(os.listdir(tmp_path / "pred")) == sorted(os.path.splitext(name)[0] for name in fits)
    said = capsys.readouterr().out
    assert said.count("left out: box 200,200,260,260 reaches outside") == len(names) - len(fits)


def test_a_previous_mask_alone_warns_that_its_clicks_are_missing(run, phantom_dir, tmp_path, capsys):
    output, _ = run
    image = os.path.join(phantom_dir, "benign", "benign (1).png")
    width, height = Image.open(image).size
    previous = np.zeros((height, width), np.uint8)
    previous[height // 4:height // 2, width // 4:width // 2] = 255
    Image.fromarray(previous).save(tmp_path / "previous.png")
    assert main(["predict", "--model", output, "--image", image, "--mask-input", str(tmp_path / "previous.png"),
                 "--output", str(tmp_path / "pred")]) == 0
    assert "with no --point or --box prompts with the previous mask alone" in capsys.readouterr().out
    assert main(["predict", "--model", output, "--image", image, "--mask-input", str(tmp_path / "previous.png"),
                 "--point", f"{width // 3},{height // 3}", "--output", str(tmp_path / "pred2")]) == 0
    assert "previous mask alone" not in capsys.readouterr().out
