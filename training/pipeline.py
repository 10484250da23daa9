"""From lesions to a tf.data pipeline SamSegmenter.fit trains on.

    DataGenerator (one lesion -> SAM inputs, deterministic) ─► cache ─► shuffle (seeded by epoch)
        ─► prompts drawn anew every epoch (jittered box, points) ─► batch ─► prefetch
"""

import hashlib

import numpy as np
import tensorflow as tf

from keras_sam.configs import image_size_of, mask_grid_of
from keras_sam.preprocessing import (model_scale, preprocess_image, preprocess_mask, resized_shape,
                                     to_model_coordinates)
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
        extent (2,) width and height of the resized image in model-input pixels;
        prompt_seed () int64, from the lesion's content, so its prompts don't depend on its position.

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
                "box": to_model_coordinates(lesion.box, lesion.image_size, self.processor),
                "scale": scale,
                "extent": np.array([width, height], np.float32),
                "prompt_seed": np.int64(int(hashlib.sha1(
                    f"{lesion.image_key}{lesion.box}".encode()).hexdigest()[:15], 16)),
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
            "prompt_seed": tf.TensorSpec((), tf.int64),
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


def steps_per_epoch(lesions, batch_size):
    """Batches in one epoch of `build_dataset` (the last one may be smaller)."""
    return -(-len(lesions) // batch_size)


def build_dataset(lesions, processor, config, *, batch_size=2, prompt="box", jitter=20.0,
                  num_positive=3, num_negative=1, shuffle=True, seed=0, fixed_prompts=False,
                  cache="", embeddings=None, epochs=None):
    """A tf.data.Dataset of (inputs, masks) batches that SamSegmenter.fit accepts.

    Shuffling and prompts depend only on (seed, epoch, sample): a resumed run replays exactly the
    epochs an uninterrupted one would have seen.

    Args:
        lesions: training.datasets.Lesion records.
        processor: the SamProcessor matching `config`.
        config: the model's SamConfig.
        batch_size: samples per batch.
        prompt: "box", "points" or "box+points".
        jitter: largest move of each box side, in pixels of the image's own scale.
        num_positive, num_negative: points inside and outside the lesion for point prompts.
        shuffle: shuffle every epoch (seeded).
        seed: seeds the shuffle and the prompts.
        fixed_prompts: the same order and prompts every time (for validation and test).
        cache: "" caches preprocessed samples in memory, a path caches them in that file, None
            disables the cache. With `embeddings`, image embeddings are read from their own cache
            and only the small per-lesion targets are kept in memory.
        embeddings: optional keras_sam.embeddings.EmbeddingCache (train from image embeddings).
        epochs: None for one epoch, drawn anew each time the dataset is iterated; or
            (first, last) for one stream of epochs first..last-1, to fit with
            `initial_epoch=first, steps_per_epoch=steps_per_epoch(lesions, batch_size)`.

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
    samples = tf.data.Dataset.from_generator(
        generator, output_signature=generator.output_signature(config)
    )
    if cache is not None and embeddings is None:
        samples = samples.cache(cache)
    count = len(generator)
    grid_per_model_px = mask_grid_of(config) / image_size_of(config)
    image_key = "image_embeddings" if embeddings is not None else "pixel_values"

    def to_inputs(epoch, item):
        seeds = tf.random.experimental.stateless_split(tf.stack([epoch, item["prompt_seed"]]), 2)
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

    def one_epoch(epoch):
        """Epoch `epoch` (a Python int): its own shuffle and prompts, batched on its own."""
        epoch_seed = epoch * 1_000_003 + seed
        data = samples
        if shuffle:
            data = data.shuffle(count, seed=epoch_seed, reshuffle_each_iteration=False)
        data = data.map(lambda item: to_inputs(epoch_seed, item),
                        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return data.batch(batch_size)

    if epochs is not None:
        first, last = epochs
        dataset = one_epoch(first)
        for epoch in range(first + 1, last):
            dataset = dataset.concatenate(one_epoch(epoch))
    elif fixed_prompts:
        dataset = one_epoch(0)
    else:  # new order and prompts every time the dataset is iterated, reproducible from the seed
        data = samples
        if shuffle:
            data = data.shuffle(count, seed=seed, reshuffle_each_iteration=True)
        tokens = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        data = tf.data.Dataset.zip((data, tokens)).map(
            lambda item, token: to_inputs(token % 2**40, item),
            num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        dataset = data.batch(batch_size)
    return dataset.prefetch(tf.data.AUTOTUNE)
