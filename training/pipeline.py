"""From lesions to a tf.data pipeline SamSegmenter.fit trains on.

    DataGenerator (one lesion -> SAM inputs, deterministic) ─► cache ─► shuffle (seeded)
        ─► prompts drawn anew every epoch (jittered box, points) ─► batch ─► prefetch
"""

import numpy as np
import tensorflow as tf

from keras_sam.configs import image_size_of, mask_grid_of
from keras_sam.preprocessing import model_scale, preprocess_image, preprocess_mask, resized_shape
from keras_sam.prompts import jitter_boxes, sample_points
from training.datasets import load_image, load_mask

PROMPTS = ("box", "points", "box+points")


class DataGenerator:
    """Turns each lesion into SAM's inputs: the keras.io example's DataGenerator, one lesion a sample.

    Each item is a dict of arrays:
        pixel_values (3, S, S) float32, or image_embeddings (C, E, E) when `embeddings` is given;
        labels (G, G) float32, the lesion's mask resized and padded like the image (logits grid);
        box (4,) the lesion's tight box in model-input pixels;
        scale (2,) model-input pixels per image pixel along x and y;
        extent (2,) width and height of the resized image in model-input pixels.

    Args:
        lesions: training.datasets.Lesion records.
        processor: the model's SamProcessor (keras_sam.processor_for_config).
        embeddings: optional keras_sam.embeddings.EmbeddingCache holding every lesion's image
            (see `cache_embeddings`), to read image embeddings instead of preprocessing pixels.
    """

    def __init__(self, lesions, processor, embeddings=None):
        self.lesions = list(lesions)
        self.processor = processor
        self.embeddings = embeddings
        self._targets = {}

    def __len__(self):
        return len(self.lesions)

    def _lesion_targets(self, index):
        if index not in self._targets:
            lesion = self.lesions[index]
            mask = load_mask(lesion.mask_path, lesion.image_size)
            scale = model_scale(lesion.image_size, self.processor)
            height, width = resized_shape(lesion.image_size, self.processor)
            self._targets[index] = {
                "labels": preprocess_mask(mask, self.processor).astype(np.uint8),
                "box": (np.asarray(lesion.box, np.float32) * np.tile(scale, 2)).astype(np.float32),
                "scale": scale,
                "extent": np.array([width, height], np.float32),
            }
        return self._targets[index]

    def __getitem__(self, index):
        lesion = self.lesions[index]
        item = dict(self._lesion_targets(index))
        item["labels"] = item["labels"].astype(np.float32)
        if self.embeddings is not None:
            item["image_embeddings"] = self.embeddings.get(lesion.image_key)
        else:
            item["pixel_values"] = preprocess_image(load_image(lesion.image_path), self.processor)
        return item

    def __call__(self):
        for index in range(len(self)):
            yield self[index]

    def output_signature(self, config):
        """The tf.TensorSpec of each item, for tf.data.Dataset.from_generator."""
        size, grid = image_size_of(config), mask_grid_of(config)
        signature = {
            "labels": tf.TensorSpec((grid, grid), tf.float32),
            "box": tf.TensorSpec((4,), tf.float32),
            "scale": tf.TensorSpec((2,), tf.float32),
            "extent": tf.TensorSpec((2,), tf.float32),
        }
        if self.embeddings is not None:
            signature["image_embeddings"] = self.embeddings.spec
        else:
            signature["pixel_values"] = tf.TensorSpec((3, size, size), tf.float32)
        return signature


def cache_embeddings(lesions, processor, cache, progress=True):
    """Computes the image embedding of every distinct image among `lesions` not yet in `cache`."""
    paths = {lesion.image_key: lesion.image_path for lesion in lesions}
    return cache.add(
        list(paths), lambda key: preprocess_image(load_image(paths[key]), processor), progress
    )


def build_dataset(lesions, processor, config, *, batch_size=2, prompt="box", jitter=20.0,
                  num_positive=3, num_negative=1, shuffle=True, seed=0, fixed_prompts=False,
                  cache="", embeddings=None):
    """A tf.data.Dataset of (inputs, masks) batches that SamSegmenter.fit accepts.

    Args:
        lesions: training.datasets.Lesion records.
        processor: the SamProcessor matching `config`.
        config: the model's SamConfig.
        batch_size: samples per batch.
        prompt: "box", "points" or "box+points".
        jitter: largest move of each box side, in pixels of the image's own scale.
        num_positive, num_negative: points inside and outside the lesion for point prompts.
        shuffle: reshuffle every epoch (seeded).
        seed: seeds the shuffle and the prompts.
        fixed_prompts: draw the same prompts every epoch (for validation and test); otherwise
            every epoch draws new ones.
        cache: "" caches preprocessed samples in memory, a path caches them in that file, None
            disables the cache. With `embeddings`, image embeddings are read from their own cache
            and only the small per-lesion targets are kept in memory.
        embeddings: optional keras_sam.embeddings.EmbeddingCache (train from image embeddings).

    Returns:
        tf.data.Dataset yielding ({"pixel_values" or "image_embeddings", "input_boxes" (B, 4)
        and/or "input_points" (B, N, 2) with "input_labels" (B, N)}, labels (B, G, G)).
    """
    if prompt not in PROMPTS:
        raise ValueError(f"prompt must be one of {', '.join(PROMPTS)}; got {prompt!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1; got {batch_size}")
    if not lesions:
        raise ValueError("no lesions to build a dataset from")
    generator = DataGenerator(lesions, processor, embeddings)
    dataset = tf.data.Dataset.from_generator(
        generator, output_signature=generator.output_signature(config)
    )
    if cache is not None and embeddings is None:
        dataset = dataset.cache(cache)
    if shuffle:
        dataset = dataset.shuffle(len(generator), seed=seed, reshuffle_each_iteration=True)
    randomness = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=not fixed_prompts)
    dataset = tf.data.Dataset.zip((dataset, randomness))
    grid_per_model_px = mask_grid_of(config) / image_size_of(config)
    image_key = "image_embeddings" if embeddings is not None else "pixel_values"

    def to_inputs(item, random_value):
        seeds = tf.random.experimental.stateless_split(tf.stack([random_value, seed]), 2)
        inputs = {image_key: item[image_key]}
        if prompt in ("box", "box+points"):
            inputs["input_boxes"] = jitter_boxes(
                item["box"], jitter * item["scale"], item["extent"], seeds[0]
            )
        if prompt in ("points", "box+points"):
            points, labels = sample_points(
                item["labels"], item["extent"] * grid_per_model_px, num_positive, num_negative,
                seeds[1],
            )
            inputs["input_points"] = points / grid_per_model_px
            inputs["input_labels"] = labels
        return inputs, item["labels"]

    dataset = dataset.map(to_inputs, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
