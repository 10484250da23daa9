"""Latency of `embed` and `decode` in each export runtime against the Keras model, and file sizes.

    python benchmarks/export_speed.py                          # sam-small-shapes, every installed format
    python benchmarks/export_speed.py --model vit-base --formats onnx --quantize none --repeats 2

For each quantisation, the model is written with `keras_sam.export.writers` (no agreement check:
`keras-sam export` does that) into a temporary folder, each artefact is opened in its runtime, and
one image (300x420) is embedded and decoded (one box) `--repeats` times after a warm-up call; the
median is printed. The Keras side is timed twice: its graph parts alone (SamSegmenter's traced
encoder on pixel values, its call on the embedding), and with the processing the exported
functions hold (the processor's resize and normalisation; the masks at the image's size), as
`keras_sam.common.inference.segment_image` runs them. Figures are for one machine: compare rows measured
in one run.
"""

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np


def median_seconds(function, repeats):
    function()  # warm-up: tracing, allocation
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def folder_size(folder):
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(folder) for name in names)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sam-small-shapes", help="a model keras-sam loads, or vit-base "
                        "(sam-vit-base's shapes, random weights)")
    parser.add_argument("--formats", default="savedmodel,onnx,litert")
    parser.add_argument("--quantize", default="none,float16,int8")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--keras-only", action="store_true", help="time the Keras model only")
    args = parser.parse_args(argv)

    import tensorflow as tf

    from keras_sam import SamSegmenter
    from keras_sam.common.configs import sam_vit_base_config
    from keras_sam.export import formats, writers
    from keras_sam.export.exporter import load_model
    from keras_sam.export.graph import SamExportModule, erf_gelu, exportable_copy
    from keras_sam.export.runtimes import open_artefact
    from keras_sam.common.hub import require_tf_sam
    from keras_sam.common.postprocessing import postprocess_masks
    from keras_sam.common.preprocessing import preprocess_image

    if args.model == "vit-base":
        tf.keras.utils.set_random_seed(0)
        model = SamSegmenter(require_tf_sam()(sam_vit_base_config()))
    else:
        model = load_model(args.model)
    names, _ = formats.parse_formats(args.formats)
    image = np.random.default_rng(0).integers(0, 256, (300, 420, 3), dtype=np.uint8)
    box = np.array([[60, 50, 300, 250]], np.float32)

    pixels = preprocess_image(image, model.processor)[None]
    embedding = np.asarray(model.image_embeddings(pixels))
    prompt = {"image_embeddings": embedding, "input_boxes": box}
    call = tf.function(lambda inputs: model(inputs), autograph=False)
    print(f"model {args.model}; image 300x420, one box; median of {args.repeats}", flush=True)
    rows = [
        # The graph parts alone: pixel values in, logits on the grid out.
        ("keras graph only", "none", median_seconds(lambda: model.image_embeddings(pixels).numpy(), args.repeats),
         median_seconds(lambda: call(prompt)["mask_logits"].numpy(), args.repeats), None),
        # What the exported functions do: the processor's resize and normalisation before the
        # encoder, masks at the image's size after the decoder (segment_image's two halves).
        ("keras + processing", "none",
         median_seconds(lambda: model.image_embeddings(preprocess_image(image, model.processor)[None]).numpy(),
                        args.repeats),
         median_seconds(lambda: postprocess_masks(call(prompt), image_sizes=[image.shape[:2]],
                                                  processor=model.processor), args.repeats), None),
    ]
    for name, _, embed, decode, _ in rows:
        print(f"{name:<18} {'none':<8} embed {embed * 1000:9.1f} ms   decode {decode * 1000:8.1f} ms", flush=True)
    if args.keras_only:
        return 0
    with tempfile.TemporaryDirectory(prefix="export-speed-") as root:
        for quantize in args.quantize.split(","):
            for name in names:
                if name == "savedmodel" and quantize != "none":
                    continue
                folder = os.path.join(root, f"{name}-{quantize}")
                sam = exportable_copy(model.sam, gelu=erf_gelu if name == "onnx" else None)
                module = SamExportModule(sam, model.processor)
                started = time.perf_counter()
                try:
                    if name == "savedmodel":
                        writers.write_savedmodel(module, folder)
                    elif name == "onnx":
                        writers.write_onnx(module, folder, quantize)
                    else:
                        writers.write_litert(module, folder, quantize)
                    written = time.perf_counter() - started
                    artefact = open_artefact(name, folder)
                    embed = median_seconds(lambda: artefact.embed(image), args.repeats)
                    embeddings = artefact.embed(image)["image_embeddings"]
                    decode = median_seconds(lambda: artefact.decode(embeddings, box, image.shape[:2]), args.repeats)
                except Exception as error:  # one format failing says so and the others still run
                    print(f"{name:<18} {quantize:<8} failed: {type(error).__name__}: {str(error)[:300]}", flush=True)
                    continue
                size = folder_size(folder)
                rows.append((name, quantize, embed, decode, size))
                print(f"{name:<18} {quantize:<8} embed {embed * 1000:9.1f} ms   decode {decode * 1000:8.1f} ms   "
                      f"{size / 2**20:7.1f} MiB   (written in {written:.0f} s)", flush=True)
    keras_embed, keras_decode = rows[1][2], rows[1][3]
    print("\n| runtime | quantize | embed ms | speed vs Keras + processing | decode ms | speed vs Keras + processing | size MiB |")
    print("|---|---|---|---|---|---|---|")
    for name, quantize, embed, decode, size in rows:
        print(f"| {name} | {quantize} | {embed * 1000:.1f} | {keras_embed / embed:.2f} | {decode * 1000:.1f} | "
              f"{keras_decode / decode:.2f} | {'' if size is None else f'{size / 2**20:.1f}'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
