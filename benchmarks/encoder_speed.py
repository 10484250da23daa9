"""Seconds an image for SAM's vision encoder, by images per call and by TensorFlow's CPU allocator.

At sam-vit-base shapes with random weights, as the embedding cache calls it
(`SamSegmenter.image_embeddings`). Each (allocator, images a call) pair runs in a process of its
own, since TensorFlow fixes its allocator when its runtime starts: the encoder is traced and run
once, then timed over `--calls` calls (the fastest is kept). "default" is TensorFlow's own choice
(`TF_CPU_ALLOCATOR_USE_BFC=false`): malloc, or oneDNN's allocator on CPUs with AVX512-VNNI,
AVX512-BF16 or AMX; `allocator_in_use` says which each run got. The last line of stdout is one
JSON object: seconds an image and peak memory for each pair.

    python benchmarks/encoder_speed.py --batch-sizes 1 2 4 --allocators bfc default
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

ALLOCATOR_SETTINGS = {"bfc": "true", "default": "false"}


def measure(batch_size, calls, precision):
    """Seconds an image (fastest call) and peak memory of this process, in MiB."""
    import numpy as np
    import tensorflow as tf
    from transformers import TFSamModel

    from keras_sam import SamSegmenter, sam_vit_base_config
    from keras_sam.app.speed import precision_policy

    with precision_policy(precision):
        model = SamSegmenter(TFSamModel(sam_vit_base_config()))
    pixels = tf.random.stateless_normal((batch_size, 3, 1024, 1024), seed=(0, 0))
    np.asarray(model.image_embeddings(pixels))  # traces
    seconds = []
    for _ in range(calls):
        started = time.perf_counter()
        np.asarray(model.image_embeddings(pixels))
        seconds.append(time.perf_counter() - started)
    return min(seconds) / batch_size, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--allocators", nargs="+", choices=sorted(ALLOCATOR_SETTINGS), default=["bfc", "default"])
    parser.add_argument("--calls", type=int, default=2, help="timed calls after the first (default 2)")
    parser.add_argument("--precision", default="float32", choices=["float32", "mixed_bfloat16"])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:  # one pair, in the process its parent started with the allocator set
        per_image, peak = measure(args.batch_sizes[0], args.calls, args.precision)
        from keras_sam.common.tf_allocator import allocator_in_use

        print(json.dumps({"seconds_per_image": per_image, "peak_rss_mib": peak, "allocator_in_use": allocator_in_use()}))
        return 0

    result = {"precision": args.precision, "calls": args.calls, "seconds_per_image": {}, "peak_rss_mib": {},
              "allocator_in_use": {}, "cpu_count": os.cpu_count()}
    for allocator in args.allocators:
        for batch_size in args.batch_sizes:
            print(f"{allocator}, {batch_size} images a call...", file=sys.stderr, flush=True)
            environ = dict(os.environ, TF_CPU_ALLOCATOR_USE_BFC=ALLOCATOR_SETTINGS[allocator],
                           TF_CPP_MIN_LOG_LEVEL="2")
            child = subprocess.run(
                [sys.executable, __file__, "--child", "--batch-sizes", str(batch_size), "--calls", str(args.calls),
                 "--precision", args.precision],
                env=environ, capture_output=True, text=True, check=True)
            figures = json.loads(child.stdout.strip().splitlines()[-1])
            result["seconds_per_image"].setdefault(allocator, {})[batch_size] = round(figures["seconds_per_image"], 2)
            result["peak_rss_mib"].setdefault(allocator, {})[batch_size] = round(figures["peak_rss_mib"])
            result["allocator_in_use"][allocator] = figures["allocator_in_use"]
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
