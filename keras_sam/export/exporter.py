"""`export_model`: any model keras-sam loads, written in each format and checked in its runtime.

    model (folder, name, .keras) ─► SamSegmenter (tf-keras) ─► SamExportModule ─► savedmodel/ onnx/ litert/
                                                   │                                    │
                                                   └── segment_image on sample images ──┴─► Dice per prompt ─► export.json

Everything is written into a temporary folder beside the output and renamed into place only when
every format has passed its check, so a failure leaves no half-written export.
"""

import os
import time

from keras_sam.export import checks, formats
from keras_sam.export.formats import ExportCheckFailed, ExportError
from keras_sam.export.graph_names import SIGNATURES
from keras_sam.common.storage import atomic_directory, write_json

QUANTIZABLE = ("onnx", "litert")
NOT_A_SAM = ("{path} is not a SAM model keras-sam can load: give a run's model/ folder, a save_pretrained "
             "folder, sam-small-shapes or a Keras 3 .keras file")


def load_model(model):
    """A tf-keras SamSegmenter from anything keras-sam loads or writes.

    Args:
        model: a SamSegmenter (returned as is), or what `keras_sam.common.model_files.load_segmenter`
            takes: a run's folder or its `model/`, any `save_pretrained` folder, a shipped model's
            name ("sam-small-shapes"), a `.keras` file of either model family.

    Raises:
        ExportError: the path holds no SAM model; the message names it.
    """
    from keras_sam.common.hub import ModelLoadError, shipped_model_path
    from keras_sam.common.model_files import load_segmenter
    from keras_sam.tfkeras.segmenter import SamSegmenter

    if isinstance(model, SamSegmenter):
        return model
    path = os.fspath(model)
    if (os.path.isfile(path) and not path.endswith(".keras")) or (
            not os.path.exists(path) and shipped_model_path(path) is None
            and path.startswith((".", os.path.sep, "~"))):
        raise ExportError(NOT_A_SAM.format(path=path))
    try:
        return load_segmenter(path)
    except (ModelLoadError, OSError, ValueError) as error:
        raise ExportError(f"{NOT_A_SAM.format(path=path)} ({error})") from error


def export_model(model, output, *, formats_to_write=None, quantize="none", overwrite=False, log=print):
    """Exports a SAM model to each format, checks each artefact in its runtime, writes export.json.

    Args:
        model: what `load_model` takes.
        output: the folder to create (it gets `savedmodel/`, `onnx/`, `litert/`, `transformers/`,
            `export.json`).
        formats_to_write: a list among `keras_sam.export.formats.FORMATS`, or a comma-separated
            string; None for every format whose packages are installed.
        quantize: "none", "float16" or "int8" (ONNX and LiteRT; the SavedModel stays float32).
        overwrite: replace an `output` that already holds something.
        log: called with one line per step (None: silent).

    Returns:
        The report written to export.json (a dict).

    Raises:
        ExportError: a bad request (the message says what to do), or ExportCheckFailed when an
            artefact's masks disagree with keras-sam's; `output` is then left as it was.

    Example:
        >>> export_model("sam-small-shapes", "exported", formats_to_write=["onnx"])  # doctest: +SKIP
    """
    log = log or (lambda line: None)
    if formats_to_write is None or isinstance(formats_to_write, str):
        names, skipped = formats.parse_formats(formats_to_write)
    else:
        names, skipped = formats.parse_formats(",".join(formats_to_write))
    formats.check_quantize(quantize)
    if not names:
        raise ExportError(f"no export format is installed: {formats.EXPORT_EXTRA}")
    output = os.path.abspath(os.fspath(output))
    if os.path.isfile(output) or (os.path.isdir(output) and os.listdir(output) and not overwrite):
        raise ExportError(f"--output {output} already holds something; pass --overwrite to replace it")
    for name, missing in skipped.items():
        log(f"skipping {name}: needs {', '.join(missing)} ({formats.EXPORT_EXTRA})")

    segmenter = load_model(model)
    samples = checks.sample_images()
    references = checks.reference_masks(segmenter, samples)
    report = {"model": model if isinstance(model, str) else type(model).__name__,
              "quantize": quantize, "contract": contract(segmenter), "formats": {}, "skipped": skipped}
    with atomic_directory(output) as staging:
        for name in names:
            started = time.perf_counter()
            folder = os.path.join(staging, name)
            if name == "transformers":
                _export_transformers(segmenter, folder, samples, report, started, log)
                continue
            # LiteRT converts from the SavedModel of this export when there is one (the same graph).
            saved_model = os.path.join(staging, "savedmodel") if "savedmodel" in report["formats"] else None
            files = _write(name, segmenter, folder, quantize, saved_model)
            artefact = _open(name, folder)
            figures = checks.agreement(artefact, samples, references)
            applied = quantize if name in QUANTIZABLE else "none"
            needed = checks.MIN_DICE[applied]
            passed = figures["dice_min"] >= needed
            report["formats"][name] = {"folder": name, "files": files, "quantize": applied,
                                       "dice_needed": needed, **figures, "passed": passed,
                                       "size_bytes": _size(folder),
                                       "seconds": round(time.perf_counter() - started, 1)}
            log(f"{name}: {', '.join(files)}; Dice against keras-sam min {figures['dice_min']:.4f} "
                f"(mean {figures['dice_mean']:.4f}, needs {needed}) over {figures['prompts']} prompts")
            if not passed:
                raise ExportCheckFailed(
                    f"{name} disagrees with keras-sam: Dice {figures['dice_min']:.4f} < {needed} on the check "
                    f"images; nothing was written to {output}")
        write_json(os.path.join(staging, "export.json"), report)
    return report


# Most a transformers checkpoint read back may differ from the model in mask logits (float32 rounding).
MAX_LOGIT_DIFFERENCE = 1e-3


def _export_transformers(segmenter, folder, samples, report, started, log):
    """The transformers 5 checkpoint folder, checked by reading it back into TFSamModel."""
    from keras_sam.export.transformers_format import round_trip_agreement, write_transformers

    files = write_transformers(segmenter, folder)
    figures = round_trip_agreement(segmenter, folder, samples)
    passed = figures["logit_max_difference"] <= MAX_LOGIT_DIFFERENCE
    report["formats"]["transformers"] = {
        "folder": "transformers", "files": files, "quantize": "none", **figures,
        "logit_difference_allowed": MAX_LOGIT_DIFFERENCE, "passed": passed, "size_bytes": _size(folder),
        "seconds": round(time.perf_counter() - started, 1),
        "checked": "read back into transformers 4's TFSamModel; for PyTorch transformers 5 run "
                   "scripts/check_transformers_export.py in an environment with torch and transformers>=5"}
    log(f"transformers: {', '.join(files)}; read back into TFSamModel, mask logits at most "
        f"{figures['logit_max_difference']:.2g} from keras-sam's (allowed {MAX_LOGIT_DIFFERENCE:g})")
    if not passed:
        raise ExportCheckFailed(f"transformers checkpoint read back differs from the model by "
                                f"{figures['logit_max_difference']:.3g} in the mask logits (allowed "
                                f"{MAX_LOGIT_DIFFERENCE}); nothing was written")


def contract(segmenter):
    """The exported functions' inputs and outputs (names, dtypes, shapes), as export.json records them."""
    vision = segmenter.sam.config.vision_config
    side = vision.image_size // vision.patch_size
    embeddings = f"float32 (1, {vision.output_channels}, {side}, {side})"
    image = "uint8 (H, W, 3), any H and W (1, 2 or 4 channels are converted to RGB)"
    boxes = "float32 (N, 4) x0, y0, x1, y1 in image pixels (clipped to the image)"
    masks = {"masks": "uint8 (N, H, W) of 0 and 1", "scores": "float32 (N,)"}
    size = "int32 (2,) as (H, W)"
    return {
        "segment": {"inputs": {"image": image, "boxes": boxes}, "outputs": masks},
        "embed": {"inputs": {"image": image}, "outputs": {"image_embeddings": embeddings}},
        "decode": {"inputs": {"image_embeddings": embeddings, "boxes": boxes, "image_size": size},
                   "outputs": masks},
        "decode_points": {"inputs": {"image_embeddings": embeddings,
                                     "points": "float32 (N, P, 2) x, y in image pixels",
                                     "labels": "int32 (N, P), 1 foreground, 0 background",
                                     "image_size": size}, "outputs": masks},
        "model_input_size": vision.image_size,
    }


def _write(name, segmenter, folder, quantize, saved_model=None):
    from keras_sam.export import writers
    from keras_sam.export.graph import SamExportModule, erf_gelu, exportable_copy

    if name == "litert" and saved_model is not None:
        return writers.convert_to_litert(saved_model, folder, quantize)
    # ONNX has erf but no erfc, which TensorFlow's exact GELU uses.
    sam = exportable_copy(segmenter.sam, gelu=erf_gelu if name == "onnx" else None)
    module = SamExportModule(sam, segmenter.processor, multimask_output=segmenter.multimask_output)
    if name == "savedmodel":
        writers.write_savedmodel(module, folder)
        return [f"saved_model.pb (signatures: {', '.join(SIGNATURES)}; serving_default = segment)"]
    if name == "onnx":
        return writers.write_onnx(module, folder, quantize)
    return writers.write_litert(module, folder, quantize)


def _open(name, folder):
    from keras_sam.export.runtimes import open_artefact

    return open_artefact(name, folder)


def _size(folder):
    return sum(os.path.getsize(os.path.join(root, file)) for root, _, files in os.walk(folder) for file in files)
