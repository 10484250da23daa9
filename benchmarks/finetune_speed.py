"""How much faster is fine-tuning as `keras-sam finetune` does it than the keras.io-style loop?

Runs at sam-vit-base shapes with random weights (speed does not depend on them), in one process:
  (a) seed: keras.io-style epochs in float32, the vision encoder recomputed every step, the
      decoder trained;
  (b) first: what `keras-sam finetune` does by default on this machine: the precision policy it
      picks, the model loaded with `from_pretrained` (from a checkpoint a child process wrote, as
      a run loads a downloaded or shipped one), the embedding cache built for all N images in a
      fresh directory, its XLA choice (the probe, timed each way, where a default-length run over
      N images is long enough to repay it), and one epoch through its data pipeline (one stream
      of epochs, as finetune fits); `first_epoch_phases_s` splits it into loading the model,
      the cache (with the compiling and tracing of the training step that finetune overlaps
      with it), the XLA choice and the fit;
  (c) cached: a later epoch, the same way;
  (d) phases of a cached step: the pipeline alone, the forward pass, forward + loss + gradients,
      the whole step, and the whole step without the IoU head's loss.
(b) runs first, as the first work of the process, so it pays what a fresh `keras-sam finetune`
pays: the runtime's first calls, and the first touch of the memory TensorFlow's allocator then
keeps (run after the seed, it found that memory ready and looked several seconds faster than any
real first epoch). (a) runs last; its timed epochs follow
an untimed one. All phases share TensorFlow's CPU allocator, the one `keras-sam finetune` asks for
(`cpu_allocator` in the JSON; `TF_CPU_ALLOCATOR_USE_BFC=false` leaves the choice to TensorFlow).
Every step function is traced before it is timed; seed epochs are the median of 3, cached
epochs of 15 (a cached epoch is about a second, and on a shared 2-core machine single epochs
vary by up to 1.5x). The last line of stdout is one JSON object with the figures and
whether issue 13's targets are met (`targets_met`).

    python benchmarks/finetune_speed.py --images 8 --batch-size 2
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_sam.common.tf_allocator import allocator_in_use, prefer_reusing_allocator  # noqa: E402

prefer_reusing_allocator()  # as keras-sam finetune does, before TensorFlow starts

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402
import transformers  # noqa: E402
from PIL import Image  # noqa: E402
from transformers import TFSamModel  # noqa: E402

from keras_sam import DiceLoss, SamSegmenter, sam_vit_base_config  # noqa: E402
from keras_sam.app.defaults import DEFAULT_EPOCHS  # noqa: E402
from keras_sam.app.speed import (SpeedChoice, choose_jit_compile, choose_precision,  # noqa: E402
                                 cpu_supports_bfloat16, precision_policy, step_timer, too_short_to_probe)
from keras_sam.data import (PromptOptions, build_dataset, cache_embeddings, find_records,  # noqa: E402
                            read_lesions, steps_per_epoch)
from keras_sam.common.embeddings import EmbeddingCache  # noqa: E402
from keras_sam.tfkeras.segmenter import default_optimizer  # noqa: E402


class EpochTimer(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def write_images(folder, count, seed=0):
    """`count` images with one disk each, in the images/ + masks/ layout (1024 px, as BUSI's scale)."""
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(folder, "images"))
    os.makedirs(os.path.join(folder, "masks"))
    for index in range(count):
        height, width = int(rng.integers(600, 1024)), int(rng.integers(600, 1024))
        yy, xx = np.mgrid[:height, :width]
        cy, cx, radius = rng.uniform(0.3, 0.7) * height, rng.uniform(0.3, 0.7) * width, rng.uniform(60, 160)
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 < radius ** 2
        image = rng.integers(0, 255, (height, width, 3)).astype(np.uint8)
        image[mask] //= 3
        Image.fromarray(image).save(os.path.join(folder, "images", f"{index}.png"))
        Image.fromarray(mask.astype(np.uint8) * 255).save(os.path.join(folder, "masks", f"{index}.png"))
    return folder


def write_checkpoint(folder):
    """sam-vit-base with random weights (seed 0) saved to `folder` by `save_pretrained`."""
    keras.utils.set_random_seed(0)
    SamSegmenter(TFSamModel(sam_vit_base_config())).save_pretrained(folder)


def timed_fit(model, dataset, epochs, initial_epoch=0, steps_per_epoch=None):
    timer = EpochTimer()
    model.fit(dataset, epochs=initial_epoch + epochs, initial_epoch=initial_epoch, steps_per_epoch=steps_per_epoch,
              verbose=0, callbacks=[timer])
    return timer.seconds


def per_step(function, batches, repeats=3):
    """Median seconds per batch of `function` over `batches`, after one untimed call."""
    function(batches[0])
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        for batch in batches:
            function(batch)
        times.append((time.perf_counter() - started) / len(batches))
    return round(statistics.median(times), 4)


def phases(model, dataset, loss):
    """Seconds per cached step, phase by phase."""
    batches = list(dataset)
    started = time.perf_counter()
    for _ in dataset:
        pass
    pipeline = (time.perf_counter() - started) / len(batches)

    @tf.function(reduce_retracing=True)
    def forward(x):
        return model(x)

    @tf.function(reduce_retracing=True)
    def gradients(x, y):
        with tf.GradientTape() as tape:
            value = model.compute_loss(x, y, model(x, training=True))
        return tape.gradient(value, model.trainable_variables)

    result = {
        "pipeline_s": round(pipeline, 4),
        "forward_s": per_step(lambda batch: forward(batch[0]), batches),
        "forward_loss_gradients_s": per_step(lambda batch: gradients(*batch), batches),
        "train_step_s": per_step(lambda batch: model.train_on_batch(*batch), batches),
    }
    weight = model.iou_loss_weight
    model.iou_loss_weight = 0.0
    result["train_step_without_iou_head_s"] = per_step(lambda batch: model.train_on_batch(*batch), batches)
    model.iou_loss_weight = weight
    return result


def targets_met(speedup, first_epoch_ratio, precision):
    """Issue 13's targets, each True or False (None without a seed epoch to compare with)."""
    if speedup is None:
        return None
    limit = 0.8 if precision == "mixed_bfloat16" else 1.1  # the cache built in bfloat16, or not
    return {"speedup >= 60": speedup >= 60, f"first_epoch_ratio <= {limit}": first_epoch_ratio <= limit}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--seed-epochs", type=int, default=3, help="seed epochs timed (median)")
    parser.add_argument("--cached-epochs", type=int, default=15, help="cached epochs timed (median)")
    parser.add_argument("--precision", default="auto", choices=["auto", "float32", "mixed_bfloat16"])
    parser.add_argument("--jit-compile", default=None, action=argparse.BooleanOptionalAction,
                        help="XLA for the cached step (default: probed, as keras-sam finetune does)")
    parser.add_argument("--skip-seed", action="store_true", help="time only (b), (c) and (d)")
    parser.add_argument("--write-checkpoint", help=argparse.SUPPRESS)  # the child process's job
    args = parser.parse_args(argv)
    if args.write_checkpoint:
        return write_checkpoint(args.write_checkpoint)
    loss = DiceLoss()
    batch = args.batch_size

    with tempfile.TemporaryDirectory() as work:
        lesions = read_lesions(find_records(write_images(os.path.join(work, "data"), args.images)),
                               progress=False).lesions
        # Written by a child, so that nothing has touched this process's allocator before (b).
        checkpoint = os.path.join(work, "checkpoint")
        subprocess.run([sys.executable, os.path.abspath(__file__), "--write-checkpoint", checkpoint], check=True)
        prompts = PromptOptions("box", jitter=20.0)

        print("(b) first epoch as keras-sam finetune runs it...", file=sys.stderr)
        first_phases = {}
        started = time.perf_counter()
        precision = choose_precision(args.precision, cpu_supports_bfloat16())
        with precision_policy(precision.value):
            model = SamSegmenter.from_pretrained(checkpoint)
        processor = model.processor
        first_phases["load_model_s"] = time.perf_counter() - started
        cache = EmbeddingCache(model, os.path.join(work, "cache"),
                               preprocessing=processor.image_processor.to_json_string())

        def stream(first, last):  # epochs first..last-1 in one stream, as finetune fits
            return build_dataset(lesions, processor, batch_size=batch, prompts=prompts, seed=0, embeddings=cache,
                                 epochs=(first, last))

        steps = steps_per_epoch(lesions, batch)
        if args.jit_compile is None:  # as finetune decides, for a run of its default length
            jit = too_short_to_probe(steps * DEFAULT_EPOCHS)  # None: to be measured on the cache
        else:
            jit = SpeedChoice(args.jit_compile, "asked for")

        def compile_and_trace():  # what finetune does while the cache fills, when XLA needs no timing
            model.compile(optimizer=default_optimizer(), loss=loss, jit_compile=jit.value)
            model.trace_train_step(stream(0, 1))

        cache_embeddings(lesions, processor, cache, progress=False, meanwhile=compile_and_trace if jit else None)
        first_phases["embedding_cache_s"] = time.perf_counter() - started - sum(first_phases.values())
        if jit is None:
            jit = choose_jit_compile(step_timer(model, stream(0, 1), loss))
            model.compile(optimizer=default_optimizer(), loss=loss, jit_compile=jit.value)
        first_phases["xla_choice_s"] = time.perf_counter() - started - sum(first_phases.values())
        timed_fit(model, stream(0, 1), 1, steps_per_epoch=steps)
        first_epoch = time.perf_counter() - started
        first_phases["fit_s"] = first_epoch - sum(first_phases.values())

        print("(c) cached epochs...", file=sys.stderr)
        cached_epochs = timed_fit(model, stream(1, 1 + args.cached_epochs), args.cached_epochs,
                                  initial_epoch=1, steps_per_epoch=steps)
        print("(d) phases of a cached step...", file=sys.stderr)
        breakdown = phases(model, stream(0, 1), loss)

        seed_epochs = None
        if not args.skip_seed:  # last: (b) must be the first work of the process, as finetune's is
            print("(a) seed epochs (float32, encoder every step)...", file=sys.stderr)
            reference = SamSegmenter.from_pretrained(checkpoint)
            reference.compile(optimizer=default_optimizer(), loss=loss)
            seed_data = build_dataset(lesions, processor, batch_size=batch, prompts=prompts, seed=0)
            reference.fit(seed_data.take(1), epochs=1, verbose=0)  # trace
            seed_epochs = timed_fit(reference, seed_data, args.seed_epochs)

    seed_epoch_s = statistics.median(seed_epochs) if seed_epochs else None
    cached_epoch_s = statistics.median(cached_epochs)

    def ratio(numerator, denominator):
        return None if numerator is None or denominator is None else round(numerator / denominator, 3)

    result = {
        "images": args.images,
        "batch_size": batch,
        "precision": precision.value,
        "precision_reason": precision.reason,
        "jit_compile": bool(jit.value),
        "jit_compile_reason": jit.reason,
        "probe_seconds_per_step": jit.seconds_per_step,
        "seed_epoch_s": None if seed_epoch_s is None else round(seed_epoch_s, 3),
        "first_epoch_s": round(first_epoch, 3),
        "cached_epoch_s": round(cached_epoch_s, 3),
        "cached_epoch_range_s": [round(min(cached_epochs), 3), round(max(cached_epochs), 3)],
        "speedup": ratio(seed_epoch_s, cached_epoch_s),
        "first_epoch_ratio": ratio(first_epoch, seed_epoch_s),
        "targets_met": targets_met(ratio(seed_epoch_s, cached_epoch_s), ratio(first_epoch, seed_epoch_s),
                                   precision.value),
        "first_epoch_phases_s": {name: round(value, 2) for name, value in first_phases.items()},
        "cached_step_phases": breakdown,
        "cpu_allocator": allocator_in_use(),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "tensorflow": tf.__version__,
        "transformers": transformers.__version__,
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
