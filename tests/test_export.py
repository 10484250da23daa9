"""keras_sam.export and `keras-sam export`: the in-graph processing, the four-function contract in
each runtime, the check against segment_image, the one-line errors, and nothing half-written."""

import importlib.util
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import tiny_segmenter
from keras_sam import SamSegmenter
from keras_sam.app.cli import main
from keras_sam.export import ExportCheckFailed, ExportError, exporter, formats
from keras_sam.export import checks, image_ops
from keras_sam.export.graph import SamExportModule, erf_gelu, exportable_copy
from keras_sam.export.runtimes import open_artefact
from keras_sam.common.inference import segment_image
from keras_sam.common.preprocessing import preprocess_image

INSTALLED = [name for name in formats.FORMATS if not formats.missing_modules(name)]
RUNTIMES = ("savedmodel", "onnx", "litert")  # the formats holding the four functions
INSTALLED_RUNTIMES = [name for name in RUNTIMES if name in INSTALLED]


# ------------------------------------------------------------------ the graph's processing
@pytest.mark.parametrize("size", [(300, 420), (257, 190), (64, 64), (97, 513), (600, 240)])
def test_in_graph_preprocessing_matches_the_processor_to_one_grey_level(size):
    model = tiny_segmenter()
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    expected = preprocess_image(image, model.processor)
    sizes = image_ops.processing_sizes(model.processor)
    got = image_ops.preprocess(tf.constant(image), sizes)[0].numpy()
    assert got.shape == expected.shape
    one_grey_level = 1 / 255 / min(sizes.std) + 1e-5
    assert np.abs(got - expected).max() <= one_grey_level
    # PIL rounds twice in fixed point, the graph at the same places in float32: on uniform noise
    # (the worst case) a few percent of the values land on the neighbouring grey level.
    assert np.mean(np.abs(got - expected) > 1e-4) < 0.1


@pytest.mark.parametrize("size", [(300, 420), (31, 77), (1024, 700)])
def test_mask_matrices_equal_upscale_crop_and_resize(size):
    model = tiny_segmenter()
    sizes = image_ops.processing_sizes(model.processor)
    logits = np.random.default_rng(2).normal(size=(2, sizes.grid_size, sizes.grid_size)).astype(np.float32)
    height, width = size
    from keras_sam.common.postprocessing import masks_at_image_size
    expected = masks_at_image_size(logits, size, model.processor)
    _, _, new_h, new_w = image_ops.image_geometry(tf.zeros((height, width, 3)), sizes.longest_edge)
    got = image_ops.masks_at_image_size(tf.constant(logits), height, width, new_h, new_w, sizes).numpy()
    assert got.shape == (2, height, width) and got.dtype == np.uint8
    assert np.mean(got.astype(bool) != expected) < 1e-4


def test_boxes_outside_the_image_are_clipped_and_put_in_order():
    boxes = tf.constant([[-20.0, 50.0, 500.0, -3.0]])
    got = image_ops.boxes_to_model(boxes, 100, 400, 64, 256).numpy()
    np.testing.assert_allclose(got, [[0.0, 0.0, 256.0, 50 * 0.64]], rtol=1e-6)


# ------------------------------------------------------------------ the module in TensorFlow
@pytest.fixture(scope="module")
def tiny():
    model = tiny_segmenter(seed=3)
    return model, SamExportModule(exportable_copy(model.sam, gelu=erf_gelu), model.processor)


def test_segment_matches_segment_image_with_erf_gelu(tiny):
    model, module = tiny
    samples = checks.sample_images()
    references = checks.reference_masks(model, samples)
    figures = checks.agreement(_InProcess(module), samples, references)
    assert figures["dice_min"] >= 0.99, figures
    assert figures["score_max_difference"] < 1e-3


def test_the_copy_leaves_the_callers_model_alone(tiny):
    model, module = tiny
    assert module.sam is not model.sam
    for mine, theirs in zip(module.sam.weights, model.sam.weights):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())


def test_grey_and_rgba_images_segment_like_their_rgb(tiny):
    _, module = tiny
    image = checks.sample_images()[0][0]
    boxes = np.array([[40, 50, 200, 220]], np.float32)
    rgb = module.segment(image=image, boxes=boxes)["masks"].numpy()
    grey = module.segment(image=image[..., :1], boxes=boxes)["masks"].numpy()
    rgba = module.segment(image=np.concatenate([image, image[..., :1]], -1), boxes=boxes)["masks"].numpy()
    np.testing.assert_array_equal(grey, rgb)
    np.testing.assert_array_equal(rgba, rgb)


def test_a_box_outside_the_image_segments_like_the_clipped_box(tiny):
    model, module = tiny
    image = checks.sample_images()[0][0]  # 300 x 420
    outside = module.segment(image=image, boxes=[[-50.0, 100.0, 900.0, 400.0]])
    clipped = segment_image(model, image, boxes=[[0.0, 100.0, 420.0, 300.0]])
    assert outside["masks"].shape == (1, 300, 420)
    assert checks.dice(outside["masks"].numpy()[0], clipped.masks[0]) >= 0.99


class _InProcess:
    """A SamExportModule behind the artefact interface, run by TensorFlow directly."""

    def __init__(self, module):
        self.module = module

    def segment(self, image, boxes):
        return self.module.segment(image=np.asarray(image, np.uint8), boxes=np.asarray(boxes, np.float32))

    def embed(self, image):
        return self.module.embed(image=np.asarray(image, np.uint8))

    def decode(self, embeddings, boxes, size):
        return self.module.decode(image_embeddings=embeddings, boxes=np.asarray(boxes, np.float32),
                                  image_size=np.asarray(size, np.int32))

    def decode_points(self, embeddings, points, labels, size):
        return self.module.decode_points(image_embeddings=embeddings, points=points,
                                         labels=np.asarray(labels, np.int32), image_size=np.asarray(size, np.int32))


# ------------------------------------------------------------------ requests and errors
@pytest.mark.parametrize("argv, message", [
    (["--format", "onnx,tensorrt"], "unknown --format tensorrt; valid formats: savedmodel, onnx, litert, transformers"),
    (["--model", "{tmp}/notes.txt"], "notes.txt is a file, not a model"),
    (["--model", "{tmp}/empty-folder"], "empty-folder is not a SAM model keras-sam can load"),
    (["--output", "{tmp}/full"], "already holds something; pass --overwrite"),
])
def test_bad_requests_are_one_line_with_status_2(argv, message, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("not a model")
    (tmp_path / "empty-folder").mkdir()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    args = {"--model": "sam-small-shapes", "--output": str(tmp_path / "out"), "--format": "savedmodel"}
    args.update(dict(zip(argv[::2], [value.format(tmp=tmp_path) for value in argv[1::2]])))
    with pytest.raises(SystemExit) as exit_info:
        main(["export", *[part for pair in args.items() for part in pair]])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and message in error, error
    assert not (tmp_path / "out").exists()
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"


def test_a_format_whose_package_is_missing_names_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(formats.importlib.util, "find_spec",
                        lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    with pytest.raises(ExportError, match=r"format onnx needs onnxruntime, not installed: pip install 'keras-sam\[export\]'"):
        formats.parse_formats("onnx")
    chosen, skipped = formats.parse_formats(None)
    assert "onnx" not in chosen and skipped == {"onnx": ["onnxruntime"]}


def test_an_export_that_fails_its_check_leaves_nothing(tmp_path, monkeypatch):
    written = []

    def fake_write(name, segmenter, folder, quantize, saved_model=None):
        os.makedirs(folder)
        open(os.path.join(folder, "segment.onnx"), "w").close()
        written.append(folder)
        return ["segment.onnx"]

    monkeypatch.setattr(exporter, "_write", fake_write)
    monkeypatch.setattr(exporter, "_open", lambda name, folder: None)
    monkeypatch.setattr(checks, "agreement", lambda *a: {"dice_min": 0.5, "dice_mean": 0.7,
                                                         "score_max_difference": 0.1, "prompts": 15})
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("previous export")
    with pytest.raises(ExportCheckFailed, match="onnx disagrees with keras-sam: Dice 0.5000 < 0.99"):
        exporter.export_model("sam-small-shapes", tmp_path / "out", formats_to_write=["onnx"], overwrite=True)
    assert written and not os.path.exists(written[0])
    assert os.listdir(tmp_path / "out") == ["old.txt"]
    assert sorted(os.listdir(tmp_path)) == ["out"]  # no staging folder left beside it


# ------------------------------------------------------------------ every format, exported once
@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """sam-small-shapes exported by the command line to every installed format."""
    output = str(tmp_path_factory.mktemp("export") / "exported")
    assert main(["export", "--model", "sam-small-shapes", "--output", output]) == 0
    with open(os.path.join(output, "export.json")) as handle:
        return output, json.load(handle)


@pytest.mark.slow
def test_every_installed_format_agrees_with_keras_sam(exported):
    _, report = exported
    assert sorted(report["formats"]) == sorted(INSTALLED)
    for name, figures in report["formats"].items():
        if name == "transformers":
            assert figures["passed"] and figures["logit_max_difference"] <= 1e-3, figures
            assert {"config.json", "model.safetensors", "preprocessor_config.json"} == set(figures["files"])
            continue
        assert figures["passed"] and figures["dice_min"] >= 0.99, (name, figures)
        assert figures["prompts"] == 15 and figures["score_max_difference"] < 1e-3, (name, figures)


@pytest.mark.slow
@pytest.mark.parametrize("name", RUNTIMES)
def test_each_artefact_has_the_contract_names_dtypes_and_shapes(exported, name):
    if name not in INSTALLED:
        pytest.skip(f"{name} is not installed")
    output, _ = exported
    artefact = open_artefact(name, os.path.join(output, name))
    image = np.zeros((123, 77, 3), np.uint8)
    out = artefact.segment(image, [[10, 10, 60, 100], [0, 0, 77, 123]])
    assert set(out) == {"masks", "scores"}
    assert out["masks"].shape == (2, 123, 77) and out["masks"].dtype == np.uint8
    assert set(np.unique(out["masks"])) <= {0, 1}
    assert out["scores"].shape == (2,) and out["scores"].dtype == np.float32
    embeddings = artefact.embed(image)
    assert set(embeddings) == {"image_embeddings"}
    assert embeddings["image_embeddings"].shape == (1, 64, 16, 16)
    decoded = artefact.decode_points(embeddings["image_embeddings"], [[[30, 40], [5, 5]]], [[1, 0]], (123, 77))
    assert decoded["masks"].shape == (1, 123, 77) and decoded["scores"].shape == (1,)


@pytest.mark.slow
def test_the_savedmodel_serves_segment_by_default(exported):
    output, _ = exported
    loaded = tf.saved_model.load(os.path.join(output, "savedmodel"))
    assert set(loaded.signatures) == {"serving_default", "segment", "embed", "decode", "decode_points"}
    inputs = loaded.signatures["serving_default"].structured_input_signature[1]
    assert {key: (spec.dtype, spec.shape.as_list()) for key, spec in inputs.items()} == {
        "image": (tf.uint8, [None, None, None]), "boxes": (tf.float32, [None, 4])}


@pytest.mark.slow
def test_onnx_inputs_carry_the_contract_names(exported):
    if "onnx" not in INSTALLED:
        pytest.skip("onnx is not installed")
    import onnxruntime

    output, _ = exported
    session = onnxruntime.InferenceSession(os.path.join(output, "onnx", "decode_points.onnx"))
    assert {i.name: i.type for i in session.get_inputs()} == {
        "image_embeddings": "tensor(float)", "points": "tensor(float)", "labels": "tensor(int32)",
        "image_size": "tensor(int32)"}
    assert [o.name for o in session.get_outputs()] == ["masks", "scores"]


@pytest.mark.slow
def test_bad_inputs_never_crash_a_runtime(exported):
    output, _ = exported
    for name in INSTALLED_RUNTIMES:
        artefact = open_artefact(name, os.path.join(output, name))
        image = checks.sample_images()[0][0]
        for bad in (image[..., :1], np.concatenate([image, image[..., :1]], -1)):
            out = artefact.segment(bad, [[-40, -10, 1000, 120]])  # also a box reaching outside
            assert out["masks"].shape == (1, 300, 420), name


@pytest.mark.slow
def test_the_readme_deploy_snippets_run(exported, tmp_path):
    """Each runtime's snippet from the README's Deploy section, on an image file and a box."""
    import re
    output, _ = exported
    readme = open(os.path.join(os.path.dirname(__file__), "..", "README.md")).read()
    section = readme[readme.index("## Deploy"):]
    snippets = re.findall(r"```python\n(# runtime: (\w+)\n.*?)```", section, flags=re.S)
    assert {runtime for _, runtime in snippets} == set(RUNTIMES)
    image = checks.sample_images()[0][0]
    reference = segment_image(SamSegmenter.from_pretrained("sam-small-shapes"), image, boxes=[[215, 205, 300, 290]])
    assert reference.masks[0].sum() > 500  # the box the snippets use holds a shape of the check image
    Image.fromarray(image).save(tmp_path / "case.png")
    np.save(tmp_path / "case.npy", image)
    for code, runtime in snippets:
        if runtime not in INSTALLED:
            continue
        code = (code.replace('"exported/', f'"{output}/').replace('"case.png"', f'"{tmp_path}/case.png"')
                .replace('"case.npy"', f'"{tmp_path}/case.npy"'))
        namespace = {}
        exec(compile(code, f"README {runtime}", "exec"), namespace)
        assert namespace["mask"].shape == (300, 420) and namespace["mask"].dtype == np.uint8, runtime
        # The same mask as keras-sam's for that box.
        assert checks.dice(namespace["mask"], reference.masks[0]) >= 0.99, runtime


def test_a_keras3_file_loads_for_export_with_the_same_predictions(tmp_path):
    pytest.importorskip("keras_hub")
    assert main(["convert", "sam-small-shapes", str(tmp_path / "model.keras")]) == 0
    model = exporter.load_model(str(tmp_path / "model.keras"))
    shipped = SamSegmenter.from_pretrained("sam-small-shapes")
    image, boxes, _, _ = checks.sample_images()[0]
    got, expected = segment_image(model, image, boxes=boxes), segment_image(shipped, image, boxes=boxes)
    np.testing.assert_allclose(got.logits, expected.logits, atol=1e-4)
    np.testing.assert_allclose(got.scores, expected.scores, atol=1e-5)


def test_a_keras_file_that_is_not_a_sam_names_the_path(tmp_path):
    (tmp_path / "broken.keras").write_text("not a zip")
    with pytest.raises(ExportError, match="broken.keras is not a SAM model keras-sam can load"):
        exporter.load_model(str(tmp_path / "broken.keras"))


@pytest.mark.slow
def test_a_float16_onnx_export_is_checked_and_smaller(exported, tmp_path, monkeypatch):
    if "onnx" not in INSTALLED:
        pytest.skip("onnx is not installed")
    import onnx
    from keras_sam.export import writers

    output, float32 = exported
    # The float32 graphs the fixture converted (and checked), so that only the float16 step is new.
    monkeypatch.setattr(writers, "onnx_proto",
                        lambda module, name: onnx.load(os.path.join(output, "onnx", f"{name}.onnx")))
    report = exporter.export_model("sam-small-shapes", tmp_path / "half", formats_to_write=["onnx"],
                                   quantize="float16", log=None)
    figures = report["formats"]["onnx"]
    assert figures["quantize"] == "float16" and figures["dice_needed"] == 0.97
    assert figures["passed"] and figures["dice_min"] >= 0.97, figures
    assert figures["size_bytes"] < 0.7 * float32["formats"]["onnx"]["size_bytes"]
