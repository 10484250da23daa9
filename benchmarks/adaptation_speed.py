"""Step time, peak memory and trainable weights of each way the image encoder adapts.

At sam-vit-base shapes with random weights (speed does not depend on them), one training step of
`SamSegmenter` for each `--adapt` of `keras-sam finetune`:
  decoder: the encoder frozen, the step runs from cached image embeddings (what finetune does);
  lora:    rank `--lora-rank` updates of every block's qkv, from pixels (no cache possible);
  adapter: Medical SAM Adapter's bottleneck MLPs in every block, from pixels;
  full:    every encoder weight trains, from pixels.
The prompt encoder stays frozen and the mask decoder trains in every case. Each (adaptation, batch
size) runs in a process of its own, since peak RSS only grows: the model is built, its step
traced and run once, then timed `--steps` times (the median is kept). Trainable weights are
counted in all and in the encoder (LoRA's or the adapters' weights, or the encoder's own). The
last line of stdout is one JSON object.

    python benchmarks/adaptation_speed.py --batch-sizes 1 2 --steps 2
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

METHODS = ("decoder", "lora", "adapter", "full")


def measure(method, batch_size, steps, rank, precision, recompute=False):
    """(median seconds a step, peak RSS in MiB, trainable weights in all, in the encoder)."""
    import numpy as np
    import tensorflow as tf
    from transformers import TFSamModel

    from keras_sam import SamSegmenter, sam_vit_base_config
    from keras_sam.app.speed import precision_policy
    from keras_sam.tfkeras.segmenter import default_optimizer

    with precision_policy(precision):
        model = SamSegmenter(TFSamModel(sam_vit_base_config()))
        model.adapt(method, rank=rank)
        if recompute:
            model.recompute_encoder()
    model.compile(optimizer=default_optimizer(1e-5))
    boxes = tf.constant([[200.0, 240.0, 700.0, 800.0]] * batch_size)
    if method == "decoder":
        x = {"image_embeddings": tf.random.stateless_normal((batch_size, *model.embedding_shape), seed=(0, 1))}
    else:
        x = {"pixel_values": tf.random.stateless_normal((batch_size, 3, 1024, 1024), seed=(0, 0))}
    x["input_boxes"] = boxes
    y = tf.cast(tf.random.stateless_uniform((batch_size, 256, 256), seed=(0, 2)) > 0.5, tf.float32)
    model.train_on_batch(x, y)  # traces and runs once
    seconds = []
    for _ in range(steps):
        started = time.perf_counter()
        model.train_on_batch(x, y)
        seconds.append(time.perf_counter() - started)
    trainable = model.trainable_variables
    encoder_ids = {id(v) for v in model.encoder_weights}
    count = lambda variables: int(sum(np.prod(v.shape) for v in variables))  # noqa: E731
    return (statistics.median(seconds), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            count(trainable), count([v for v in trainable if id(v) in encoder_ids]),
            count(model.sam.vision_encoder.weights))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=2, help="timed steps after the first (default 2)")
    parser.add_argument("--lora-rank", type=int, default=4)
    parser.add_argument("--precision", default="float32", choices=["float32", "mixed_bfloat16"])
    parser.add_argument("--recompute", action="store_true",
                        help="gradient checkpointing of the encoder's blocks (SamSegmenter.recompute_encoder)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:  # one pair, in a fresh process
        step, peak, trainable, encoder, encoder_total = measure(
            args.methods[0], args.batch_sizes[0], args.steps, args.lora_rank, args.precision, args.recompute)
        print(json.dumps({"seconds_per_step": step, "peak_rss_mib": peak, "trainable_weights": trainable,
                          "trainable_encoder_weights": encoder, "encoder_weights": encoder_total}))
        return 0

    result = {"precision": args.precision, "recompute": args.recompute, "steps": args.steps,
              "lora_rank": args.lora_rank, "cpu_count": os.cpu_count(), "figures": {}}
    for method in args.methods:
        for batch_size in args.batch_sizes:
            print(f"{method}, batch {batch_size}...", file=sys.stderr, flush=True)
            child = subprocess.run(
                [sys.executable, __file__, "--child", "--methods", method, "--batch-sizes", str(batch_size),
                 "--steps", str(args.steps), "--lora-rank", str(args.lora_rank), "--precision", args.precision,
                 *(["--recompute"] if args.recompute else [])],
                env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), capture_output=True, text=True)
            if child.returncode:
                print(child.stderr[-2000:], file=sys.stderr)
                continue
            figures = json.loads(child.stdout.strip().splitlines()[-1])
            print(json.dumps({method: {batch_size: figures}}), file=sys.stderr, flush=True)
            result["figures"].setdefault(method, {})[batch_size] = figures
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
