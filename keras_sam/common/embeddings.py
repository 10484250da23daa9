"""The frozen-encoder cache: each image's embedding computed once, then fine-tuning runs the
decoder alone, skipping the vision encoder that dominates a step's time (BENCHMARKS.md).

Entries are keyed on the vision encoder's weights, the preprocessing and the image's content, so a
changed model or image never reuses a stale entry. On disk they are one `.npy` file per image
(float16 by default), written under a temporary name and renamed, so memory stays bounded whatever
the data set's size and a killed run never leaves a half-written entry.
"""

import hashlib
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from keras_sam.common.storage import atomic_file, content_key


def encoder_fingerprint(model):
    """A digest of the vision encoder's computing precision and every one of its weights.

    Each weight is hashed apart, on as many threads as there are cores (hashlib lets go of
    Python's lock on large buffers): hashing comes before the first image can be embedded, and
    one stream over sam-vit-base's weights would keep a single core busy (BENCHMARKS.md).
    """
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        digests = list(pool.map(_weight_digest, model.encoder_weights))
    header = f"{model.embedding_shape}|{model.encoder_dtype}".encode()
    return hashlib.sha256(header + b"".join(digests)).hexdigest()


def _weight_digest(weight):
    value = np.ascontiguousarray(np.asarray(weight))
    digest = hashlib.sha256(f"{value.dtype}{value.shape}".encode())
    digest.update(value.reshape(-1).view(np.uint8))
    return digest.digest()


class EmbeddingCache:
    """Image embeddings of one model's vision encoder, by content key.

    Args:
        model: the SamSegmenter (either family) whose frozen vision encoder computes the
            embeddings; built under `mixed_bfloat16`, it computes them in bfloat16 (keyed apart).
        directory: where entries are stored; None keeps them in memory (small sets).
        storage_dtype: "float16" (default, half the disk) or "float32" (bit-exact).
        batch_size: images per vision-encoder call when computing. 2 is as fast an image as 4
            on a CPU and peaks much lower, memory TensorFlow's allocator keeps for the rest of
            the process (BENCHMARKS.md).
        preprocessing: a string describing the preprocessing (e.g. the processor's JSON), part of
            the key.

    Example:
        >>> cache = EmbeddingCache(model, "cache/")  # doctest: +SKIP
        >>> cache.add(["img-1"], lambda key: pixel_values_of(key))  # doctest: +SKIP
        >>> cache.get("img-1").shape  # doctest: +SKIP
        (256, 64, 64)
    """

    def __init__(self, model, directory=None, *, storage_dtype="float16", batch_size=2, preprocessing=""):
        if storage_dtype not in ("float16", "float32"):
            raise ValueError(f"storage_dtype must be 'float16' or 'float32'; got {storage_dtype!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1; got {batch_size}")
        self.model = model
        self.directory = None if directory is None else os.fspath(directory)
        self.storage_dtype = storage_dtype
        self.batch_size = batch_size
        self._memory = {}
        self.shape = tuple(model.embedding_shape)
        self._prefix = hashlib.sha256(
            f"{encoder_fingerprint(model)}|{preprocessing}|{storage_dtype}".encode()).hexdigest()[:24]
        self._encode = model.image_embeddings
        if self.directory:
            os.makedirs(self.directory, exist_ok=True)

    @property
    def spec(self):
        """tf.TensorSpec of one embedding as `get` returns it."""
        return tf.TensorSpec(self.shape, tf.float32)

    def _entry(self, key):
        digest = hashlib.sha256(f"{self._prefix}|{key}".encode()).hexdigest()
        return digest if self.directory is None else os.path.join(self.directory, f"{digest}.npy")

    def __contains__(self, key):
        entry = self._entry(key)
        return entry in self._memory if self.directory is None else os.path.exists(entry)

    def add(self, keys, load_pixels, progress=True, meanwhile=None):
        """Computes and stores the embeddings of the keys not yet cached, in batches.

        Args:
            keys: content keys of images (e.g. a hash of their pixels).
            load_pixels: callable from a key to its (3, S, S) pixel values.
            progress: show a progress bar.
            meanwhile: optional callable, run on this thread while the images are embedded on
                another. The encoder is first traced here (`trace_image_embeddings`), so that on the
                other thread it is a graph running outside Python and Python work (tracing a
                training step: `keras-sam finetune` does) overlaps it, its first-call graph
                optimization included. It runs even when nothing is missing. An error in
                either (or Ctrl-C) stops the embedding after the batch in progress and is
                raised; the entries computed are kept.

        Returns:
            How many embeddings were computed.
        """
        missing = list(dict.fromkeys(key for key in keys if key not in self))
        chunks = [missing[start:start + self.batch_size] for start in range(0, len(missing), self.batch_size)]
        bar = tqdm(total=len(missing), desc="Embedding images", unit="image",
                   disable=not progress or not missing)
        stop = threading.Event()

        def embed(chunks):
            for chunk in chunks:
                if stop.is_set():
                    return
                pixels = np.stack([load_pixels(key) for key in chunk])
                embeddings = np.asarray(self._encode(pixels))
                for key, embedding in zip(chunk, embeddings):
                    self._store(key, embedding.astype(self.storage_dtype))
                bar.update(len(chunk))

        def embed_the_rest(rest):
            embed(rest)
            bar.close()  # the bar's time and rate are the embedding's, not meanwhile's

        try:
            if meanwhile is None:
                embed(chunks)
            else:
                if chunks:
                    self.model.trace_image_embeddings(len(chunks[0]))  # here, before another thread runs it
                pool = ThreadPoolExecutor(max_workers=1)
                embedding = pool.submit(embed_the_rest, chunks)
                try:
                    meanwhile()
                    embedding.result()
                except BaseException:
                    stop.set()  # the other thread ends after the batch it is on
                    raise
                finally:
                    pool.shutdown(wait=True)
        finally:
            bar.close()
        return len(missing)

    def _store(self, key, embedding):
        entry = self._entry(key)
        if self.directory is None:
            self._memory[entry] = embedding
            return
        with atomic_file(entry, "wb") as stream:  # little-endian, as read_entry reads it
            np.save(stream, np.ascontiguousarray(embedding, np.dtype(self.storage_dtype).newbyteorder("<")))

    def get(self, key):
        """The embedding of `key` as float32 (C, E, E); KeyError if it was never added."""
        entry = self._entry(key)
        if self.directory is None:
            if entry not in self._memory:
                raise KeyError(f"no cached embedding for {key!r}; call add() first")
            return self._memory[entry].astype(np.float32)
        try:
            return read_entry(entry, self.storage_dtype, self.shape).astype(np.float32)
        except FileNotFoundError:
            raise KeyError(f"no cached embedding for {key!r} in {self.directory}; call add() first") from None

    def reader(self, keys):
        """For tf.data: a function from a position in `keys` (a scalar integer tensor) to that
        key's embedding, float32 (C, E, E), as `get` returns it.

        Entries on disk are read by TensorFlow ops, in tf.data's own threads, without Python
        (through Python, every entry waited for the interpreter lock that the training loop
        holds between steps: a cached epoch was 4% slower on the development machine). An entry
        missing when it is read raises TensorFlow's NotFoundError naming its file.
        """
        keys = list(keys)
        if self.directory is None:
            def read(position):
                return self.get(keys[int(position)])

            def from_memory(position):
                embedding = tf.numpy_function(read, [position], tf.float32)
                embedding.set_shape(self.shape)
                return embedding

            return from_memory
        paths = [self._entry(key) for key in keys]

        def from_disk(position):
            return read_entry_tensor(tf.gather(tf.constant(paths, tf.string), position), self.storage_dtype, self.shape)

        return from_disk


def read_entry(path, dtype, shape):
    """The array in an .npy file the cache wrote, read without `np.load`.

    `np.load` parses the file's header with `ast.literal_eval`, and on Python 3.11 up to 3.11.7
    parsing Python in two threads at once can fail with a spurious "SystemError: AST constructor
    recursion depth mismatch" (CPython gh-106905); tf.data reads entries from several threads
    while the main thread may be tracing. The cache knows each entry's dtype and shape, so the
    header is only skipped, and the size checked.
    """
    with open(path, "rb") as stream:
        data = stream.read()
    if data[:6] != b"\x93NUMPY" or len(data) < 10:
        raise ValueError(f"cached embedding {path} is not an .npy file: delete it and it is recomputed")
    length_bytes = 2 if data[6] == 1 else 4
    start = 8 + length_bytes + int.from_bytes(data[8:8 + length_bytes], "little")
    dtype = np.dtype(dtype).newbyteorder("<")
    if len(data) - start != dtype.itemsize * math.prod(shape):
        raise ValueError(f"cached embedding {path} holds {len(data) - start} bytes, not a {shape} "
                         f"{dtype.name} array: delete it and it is recomputed")
    return np.frombuffer(data, dtype=dtype, offset=start).reshape(shape)


def read_entry_tensor(path, dtype, shape):
    """`read_entry` as TensorFlow ops: a scalar string path in, the array as float32 out.

    The file must be what the cache writes: an .npy file of format version 1 (np.save's for
    any header under 64 KiB) holding exactly a `shape` array of `dtype`; anything else fails
    with an InvalidArgumentError naming the file and saying to delete it.
    """
    dtype = tf.as_dtype(dtype)
    size = dtype.size * math.prod(shape)
    data = tf.io.read_file(path)
    header = 10 + tf.cast(tf.io.decode_raw(tf.strings.substr(data, 8, 2), tf.uint16)[0], tf.int32)
    valid = tf.logical_and(tf.equal(tf.strings.substr(data, 0, 7), b"\x93NUMPY\x01"),
                           tf.equal(tf.strings.length(data), header + size))
    check = tf.debugging.Assert(valid, [f"keras-sam: this cached embedding is not the {shape} {dtype.name} "
                                        ".npy file the cache writes; delete it and it is recomputed:", path])
    with tf.control_dependencies([check]):
        values = tf.io.decode_raw(tf.strings.substr(data, header, size), dtype)
    return tf.cast(tf.reshape(values, shape), tf.float32)


def embed_dataset(dataset, cache):
    """Turns a dataset of ({"pixel_values", prompts...}, y) into one of image embeddings.

    The first pass computes each distinct image's embedding once (keyed on its pixel values);
    later passes read the cache. Prompts and targets pass through untouched, so prompt jitter drawn
    upstream stays new every epoch. Put this after batching; the result trains SamSegmenter.fit
    without the vision encoder.

    Args:
        dataset: batched tf.data.Dataset of (x, y) with x["pixel_values"] (B, 3, S, S).
        cache: an EmbeddingCache of the model being trained.

    Returns:
        tf.data.Dataset of (x with "image_embeddings" (B, C, E, E) instead of pixels, y).
    """

    def lookup(pixels):
        keys = [content_key(p) for p in pixels]
        by_key = dict(zip(keys, pixels))
        cache.add(keys, by_key.__getitem__, progress=False)
        return np.stack([cache.get(key) for key in keys])

    def swap(x, y):
        embeddings = tf.numpy_function(lookup, [x["pixel_values"]], tf.float32)
        embeddings.set_shape((None,) + cache.shape)
        x = {key: value for key, value in x.items() if key != "pixel_values"}
        x["image_embeddings"] = embeddings
        return x, y

    return dataset.map(swap)
