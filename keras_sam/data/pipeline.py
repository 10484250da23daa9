"""From lesions to a tf.data pipeline that `fit` trains on (tf.data feeds every Keras backend).

    epochs ─► each epoch's order (a seeded shuffle of the lesions) ─► DataGenerator[lesion]
        (its image or cached image embedding; its mask and box, kept in memory after the first
        read) ─► prompts drawn anew every epoch (jittered box, points) ─► batch ─► prefetch

Every random choice is stateless, from (seed, epoch, lesion): no global random state is read, so
the same arguments give the same batches in any process, and a resumed run replays exactly the
epochs an uninterrupted one would have seen.
"""

import dataclasses
import hashlib

import numpy as np
import tensorflow as tf

from keras_sam.data.prompt_options import PROMPT_KINDS, PromptOptions  # noqa: F401 (re-exported)
from keras_sam.data.readers import load_image, load_target
from keras_sam.common.geometry import (grid_size, input_size, model_scale, resized_shape,
                                       to_model_coordinates)
from keras_sam.common.preprocessing import preprocess_image, preprocess_mask
from keras_sam.common.prompts import jitter_boxes, sample_points


class DataGenerator:
    """Turns each lesion into SAM's inputs: the keras.io example's DataGenerator, one lesion a sample.

    Each item is a dict of arrays:
        pixel_values (3, S, S) float32, or image_embeddings (C, E, E) when `embeddings` is given;
        labels (G, G) float32, the lesion's mask resized and padded like the image (logits grid;
            for a keras_sam.data.ImageSample, the union of its image's lesions, empty for none);
        box (4,) the lesion's tight box in model-input pixels;
        scale (2,) model-input pixels per image pixel along x and y;
        extent (2,) width and height of the resized image in model-input pixels;
        prompt_seed () int64, from the lesion's content, so its prompts don't depend on its position;
        lesion_id () string, the lesion's id (its mask file).

    Args:
        lesions: keras_sam.data.Lesion records.
        processor: the model's SamProcessor (keras_sam.processor_for_config).
        embeddings: optional keras_sam.common.embeddings.EmbeddingCache holding every lesion's image
            (see `cache_embeddings`), to read image embeddings instead of preprocessing pixels.
    """

    def __init__(self, lesions, processor, embeddings=None):
        self.lesions = list(lesions)
        self.processor = processor
        self.embeddings = embeddings
        self._targets = {}

    def __len__(self):
        return len(self.lesions)

    @property
    def image_key(self):
        """The item key that holds the image: "image_embeddings" or "pixel_values"."""
        return "image_embeddings" if self.embeddings is not None else "pixel_values"

    def _lesion_targets(self, index):
        if index not in self._targets:
            lesion = self.lesions[index]
            mask = load_target(lesion)
            height, width = resized_shape(lesion.image_size, self.processor)
            self._targets[index] = {
                "labels": preprocess_mask(mask, self.processor).astype(np.uint8),
                "box": to_model_coordinates(lesion.box, lesion.image_size, self.processor),
                "scale": model_scale(lesion.image_size, self.processor),
                "extent": np.array([width, height], np.float32),
                "prompt_seed": np.int64(int(hashlib.sha1(
                    f"{lesion.image_key}{lesion.box}".encode()).hexdigest()[:15], 16)),
                "lesion_id": np.array(lesion.id),
            }
        return self._targets[index]

    def _targets_as_float(self, index):
        item = dict(self._lesion_targets(index))
        item["labels"] = item["labels"].astype(np.float32)
        return item

    def __getitem__(self, index):
        lesion = self.lesions[index]
        item = self._targets_as_float(index)
        if self.embeddings is not None:
            item["image_embeddings"] = self.embeddings.get(lesion.image_key)
        else:
            item["pixel_values"] = preprocess_image(load_image(lesion.image_path), self.processor)
        return item

    def __call__(self):
        for index in range(len(self)):
            yield self[index]

    def load(self, index):
        """`self[index]` inside a tf.data pipeline: a tensor index in, a dict of tensors out
        (image embeddings read by TensorFlow ops: EmbeddingCache.reader)."""
        signature = self.output_signature()
        keys = sorted(key for key in signature if key != "image_embeddings")

        def read(position):
            position = int(position)
            item = self[position] if self.embeddings is None else self._targets_as_float(position)
            return [np.asarray(item[key], signature[key].dtype.as_numpy_dtype) for key in keys]

        values = tf.numpy_function(read, [index], [signature[key].dtype for key in keys])
        for value, key in zip(values, keys):
            value.set_shape(signature[key].shape)
        item = dict(zip(keys, values))
        if self.embeddings is not None:
            item["image_embeddings"] = self.embeddings.reader([lesion.image_key for lesion in self.lesions])(index)
        return item

    def output_signature(self):
        """The tf.TensorSpec of each item, for tf.data.Dataset.from_generator."""
        size, grid = input_size(self.processor), grid_size(self.processor)
        signature = {
            "labels": tf.TensorSpec((grid, grid), tf.float32),
            "box": tf.TensorSpec((4,), tf.float32),
            "scale": tf.TensorSpec((2,), tf.float32),
            "extent": tf.TensorSpec((2,), tf.float32),
            "prompt_seed": tf.TensorSpec((), tf.int64),
            "lesion_id": tf.TensorSpec((), tf.string),
        }
        if self.embeddings is not None:
            signature["image_embeddings"] = self.embeddings.spec
        else:
            signature["pixel_values"] = tf.TensorSpec((3, size, size), tf.float32)
        return signature


def cache_embeddings(lesions, processor, cache, progress=True, meanwhile=None):
    """Computes the image embedding of every distinct image among `lesions` not yet in `cache`
    (`meanwhile`: see EmbeddingCache.add)."""
    paths = {lesion.image_key: lesion.image_path for lesion in lesions}
    return cache.add(
        list(paths), lambda key: preprocess_image(load_image(paths[key]), processor), progress, meanwhile
    )


def steps_per_epoch(lesions, batch_size):
    """Batches in one epoch of `build_dataset` (the last one may be smaller)."""
    return -(-len(lesions) // batch_size)


def build_dataset(lesions, processor, *, batch_size=2, prompts=PromptOptions(), training=True, seed=0,
                  embeddings=None, epochs=None, with_ids=False):
    """A tf.data.Dataset of (inputs, masks) batches that SamSegmenter.fit accepts.

    Shuffling and prompts depend only on (seed, epoch, lesion): a resumed run replays exactly the
    epochs an uninterrupted one would have seen.

    Args:
        lesions: keras_sam.data.Lesion records.
        processor: the model's SamProcessor (keras_sam.processor_for_config).
        batch_size: samples per batch.
        prompts: a PromptOptions.
        training: shuffle and draw new prompts every epoch (seeded); False keeps the lesions'
            order and one fixed set of prompts (for validation and test).
        seed: seeds the shuffle and the prompts.
        embeddings: optional keras_sam.common.embeddings.EmbeddingCache holding every lesion's image
            embedding: train from it instead of pixels (see `cache_embeddings`).
        epochs: with `training`, None for one epoch drawn anew each time the dataset is iterated;
            or (first, last) for one stream of epochs first..last-1, to fit with
            `initial_epoch=first, steps_per_epoch=steps_per_epoch(lesions, batch_size)`.
        with_ids: add each sample's "lesion_id" (its Lesion.id, a string) to the inputs, to join
            results to lesions; take it out before calling the model.

    Returns:
        tf.data.Dataset yielding ({"pixel_values" or "image_embeddings", "input_boxes" (B, 4)
        and/or "input_points" (B, N, 2) with "input_labels" (B, N)}, labels (B, G, G)). With
        clicks prompts, no prompt but "click_rounds" (B, R) int32, R = `prompts.click_rounds`,
        1 for each corrective round the sample takes (its first 1 to R entries), and
        "click_seed" (B, 2) int32, the seed of its clicks, and "click_extent" (B, 2) the image's
        width and height on the logits grid (without the padding, where clicks never go): the
        model's train and test steps draw the clicks from its own errors. With
        `PromptOptions(kind="none")` the inputs hold the image alone (SAM's empty prompt); give
        it keras_sam.data.image_samples(lesions) so each target is all of an image's lesions.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1; got {batch_size}")
    if not lesions:
        raise ValueError("no lesions to build a dataset from")
    generator = DataGenerator(lesions, processor, embeddings)
    count = len(generator)
    grid_per_model_px = grid_size(processor) / input_size(processor)
    image_key = generator.image_key

    def to_inputs(epoch_seed, index):
        item = generator.load(index)
        seeds = tf.random.experimental.stateless_split(tf.stack([epoch_seed, item["prompt_seed"]]), 2)
        inputs = {image_key: item[image_key]}
        if prompts.boxes:
            inputs["input_boxes"] = jitter_boxes(
                item["box"], prompts.jitter * item["scale"], item["extent"], seeds[0]
            )
        if prompts.points:
            points, labels = sample_points(
                item["labels"], item["extent"] * grid_per_model_px, prompts.num_positive,
                prompts.num_negative, seeds[1],
            )
            inputs["input_points"] = points / grid_per_model_px
            inputs["input_labels"] = labels
        if prompts.clicks:  # the clicks themselves are drawn in the training step, from the model's errors
            rounds_seed, click_seed = tf.unstack(tf.random.experimental.stateless_split(seeds[1], 2))
            rounds = tf.random.stateless_uniform(
                [], seed=rounds_seed, minval=1, maxval=prompts.click_rounds + 1, dtype=tf.int32)
            inputs["click_rounds"] = tf.cast(tf.range(prompts.click_rounds) < rounds, tf.int32)
            inputs["click_seed"] = tf.random.stateless_uniform(
                [2], seed=click_seed, minval=0, maxval=2**31 - 1, dtype=tf.int32)
            inputs["click_extent"] = item["extent"] * grid_per_model_px  # clicks stay off the padding
        if with_ids:
            inputs["lesion_id"] = item["lesion_id"]
        return inputs, item["labels"]

    def one_epoch(epoch_seed, shuffle):
        """One epoch's batches: its own order and prompts, from an int64 scalar seed."""
        order = tf.range(count, dtype=tf.int64)
        if shuffle:
            keys = tf.random.stateless_uniform([count], seed=tf.stack([epoch_seed, _ORDER_SALT]))
            order = tf.gather(order, tf.argsort(keys))
        return (tf.data.Dataset.from_tensor_slices(order)
                .map(lambda index: to_inputs(epoch_seed, index),
                     num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
                .batch(batch_size))

    def epoch_seed(epoch):
        return tf.cast(epoch, tf.int64) * 1_000_003 + seed

    batches = steps_per_epoch(lesions, batch_size)
    if not training:
        dataset = one_epoch(epoch_seed(0), shuffle=False)
    elif epochs is not None:
        dataset = tf.data.Dataset.range(*epochs).flat_map(
            lambda epoch: one_epoch(epoch_seed(epoch), shuffle=True))
        batches *= max(0, epochs[1] - epochs[0])
    else:  # a new epoch every time the dataset is iterated, reproducible from the seed
        dataset = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1).flat_map(
            lambda token: one_epoch(token % 2**40, shuffle=True))
    # flat_map hides the number of batches; said here, Keras sizes its epochs and progress bars by
    # it instead of running into the end of the data ("Your input ran out of data").
    return dataset.apply(tf.data.experimental.assert_cardinality(batches)).prefetch(tf.data.AUTOTUNE)


_ORDER_SALT = 0x5EED  # keeps an epoch's order independent of its prompts, drawn from the same seed
