"""How long is one decoder-only training step from cached embeddings, per model family and backend?

At sam-vit-base shapes (256x64x64 image embeddings, 256x256 mask logits), random weights and
data, encoders frozen, Dice loss, Adam: the step `keras-sam finetune` repeats every epoch. Each
family/backend runs in its own process (Keras 3's backend is fixed at import; tf-keras and
Keras 3 each in their own): tf-keras's SamSegmenter over TFSamModel, then keras_sam.keras3's on
jax, tensorflow and, where installed, torch, each with its compile() defaults. A step is the
median of --steps timed `train_on_batch` calls after 2 untimed ones (tracing, compiling). The
last line of stdout is one JSON object.

    python benchmarks/decoder_step_backends.py --batch-size 2
"""

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time


def batch(batch_size, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    x = {"image_embeddings": rng.normal(size=(batch_size, 256, 64, 64)).astype(np.float32),
         "input_boxes": np.tile(np.array([[200.0, 180.0, 600.0, 560.0]], np.float32), (batch_size, 1))}
    y = np.zeros((batch_size, 256, 256), np.float32)
    y[:, 45:140, 50:150] = 1.0
    return x, y


def seconds_per_step(model, x, y, steps):
    for _ in range(2):
        model.train_on_batch(x, y)
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        model.train_on_batch(x, y)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def run_tf_keras(batch_size, steps):
    from transformers import TFSamModel

    from keras_sam import SamSegmenter, sam_vit_base_config

    model = SamSegmenter(TFSamModel(sam_vit_base_config()))
    model.compile()  # keras-sam's defaults, without XLA (finetune probes it; see finetune_speed.py)
    return seconds_per_step(model, *batch(batch_size), steps)


def run_keras3(batch_size, steps):
    import keras

    from keras_sam import sam_vit_base_config
    from keras_sam.keras3 import SamSegmenter

    keras.utils.set_random_seed(0)
    model = SamSegmenter.from_sam_config(sam_vit_base_config())
    model.compile()  # Adam(1e-5), Dice loss, Dice and IoU; Keras 3's jit_compile="auto"
    return seconds_per_step(model, *batch(batch_size), steps)


def worker(family, batch_size, steps):
    seconds = run_tf_keras(batch_size, steps) if family == "tf-keras" else run_keras3(batch_size, steps)
    print(json.dumps({"family": family, "step_s": round(seconds, 4)}))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker, args.batch_size, args.steps)

    backends = ["jax", "tensorflow"] + (["torch"] if importlib.util.find_spec("torch") else [])
    results = {}
    for family in ["tf-keras"] + [f"keras3-{backend}" for backend in backends]:
        environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        if family.startswith("keras3-"):
            environment["KERAS_BACKEND"] = family.split("-", 1)[1]
        print(f"{family}...", file=sys.stderr)
        finished = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", family,
                                   "--batch-size", str(args.batch_size), "--steps", str(args.steps)],
                                  capture_output=True, text=True, env=environment)
        if finished.returncode:
            results[family] = f"failed: {finished.stderr.strip().splitlines()[-1]}"
            continue
        results[family] = json.loads(finished.stdout.strip().splitlines()[-1])["step_s"]
    print(json.dumps({"batch_size": args.batch_size, "decoder_step_s": results, "cpu_count": os.cpu_count()}))


if __name__ == "__main__":
    main()
