"""Latency of `embed` and `decode` in each export runtime against the Keras model, and file sizes.

    python benchmarks/export_speed.py                  # sam-small-shapes, every installed format
    python benchmarks/export_speed.py --model vit-base --functions embed,decode --repeats 3

First every artefact is written with `keras_sam.export.writers` (no agreement check: `keras-sam
export` does that) into a temporary folder: the SavedModel once, ONNX converted once per function
and saved in each quantisation, LiteRT converted once per quantisation. `--functions` limits the
ONNX and LiteRT files to some of the four (at sam-vit-base size `segment` is a second copy of the
encoder, and converting it costs as much as `embed`). Then all of them are opened, and one image
(300x420) is embedded and decoded (one box) in every runtime in turn, `--repeats` rounds after a
warm-up round: the runtimes are timed side by side, so load from other processes falls on all of
them alike; the median is printed.

The Keras side is timed twice: its graph parts alone (SamSegmenter's traced encoder on pixel
values, its call on the embedding), and with the processing the exported functions hold (the
processor's resize and normalisation; the masks at the image's size), as
`keras_sam.inference.segment_image` runs them. With `--bfloat16` a third Keras row runs the
encoder under the `mixed_bfloat16` policy, as `keras-sam finetune` fills the embedding cache on
CPUs with bfloat16 instructions. LiteRT runs on `--threads` threads (default: every core; the
interpreter's own default is one) with XNNPACK, its default delegate for float models.

"images/s" is 1 / embed seconds, and "x TF" compares it with the "keras + processing" row: the
embedding-cache question of issue 25 (does a runtime embed at least 1.5x faster than TensorFlow?).
Figures are for one machine: compare rows measured in one run.
"""

import argparse
import os
import statistics
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
    args = parser.parse_args(argv)

    import tensorflow as tf

    from keras_sam import SamSegmenter
    from keras_sam.app.speed import precision_policy
    from keras_sam.configs import sam_vit_base_config
    from keras_sam.export import formats, writers
    from keras_sam.export.exporter import load_model
    from keras_sam.export.graph import SamExportModule, erf_gelu, exportable_copy
    from keras_sam.export.runtimes import open_artefact
    from keras_sam.hub import require_tf_sam
    from keras_sam.postprocessing import postprocess_masks
    from keras_sam.preprocessing import preprocess_image

    if args.model == "vit-base":
        tf.keras.utils.set_random_seed(0)
        model = SamSegmenter(require_tf_sam()(sam_vit_base_config()))
    else:
        model = load_model(args.model)
    names, _ = formats.parse_formats(args.formats)
    functions = tuple(args.functions.split(","))
    if not {"embed", "decode"} <= set(functions):
        parser.error(f"--functions must include embed and decode (they are timed); got {args.functions}")
    image = np.random.default_rng(0).integers(0, 256, (300, 420, 3), dtype=np.uint8)
    box = np.array([[60, 50, 300, 250]], np.float32)

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
    sizes, written = {}, {}
    with tempfile.TemporaryDirectory(prefix="export-speed-") as root:
        if not args.keras_only:
            for name in names:
                sam = exportable_copy(model.sam, gelu=erf_gelu if name == "onnx" else None)
                module = SamExportModule(sam, model.processor)
                # float16 last: converting an ONNX model to float16 may change it in place.
                quantizations = ["none"] if name == "savedmodel" else sorted(
                    args.quantize.split(","), key=lambda q: q == "float16")
                protos = {}
                for quantize in quantizations:
                    folder = os.path.join(root, f"{name}-{quantize}")
                    started = time.perf_counter()
                    try:
                        if name == "savedmodel":
                            writers.write_savedmodel(module, folder)
                        elif name == "onnx":
                            os.makedirs(folder, exist_ok=True)
                            for function in functions:
                                if function not in protos:
                                    protos[function] = writers.onnx_proto(module, function)
                                writers.save_onnx(protos[function], os.path.join(folder, f"{function}.onnx"),
                                                  quantize)
                        else:
                            writers.write_litert(module, folder, quantize, functions=functions)
                    except Exception as error:  # one format failing says so and the others still run
                        print(f"{name} {quantize}: writing failed: {type(error).__name__}: {str(error)[:300]}",
                              flush=True)
                        continue
                    written[(name, quantize)] = time.perf_counter() - started
                    sizes[(name, quantize)] = (folder_size(folder), {
                        f: os.path.getsize(os.path.join(folder, f"{f}.{'onnx' if name == 'onnx' else 'tflite'}"))
                        for f in ("embed", "decode")} if name != "savedmodel" else {})
                    print(f"wrote {name} {quantize} in {written[(name, quantize)]:.0f} s: "
                          f"{sizes[(name, quantize)][0] / 2**20:.1f} MiB", flush=True)
                del protos, module, sam
            for (name, quantize) in list(written):
                options = {} if name == "savedmodel" else {"functions": functions}
                if name == "litert":
                    options["num_threads"] = args.threads
                try:
                    artefact = open_artefact(name, os.path.join(root, f"{name}-{quantize}"), **options)
                    embeddings = artefact.embed(image)["image_embeddings"]
                except Exception as error:
                    print(f"{name} {quantize}: running failed: {type(error).__name__}: {str(error)[:300]}", flush=True)
                    continue
                embedders[(name, quantize)] = lambda artefact=artefact: artefact.embed(image)
                decoders[(name, quantize)] = (lambda artefact=artefact, embeddings=embeddings:
                                              artefact.decode(embeddings, box, image.shape[:2]))
        print(f"model {args.model}; image 300x420, one box; median of {args.repeats} rounds, side by side; "
              f"LiteRT on {args.threads} threads", flush=True)
        embed = side_by_side(embedders, args.repeats)
        decode = side_by_side(decoders, args.repeats)
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
