"""Does training from the embedding cache keep memory bounded as the data set grows?

Each measurement runs in its own process (peak RSS only grows): one decoder-only training epoch at
sam-vit-base shapes over a cache of N embeddings (256x64x64, random values, float16 on disk, read
through the same path `keras-sam finetune` uses). The last line of stdout is one JSON object.

    python benchmarks/cache_memory.py --compare 20 200
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def one_epoch(count, batch_size):
    import numpy as np
    import tensorflow as tf
    from transformers import TFSamModel

    from keras_sam import SamSegmenter, sam_vit_base_config
    from keras_sam.common.embeddings import EmbeddingCache
    from keras_sam.tfkeras.segmenter import default_optimizer

    model = SamSegmenter(TFSamModel(sam_vit_base_config()))
    model.compile(optimizer=default_optimizer())
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as directory:
        cache = EmbeddingCache(model, directory)
        for index in range(count):  # random embeddings stand in for the encoder's output
            cache._store(f"image-{index}", rng.normal(size=cache.shape).astype(np.float16))
        box = np.array([100, 100, 400, 400], np.float32)
        mask = np.zeros((256, 256), np.float32)
        mask[25:100, 25:100] = 1

        def generate():
            for index in range(count):
                yield {"image_embeddings": cache.get(f"image-{index}"), "input_boxes": box}, mask

        signature = ({"image_embeddings": cache.spec, "input_boxes": tf.TensorSpec((4,), tf.float32)},
                     tf.TensorSpec((256, 256), tf.float32))
        dataset = tf.data.Dataset.from_generator(generate, output_signature=signature)
        model.fit(dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE), epochs=1, verbose=0)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embeddings", type=int, help="measure one epoch over this many (in this process)")
    parser.add_argument("--compare", type=int, nargs=2, metavar=("SMALL", "LARGE"), default=(20, 200))
    parser.add_argument("--batch-size", type=int, default=2)
    args = parser.parse_args()
    if args.embeddings:
        peak = one_epoch(args.embeddings, args.batch_size)
        print(json.dumps({"embeddings": args.embeddings, "peak_rss_mib": round(peak, 1)}))
        return
    peaks = {}
    for count in args.compare:
        output = subprocess.run(
            [sys.executable, __file__, "--embeddings", str(count), "--batch-size", str(args.batch_size)],
            check=True, capture_output=True, text=True).stdout
        peaks[count] = json.loads(output.strip().splitlines()[-1])["peak_rss_mib"]
    small, large = args.compare
    print(json.dumps({"small": small, "large": large, "peak_rss_mib_small": peaks[small],
                      "peak_rss_mib_large": peaks[large],
                      "ratio": round(peaks[large] / peaks[small], 3),
                      "cache_mib_large": round(large * 256 * 64 * 64 * 2 / 2**20, 1)}))


if __name__ == "__main__":
    main()
