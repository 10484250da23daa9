"""Latency of `embed` and `decode` in each export runtime against the Keras model, and file sizes.

    python benchmarks/export_speed.py                  # sam-small-shapes, every installed format
    python benchmarks/export_speed.py --model vit-base --functions embed,decode --repeats 3

First every artefact is written with `keras_sam.export.writers` (no agreement check: `keras-sam
export` does that) into `--workdir` (default: a temporary folder), each format in a process of its
own so that its converter's memory goes back before the next (one process writing every format of
sam-vit-base in turn passed 18 GiB during the ONNX conversion): the SavedModel once, ONNX converted
once per function and saved in each quantisation, LiteRT converted once per quantisation. A format
already written in `--workdir` by an earlier run of the same command is reused. `--functions`
limits the ONNX and LiteRT files to some of the four (at sam-vit-base size `segment` is a second
copy of the encoder, and converting it costs as much as `embed`). Then the float32 artefacts are
opened, and one image (300x420) is embedded and decoded (one box) in every runtime in turn,
`--repeats` rounds after a warm-up round: the runtimes are timed side by side with the Keras model,
so load from other processes falls on all of them alike; the median is printed. The quantised
artefacts follow, one at a time (at sam-vit-base size each runtime holds gigabytes of activations).

The Keras side is timed twice: its graph parts alone (SamSegmenter's traced encoder on pixel
values, its call on the embedding), and with the processing the exported functions hold (the
processor's resize and normalisation; the masks at the image's size), as
`keras_sam.common.inference.segment_image` runs them. With `--bfloat16` a third Keras row runs the
encoder under the `mixed_bfloat16` policy, as `keras-sam finetune` fills the embedding cache on
CPUs with bfloat16 instructions. LiteRT runs on `--threads` threads (default: every core; the
interpreter's own default is one) with XNNPACK, its default delegate for float models.

"images/s" is 1 / embed seconds, and "x TF" compares it with the "keras + processing" row: the
embedding-cache question of issue 25 (does a runtime embed at least 1.5x faster than TensorFlow?).
Figures are for one machine: compare rows measured in one run.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np


def timed(function):
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def side_by_side(functions, repeats):
    """Median seconds of each function, called in turn for `repeats` rounds after a warm-up round."""
    for function in functions.values():
        function()  # warm-up: tracing, allocation
    times = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            times[name].append(timed(function))
    return {name: statistics.median(values) for name, values in times.items()}


def folder_size(folder):
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(folder) for name in names)


def write_format(model_path, name, quantizations, functions, workdir):
    """Writes `name` in each quantisation into `workdir`/NAME-QUANTIZE; prints {folder: seconds} as JSON."""
    from keras_sam.export import writers
    from keras_sam.export.exporter import load_model
    from keras_sam.export.graph import SamExportModule, erf_gelu, exportable_copy

    model = load_model(model_path)
    module = SamExportModule(exportable_copy(model.sam, gelu=erf_gelu if name == "onnx" else None), model.processor)
    protos, seconds = {}, {}
    # float16 last: converting an ONNX model to float16 may change it in place.
    for quantize in sorted(quantizations, key=lambda q: q == "float16"):
        folder = os.path.join(workdir, f"{name}-{quantize}")
        started = time.perf_counter()
        if name == "savedmodel":
            writers.write_savedmodel(module, folder)
        elif name == "onnx":
            os.makedirs(folder, exist_ok=True)
            for function in functions:
                if function not in protos:
                    protos[function] = writers.onnx_proto(module, function)
                writers.save_onnx(protos[function], os.path.join(folder, f"{function}.onnx"), quantize)
        else:
            writers.write_litert(module, folder, quantize, functions=functions)
        seconds[folder] = time.perf_counter() - started
        with open(os.path.join(folder, ".written"), "w") as handle:
            json.dump({"seconds": seconds[folder]}, handle)
    print(json.dumps(seconds))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sam-small-shapes", help="a model keras-sam loads, or vit-base "
                        "(sam-vit-base's shapes, random weights)")
    parser.add_argument("--formats", default="savedmodel,onnx,litert")
    parser.add_argument("--quantize", default="none,float16,int8")
    parser.add_argument("--functions", default="segment,embed,decode,decode_points",
                        help="which ONNX and LiteRT files to write (embed and decode are timed)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="LiteRT's threads")
    parser.add_argument("--bfloat16", action="store_true", help="also time the Keras encoder under mixed_bfloat16")
    parser.add_argument("--keras-only", action="store_true", help="time the Keras model only")
    parser.add_argument("--workdir", default=None, help="keep the artefacts here and reuse those already written")
    parser.add_argument("--write", default=None, help=argparse.SUPPRESS)  # child: write this format only
    args = parser.parse_args(argv)
    functions = tuple(args.functions.split(","))
    if args.write:
        write_format(args.model, args.write, args.quantize.split(","), functions, args.workdir)
        return 0
    if not {"embed", "decode"} <= set(functions):
        parser.error(f"--functions must include embed and decode (they are timed); got {args.functions}")

    import tensorflow as tf

    from keras_sam import SamSegmenter
    from keras_sam.app.speed import precision_policy
    from keras_sam.common.configs import sam_vit_base_config
    from keras_sam.common.hub import require_tf_sam
    from keras_sam.common.postprocessing import postprocess_masks
    from keras_sam.common.preprocessing import preprocess_image
    from keras_sam.export import formats
    from keras_sam.export.exporter import load_model
    from keras_sam.export.runtimes import open_artefact

    workdir = args.workdir or tempfile.mkdtemp(prefix="export-speed-")
    os.makedirs(workdir, exist_ok=True)
    model_path = args.model
    if args.model == "vit-base":
        model_path = os.path.join(workdir, "vit-base-random")
        if not os.path.exists(model_path):
            tf.keras.utils.set_random_seed(0)
            SamSegmenter(require_tf_sam()(sam_vit_base_config())).save_pretrained(model_path)
    model = load_model(model_path)
    names, _ = formats.parse_formats(args.formats)
    image = np.random.default_rng(0).integers(0, 256, (300, 420, 3), dtype=np.uint8)
    box = np.array([[60, 50, 300, 250]], np.float32)

    sizes, written = {}, {}
    if not args.keras_only:
        for name in names:
            quantizations = ["none"] if name == "savedmodel" else args.quantize.split(",")
            todo = [q for q in quantizations
                    if not os.path.exists(os.path.join(workdir, f"{name}-{q}", ".written"))]
            if todo:
                print(f"writing {name} ({', '.join(todo)})...", flush=True)
                child = subprocess.run([sys.executable, __file__, "--model", model_path, "--write", name,
                                        "--quantize", ",".join(todo), "--functions", args.functions,
                                        "--workdir", workdir], capture_output=True, text=True)
                if child.returncode:
                    print(f"{name}: writing failed (exit {child.returncode}): {child.stderr[-600:]}", flush=True)
            for quantize in quantizations:
                folder = os.path.join(workdir, f"{name}-{quantize}")
                if not os.path.exists(os.path.join(folder, ".written")):
                    continue
                with open(os.path.join(folder, ".written")) as handle:
                    written[(name, quantize)] = json.load(handle)["seconds"]
                sizes[(name, quantize)] = (folder_size(folder), {
                    f: os.path.getsize(os.path.join(folder, f"{f}.{'onnx' if name == 'onnx' else 'tflite'}"))
                    for f in ("embed", "decode")} if name != "savedmodel" else {})
                print(f"{name} {quantize}: written in {written[(name, quantize)]:.0f} s, "
                      f"{sizes[(name, quantize)][0] / 2**20:.1f} MiB", flush=True)

    pixels = preprocess_image(image, model.processor)[None]
    embedding = np.asarray(model.image_embeddings(pixels))
    prompt = {"image_embeddings": embedding, "input_boxes": box}
    call = tf.function(lambda inputs: model(inputs), autograph=False)
    embedders = {
        # The graph parts alone: pixel values in, logits on the grid out.
        ("keras graph only", "none"): lambda: model.image_embeddings(pixels).numpy(),
        # What the exported functions do: the processor's resize and normalisation before the
        # encoder, masks at the image's size after the decoder (segment_image's two halves).
        ("keras + processing", "none"):
            lambda: model.image_embeddings(preprocess_image(image, model.processor)[None]).numpy(),
    }
    decoders = {
        ("keras graph only", "none"): lambda: call(prompt)["mask_logits"].numpy(),
        ("keras + processing", "none"):
            lambda: postprocess_masks(call(prompt), image_sizes=[image.shape[:2]], processor=model.processor),
    }
    if args.bfloat16:
        with precision_policy("mixed_bfloat16"):
            sam = require_tf_sam()(model.sam.config)
            sam.build_in_name_scope()
            sam.set_weights(model.sam.get_weights())
            half = SamSegmenter(sam)
        embedders[("keras + processing", "mixed_bfloat16")] = \
            lambda: half.image_embeddings(preprocess_image(image, half.processor)[None]).numpy()

    def opened(name, quantize):
        """(embed, decode) callables of one written artefact, or None if it does not run."""
        options = {} if name == "savedmodel" else {"functions": functions}
        if name == "litert":
            options["num_threads"] = args.threads
        try:
            artefact = open_artefact(name, os.path.join(workdir, f"{name}-{quantize}"), **options)
            embeddings = artefact.embed(image)["image_embeddings"]
        except Exception as error:
            print(f"{name} {quantize}: running failed: {type(error).__name__}: {str(error)[:300]}", flush=True)
            return None
        return (lambda: artefact.embed(image), lambda: artefact.decode(embeddings, box, image.shape[:2]))

    # The float32 artefacts are open together and timed side by side with Keras; the quantised
    # ones afterwards, one at a time (at sam-vit-base size every runtime holds gigabytes of
    # activations: all ten open at once took 22 GiB).
    for key in [key for key in written if key[1] == "none"]:
        pair = opened(*key)
        if pair:
            embedders[key], decoders[key] = pair
    print(f"model {args.model}; image 300x420, one box; median of {args.repeats} rounds, side by side; "
          f"LiteRT on {args.threads} threads", flush=True)
    embed = side_by_side(embedders, args.repeats)
    decode = side_by_side(decoders, args.repeats)
    embedders.clear(), decoders.clear()
    for key in [key for key in written if key[1] != "none"]:
        pair = opened(*key)
        if pair:
            embed.update(side_by_side({key: pair[0]}, args.repeats))
            decode.update(side_by_side({key: pair[1]}, args.repeats))
        del pair
    reference = embed[("keras + processing", "none")]
    reference_decode = decode[("keras + processing", "none")]
    print("\n| runtime | quantize | embed ms | images/s | x TF | decode ms | x TF | size MiB (embed, decode files) |")
    print("|---|---|---|---|---|---|---|---|")
    for key, seconds in embed.items():
        name, quantize = key
        total, files = sizes.get(key, (None, {}))
        size = "" if total is None else f"{total / 2**20:.1f}" + (
            f" ({files['embed'] / 2**20:.1f}, {files['decode'] / 2**20:.1f})" if files else "")
        decode_ms = f"{decode[key] * 1000:.1f} | {reference_decode / decode[key]:.2f}" if key in decode else " | "
        print(f"| {name} | {quantize} | {seconds * 1000:.1f} | {1 / seconds:.3f} | {reference / seconds:.2f} | "
              f"{decode_ms} | {size} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
