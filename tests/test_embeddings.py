import ast
import glob
import os
import threading

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from conftest import tiny_segmenter
from toy import disks
from keras_sam import processor_for_config, tiny_sam_config
from keras_sam.data import build_dataset, cache_embeddings, find_records, read_lesions
from keras_sam.common.embeddings import EmbeddingCache, embed_dataset


@pytest.fixture(scope="module")
def lesions(phantom_dir):
    return read_lesions(find_records(phantom_dir)).lesions[:10]


def fit_losses(lesions, embeddings=None, storage_dtype="float32", tmp=None):
    config = tiny_sam_config()
    processor = processor_for_config(config)
    model = tiny_segmenter(seed=11)
    cache = None
    if embeddings:
        cache = EmbeddingCache(model, tmp, storage_dtype=storage_dtype, preprocessing="p")
        assert cache_embeddings(lesions, processor, cache, progress=False) == len(
            {lesion.image_key for lesion in lesions})
    dataset = build_dataset(lesions, processor, batch_size=5, seed=4, embeddings=cache)
    model.compile(optimizer=keras.optimizers.legacy.Adam(1e-3))
    history = model.fit(dataset, epochs=2, verbose=0)
    return np.array(history.history["loss"]), model, cache


@pytest.fixture(scope="module")
def from_pixels(lesions):
    return fit_losses(lesions)[0]


def test_training_from_a_float32_cache_matches_training_from_pixels(lesions, from_pixels, tmp_path):
    losses, _, _ = fit_losses(lesions, embeddings=True, storage_dtype="float32", tmp=tmp_path)
    np.testing.assert_allclose(losses, from_pixels, atol=1e-6)


def test_training_from_a_float16_cache_matches_within_half_precision(lesions, from_pixels, tmp_path):
    losses, model, cache = fit_losses(lesions, embeddings=True, storage_dtype="float16", tmp=tmp_path)
    np.testing.assert_allclose(losses, from_pixels, atol=2e-3)
    files = os.listdir(tmp_path)
    assert files and all(name.endswith(".npy") for name in files)  # no temporary left behind
    assert np.load(os.path.join(tmp_path, files[0])).dtype == np.float16


class FakeEncoderModel:
    """What EmbeddingCache reads of a model (keras_sam.common.model_interface.SegmenterModel's encoder
    members), for either family."""

    embedding_shape = (2, 3, 3)

    def __init__(self, dtype="float32", weight=1.0):
        self.encoder_dtype = dtype
        self.encoder_weights = [np.full((2, 2), weight, np.float32)]

    def image_embeddings(self, pixels):
        return np.ones((len(pixels), *self.embedding_shape), np.float32)

    def trace_image_embeddings(self, batch_size):
        pass


def test_entries_are_keyed_on_the_encoders_weights_and_precision(tmp_path):
    EmbeddingCache(FakeEncoderModel(), tmp_path).add(["a"], lambda key: np.zeros(1), progress=False)
    assert "a" in EmbeddingCache(FakeEncoderModel(), tmp_path)
    assert "a" not in EmbeddingCache(FakeEncoderModel(dtype="bfloat16"), tmp_path)  # mixed_bfloat16
    assert "a" not in EmbeddingCache(FakeEncoderModel(weight=2.0), tmp_path)


class RandomEncoderModel(FakeEncoderModel):
    def image_embeddings(self, pixels):
        return np.random.default_rng(len(pixels)).normal(size=(len(pixels), *self.embedding_shape))


def unavailable(*args):
    raise SystemError("AST constructor recursion depth mismatch (before=33, after=29)")


@pytest.mark.parametrize("storage_dtype", ["float16", "float32"])
def test_entries_read_back_without_parsing_python(tmp_path, monkeypatch, storage_dtype):
    # np.load parses each header with ast.literal_eval, which fails at random when two threads
    # parse at once on Python 3.11.0-3.11.7 (CPython gh-106905); tf.data reads from several.
    model = RandomEncoderModel()
    cache = EmbeddingCache(model, tmp_path, storage_dtype=storage_dtype)
    cache.add(["a", "b"], lambda key: np.zeros(1), progress=False)
    expected = model.image_embeddings(np.zeros((2, 1))).astype(storage_dtype).astype(np.float32)
    monkeypatch.setattr(ast, "literal_eval", unavailable)
    np.testing.assert_array_equal(np.stack([cache.get("a"), cache.get("b")]), expected)
    for entry in glob.glob(os.path.join(tmp_path, "*.npy")):
        with open(entry, "r+b") as stream:
            stream.truncate(os.path.getsize(entry) - 2)
    with pytest.raises(ValueError, match=r"cached embedding .*\.npy holds .* bytes.*delete it"):
        cache.get("a")


def test_meanwhile_runs_here_while_the_images_are_embedded(tmp_path):
    model = RandomEncoderModel()
    keys = ["a", "b", "c", "d"]
    last_image_loaded = threading.Event()
    seen = {}

    def load_pixels(key):
        if key == keys[-1]:
            last_image_loaded.set()
        return np.zeros(1)

    def meanwhile():
        seen["thread"] = threading.current_thread()
        seen["embedded meanwhile"] = last_image_loaded.wait(timeout=60)

    cache = EmbeddingCache(model, tmp_path / "with", batch_size=1)
    assert cache.add(keys, load_pixels, progress=False, meanwhile=meanwhile) == 4
    assert seen == {"thread": threading.main_thread(), "embedded meanwhile": True}
    alone = EmbeddingCache(model, tmp_path / "alone", batch_size=1)
    alone.add(keys, load_pixels, progress=False)
    for key in keys:
        np.testing.assert_array_equal(cache.get(key), alone.get(key))


class TracingEncoderModel(RandomEncoderModel):
    """Records where the cache traces and runs its encoder."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def trace_image_embeddings(self, batch_size):
        self.calls.append(("trace", batch_size, threading.current_thread()))

    def image_embeddings(self, pixels):
        self.calls.append(("embed", len(pixels), threading.current_thread()))
        return super().image_embeddings(pixels)


def test_the_encoder_is_traced_here_then_every_batch_embedded_beside_meanwhile(tmp_path):
    model = TracingEncoderModel()
    before_meanwhile = []
    cache = EmbeddingCache(model, tmp_path / "with", batch_size=2)
    cache.add(["a", "b", "c"], lambda key: np.zeros(1), progress=False,
              meanwhile=lambda: before_meanwhile.extend(model.calls))
    main = threading.main_thread()
    assert before_meanwhile[0] == model.calls[0] == ("trace", 2, main)
    assert [call[:2] for call in model.calls[1:]] == [("embed", 2), ("embed", 1)]
    assert all(thread is not main for _, _, thread in model.calls[1:])

    alone = TracingEncoderModel()
    EmbeddingCache(alone, tmp_path / "alone", batch_size=2).add(["a", "b", "c"], lambda key: np.zeros(1),
                                                                progress=False)
    assert alone.calls == [("embed", 2, main), ("embed", 1, main)]  # nothing to overlap: no separate trace


def test_errors_on_either_side_of_meanwhile_are_raised_and_computed_entries_kept(tmp_path):
    def fail():
        raise ValueError("meanwhile failed")

    model = RandomEncoderModel()
    cache = EmbeddingCache(model, tmp_path, batch_size=1)
    with pytest.raises(ValueError, match="meanwhile failed"):
        cache.add(["a", "b", "c"], lambda key: np.zeros(1), progress=False, meanwhile=fail)
    kept = [key for key in "abc" if key in cache]
    assert kept == list("abc")[:len(kept)]  # the embedding stops after the batch it is on
    for key in kept:
        np.testing.assert_array_equal(cache.get(key), model.image_embeddings(np.zeros((1, 1)))[0].astype(np.float16))
    assert cache.add(["a", "b", "c"], lambda key: np.zeros(1), progress=False) == 3 - len(kept)

    def unreadable(key):
        if key == "f":
            raise OSError("cannot read image f")
        return np.zeros(1)

    ran = []
    with pytest.raises(OSError, match="cannot read image f"):
        cache.add(["d", "e", "f"], unreadable, progress=False, meanwhile=lambda: ran.append(True))
    assert ran == [True] and "d" in cache and "e" in cache and "f" not in cache


def test_a_changed_encoder_or_image_never_reuses_an_entry(tmp_path):
    model = tiny_segmenter(seed=0)
    pixels = np.random.default_rng(0).normal(size=(3, 256, 256)).astype(np.float32)
    cache = EmbeddingCache(model, tmp_path)
    assert cache.add(["a"], lambda key: pixels, progress=False) == 1
    assert cache.add(["a"], lambda key: pixels, progress=False) == 0  # already there
    np.testing.assert_allclose(cache.get("a"), model.image_embeddings(pixels[None])[0], atol=1e-2)
    with pytest.raises(KeyError, match="'b'"):
        cache.get("b")
    weight = model.sam.vision_encoder.weights[3]
    original = weight.numpy()
    weight.assign(original + 1.0)
    changed = EmbeddingCache(model, tmp_path)
    assert "a" not in changed
    assert "a" not in EmbeddingCache(model, tmp_path, preprocessing="other")
    weight.assign(original)
    assert "a" in EmbeddingCache(model, tmp_path)  # the same weights find their entry again


def test_embed_dataset_swaps_pixels_for_embeddings_once():
    x, y = disks(6, seed=2)
    model = tiny_segmenter(seed=5)
    calls = []
    encode = model.image_embeddings
    model.image_embeddings = lambda pixels: calls.append(len(pixels)) or encode(pixels)
    cache = EmbeddingCache(model, None, storage_dtype="float32")
    dataset = embed_dataset(tf.data.Dataset.from_tensor_slices((x, y)).batch(3), cache)
    for _ in range(2):
        for batch_x, _ in dataset:
            assert set(batch_x) == {"image_embeddings", "input_boxes"}
    assert calls == [2, 1, 2, 1]  # each batch of 3, 2 images a call, in the first pass only
    from_cache = model.predict(dataset.map(lambda a, b: a), verbose=0)["mask_logits"]
    from_pixels = model.predict(x, batch_size=3, verbose=0)["mask_logits"]
    np.testing.assert_allclose(from_cache, from_pixels, atol=1e-5)


@pytest.mark.parametrize("storage_dtype", ["float16", "float32"])
def test_pipelines_read_entries_with_tensorflow_ops(tmp_path, monkeypatch, storage_dtype):
    # tf.data reads entries without Python: through Python each waited for the interpreter lock.
    cache = EmbeddingCache(RandomEncoderModel(), tmp_path, storage_dtype=storage_dtype)
    cache.add(["a", "b"], lambda key: np.zeros(1), progress=False)
    expected = np.stack([cache.get("b"), cache.get("a")])
    monkeypatch.setattr(cache, "get", unavailable)
    positions = tf.data.Dataset.from_tensor_slices(tf.constant([1, 0], tf.int64))
    read = positions.map(cache.reader(["a", "b"]))
    assert read.element_spec == cache.spec
    np.testing.assert_array_equal(np.stack(list(read.as_numpy_iterator())), expected)
    for entry in glob.glob(os.path.join(tmp_path, "*.npy")):
        with open(entry, "r+b") as stream:
            stream.truncate(os.path.getsize(entry) - 2)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"delete it and it is recomputed.*\.npy"):
        list(read)


def test_an_in_memory_cache_reads_through_python():
    cache = EmbeddingCache(RandomEncoderModel())
    cache.add(["a", "b"], lambda key: np.zeros(1), progress=False)
    read = tf.data.Dataset.from_tensor_slices(tf.constant([1, 0], tf.int64)).map(cache.reader(["a", "b"]))
    np.testing.assert_array_equal(np.stack(list(read.as_numpy_iterator())), np.stack([cache.get("b"), cache.get("a")]))
