"""How much faster is fine-tuning from cached image embeddings than the keras.io-style loop?

Runs at sam-vit-base shapes with random weights (speed does not depend on them), in one process:
  (a) seed: keras.io-style epochs, the vision encoder recomputed every step, the decoder trained;
  (b) first: building the embedding cache for all N images in a fresh directory, plus one epoch;
  (c) cached: a later epoch from the cache.
Every step function is traced before timing; seed and cached epochs are medians of 3.
The last line of stdout is one JSON object with the figures.

    python benchmarks/finetune_speed.py --images 8 --batch-size 2
"""

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402
import transformers  # noqa: E402
from transformers import TFSamModel  # noqa: E402

from keras_sam import SamSegmenter, sam_vit_base_config  # noqa: E402
from keras_sam.embeddings import EmbeddingCache  # noqa: E402


class EpochTimer(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def synthetic_data(count, config, seed=0):
    rng = np.random.default_rng(seed)
    size = config.vision_config.image_size
    grid = 4 * config.prompt_encoder_config.image_embedding_size
    pixels = rng.normal(size=(count, 3, size, size)).astype(np.float32)
    corner = rng.uniform(0, size * 0.6, size=(count, 2))
    boxes = np.concatenate([corner, corner + size * 0.3], axis=1).astype(np.float32)
    yy, xx = np.mgrid[:grid, :grid]
    centres = (corner + size * 0.15) * grid / size
    masks = np.stack([((xx - cx) ** 2 + (yy - cy) ** 2 < (grid * 0.1) ** 2) for cx, cy in centres])
    return pixels, boxes, masks.astype(np.float32)


def timed_fit(model, dataset, epochs):
    timer = EpochTimer()
    model.fit(dataset, epochs=epochs, verbose=0, callbacks=[timer])
    return timer.seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--timed-epochs", type=int, default=3)
    parser.add_argument("--jit-compile", action="store_true", help="XLA for the cached decoder step")
    parser.add_argument("--skip-seed", action="store_true",
                        help="time only the cache and the cached epochs (e.g. to compare --jit-compile)")
    args = parser.parse_args(argv)

    config = sam_vit_base_config()
    keras.utils.set_random_seed(0)
    model = SamSegmenter(TFSamModel(config))
    model.compile(optimizer=keras.optimizers.legacy.Adam(1e-5))
    pixels, boxes, masks = synthetic_data(args.images, config)
    batch = args.batch_size
    seed_data = tf.data.Dataset.from_tensor_slices(
        ({"pixel_values": pixels, "input_boxes": boxes}, masks)).batch(batch)

    seed_epochs = None
    if not args.skip_seed:
        print("(a) tracing the seed step...", file=sys.stderr)
        model.fit(seed_data.take(1), epochs=1, verbose=0)
        print("(a) timing seed epochs...", file=sys.stderr)
        seed_epochs = timed_fit(model, seed_data, args.timed_epochs)

    # Trace the decoder-only step before any timing, on embeddings of the right shape.
    vision = config.vision_config
    side = vision.image_size // vision.patch_size
    shape = (vision.output_channels, side, side)
    model.compile(optimizer=keras.optimizers.legacy.Adam(1e-5), jit_compile=args.jit_compile)
    warm = tf.data.Dataset.from_tensor_slices(
        ({"image_embeddings": np.zeros((batch,) + shape, np.float32), "input_boxes": boxes[:batch]},
         masks[:batch])).batch(batch)
    model.fit(warm, epochs=1, verbose=0)

    keys = [f"image-{index}" for index in range(args.images)]
    with tempfile.TemporaryDirectory() as directory:
        cache = EmbeddingCache(model, directory, batch_size=batch)

        def cached_dataset():
            def generate():
                for index, key in enumerate(keys):
                    yield ({"image_embeddings": cache.get(key), "input_boxes": boxes[index]}, masks[index])
            signature = ({"image_embeddings": cache.spec, "input_boxes": tf.TensorSpec((4,), tf.float32)},
                         tf.TensorSpec(masks.shape[1:], tf.float32))
            return tf.data.Dataset.from_generator(generate, output_signature=signature).batch(batch)

        print("(b) building the cache and one epoch...", file=sys.stderr)
        start = time.perf_counter()
        cache.add(keys, lambda key: pixels[keys.index(key)], progress=False)
        timed_fit(model, cached_dataset(), 1)
        first_epoch = time.perf_counter() - start
        print("(c) timing cached epochs...", file=sys.stderr)
        cached_epochs = timed_fit(model, cached_dataset(), args.timed_epochs)

    seed_epoch_s = statistics.median(seed_epochs) if seed_epochs else None
    cached_epoch_s = statistics.median(cached_epochs)

    def ratio(numerator, denominator):
        return None if numerator is None or denominator is None else round(numerator / denominator, 3)

    result = {
        "images": args.images,
        "batch_size": batch,
        "jit_compile": args.jit_compile,
        "seed_epoch_s": None if seed_epoch_s is None else round(seed_epoch_s, 3),
        "first_epoch_s": round(first_epoch, 3),
        "cached_epoch_s": round(cached_epoch_s, 3),
        "speedup": ratio(seed_epoch_s, cached_epoch_s),
        "first_epoch_ratio": ratio(first_epoch, seed_epoch_s),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "tensorflow": tf.__version__,
        "transformers": transformers.__version__,
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
