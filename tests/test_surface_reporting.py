"""HD95 and NSD where results are reported: lesion rows, summaries, metrics.json, the CSV and the table."""

import csv
import json
import os
import re
from types import SimpleNamespace

import pytest

from keras_sam.app.cli import main
from keras_sam.app.report import summary_table
from keras_sam.common.evaluation import summarize, surface_unit

pytest.importorskip("pydicom")
pytest.importorskip("nibabel")


def lesion(spacing):
    return SimpleNamespace(spacing=spacing, image_path="scan.dcm")


def test_the_unit_is_mm_only_when_every_lesion_has_a_spacing():
    assert surface_unit([lesion((0.5, 0.5)), lesion((0.3, 0.4))]) == "mm"
    assert surface_unit([lesion((0.5, 0.5)), lesion(None)]) == "px"
    assert surface_unit([lesion((0.5, 0.5))], units="px") == "px"
    with pytest.raises(ValueError, match="scan.dcm has no pixel spacing"):
        surface_unit([lesion((0.5, 0.5)), lesion(None)], units="mm")


def test_summaries_hold_mean_and_median_per_class_with_the_unit():
    rows = [{"label": "benign", "dice": 0.9, "iou": 0.8, "hd95": 1.0, "nsd": 1.0},
            {"label": "benign", "dice": 0.7, "iou": 0.5, "hd95": 2.0, "nsd": 0.8},
            {"label": "malignant", "dice": 0.5, "iou": 0.3, "hd95": 30.0, "nsd": 0.1}]
    for row in rows:
        row.update(surface_unit="mm", nsd_tolerance=2.0)
    summary = summarize(rows)
    assert summary["hd95"] == pytest.approx(11.0) and summary["hd95_median"] == pytest.approx(2.0)
    assert summary["nsd"] == pytest.approx(1.9 / 3) and summary["nsd_median"] == pytest.approx(0.8)
    assert (summary["surface_unit"], summary["nsd_tolerance"]) == ("mm", 2.0)
    assert summary["per_class"]["benign"]["hd95_median"] == pytest.approx(1.5)
    assert summary["per_class"]["malignant"]["nsd"] == pytest.approx(0.1)
    # Rows from before surface metrics existed summarise as before.
    assert set(summarize([{"label": "a", "dice": 1.0, "iou": 1.0}])) == {"dice", "iou", "per_class"}


def test_the_table_names_the_unit_and_tolerance():
    row = {"dice": 0.8, "iou": 0.7, "hd95": 3.0, "hd95_median": 2.5, "nsd": 0.9, "nsd_median": 0.95,
           "surface_unit": "mm", "nsd_tolerance": 2.0}
    table = summary_table({"test": {"finetuned": row, "before": row, "box_baseline": row}}, ("test",))
    assert "HD95: median over lesions, in mm; NSD: mean, at a tolerance of 2 mm" in table
    assert re.search(r"finetuned\s+2\.50\s+0\.900", table)


@pytest.fixture(scope="module")
def nifti_run(tmp_path_factory):
    from keras_sam.data.clinical_phantoms import write_nifti_phantoms

    root = tmp_path_factory.mktemp("nifti-run")
    data = write_nifti_phantoms(str(root / "task"), volumes=6, slices=5, seed=4, size=(96, 112))
    output = str(root / "run")
    assert main(["finetune", "--data", data, "--model", "tiny", "--output", output, "--epochs", "1",
                 "--val-split", "0.2", "--test-split", "0.2", "--nsd-tolerance", "3"]) == 0
    return data, output


def test_a_nifti_run_reports_surface_metrics_in_mm(nifti_run):
    from keras_sam.data.readers import load_mask
    from keras_sam.common.surface_metrics import surface_scores

    _, output = nifti_run
    metrics = json.load(open(os.path.join(output, "metrics.json")))
    for row in ("finetuned", "before", "box_baseline"):
        summary = metrics["test"][row]
        assert summary["surface_unit"] == "mm" and summary["nsd_tolerance"] == 3.0
        assert {"hd95", "hd95_median", "nsd", "nsd_median"} <= set(summary["per_class"]["lesion"])
    with open(os.path.join(output, "test_lesions.csv")) as handle:
        rows = list(csv.DictReader(handle))
    assert rows and {row["surface_unit"] for row in rows} == {"mm"}
    # The box baseline's HD95 recomputed from the CSV's box, in mm with the volume's spacing (0.8, 0.6).
    from keras_sam.common.geometry import box_mask

    row = rows[0]
    truth = load_mask(row["mask"])
    filled = box_mask(json.loads(row["box"]), truth.shape)
    expected = surface_scores(truth, filled, (0.8, 0.6), tolerance=3.0)
    assert float(row["box_hd95"]) == pytest.approx(expected.hd95, rel=1e-6)
    assert float(row["box_nsd"]) == pytest.approx(expected.nsd, rel=1e-6)
    assert "#slice=" in row["image"]


def test_units_mm_on_pngs_is_one_line_naming_a_file(phantom_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["finetune", "--data", phantom_dir, "--model", "tiny", "--output", str(tmp_path / "out"),
              "--units", "mm"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    # Progress bars may come first; the error is one line, the last, and no traceback.
    assert "Traceback" not in err and err.count("keras-sam: error:") == 1, err
    assert re.search(r"^keras-sam: error: .*\.png carries no pixel spacing .*--units px$", err.splitlines()[-1]), err
    assert not os.path.exists(tmp_path / "out")


def test_evaluate_on_a_manifest_of_slices_writes_surface_metrics(nifti_run, tmp_path, capsys):
    data, output = nifti_run
    target = str(tmp_path / "eval")
    assert main(["evaluate", "--model", os.path.join(output, "model"), "--data", data, "--output", target,
                 "--manifest", os.path.join(output, "split.json"), "--units", "px"]) == 0
    with open(os.path.join(target, "lesions.csv")) as handle:
        rows = list(csv.DictReader(handle))
    with open(os.path.join(output, "test_lesions.csv")) as handle:
        trained = list(csv.DictReader(handle))
    # The manifest's test slices, the same lesions the run scored; here in pixels, as asked.
    assert sorted(row["mask"] for row in rows) == sorted(row["mask"] for row in trained)
    assert {row["surface_unit"] for row in rows} == {"px"}
    metrics = json.load(open(os.path.join(target, "metrics.json")))
    assert metrics["model"]["surface_unit"] == "px" and metrics["model"]["nsd_tolerance"] == 2.0


def test_settings_written_before_surface_metrics_still_load():
    from keras_sam.app.settings import RunSettings

    settings = RunSettings(demo=False, data="d", model="tiny", layout="auto", mask_suffix="", epochs=1,
                           batch_size=2, learning_rate=1e-3, freeze=("vision_encoder",), prompt="box",
                           val_split=0.2, test_split=0.2, seed=0, loss="dice", jitter=5.0,
                           embedding_cache=True, precision="float32", jit_compile=False,
                           skip_bad_files=False, nsd_tolerance=3.0, units="mm")
    payload = settings.to_json()
    assert RunSettings.from_json(payload) == settings
    old = {key: value for key, value in payload.items() if key not in ("nsd_tolerance", "units")}
    assert (RunSettings.from_json(old).nsd_tolerance, RunSettings.from_json(old).units) == (2.0, "auto")
    assert RunSettings.from_json({**payload, "unknown": 1}) is None
    del old["seed"]
    assert RunSettings.from_json(old) is None
