"""Writing files so a failure never leaves half of one, and naming arrays by their content.

Every file keras-sam writes (models, manifests, metrics, cached embeddings) goes through
`atomic_file` or `atomic_directory`: the content is written under a temporary name beside its
destination and renamed into place, which replaces the old version in one step.
"""

import contextlib
import hashlib
import json
import os
import shutil
import tempfile

import numpy as np


@contextlib.contextmanager
def atomic_file(path, mode="w", **open_kwargs):
    """Opens a temporary file beside `path`; on success renames it to `path`, on failure removes it.

    Args:
        path: the destination file.
        mode: "w" (text) or "wb" (binary).
        **open_kwargs: passed to `open` (e.g. newline="").

    Example:
        >>> with atomic_file("metrics.json") as handle:  # doctest: +SKIP
        ...     handle.write("{}")
    """
    path = os.fspath(path)
    handle, temporary = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=os.path.dirname(path) or ".")
    os.chmod(temporary, 0o666 & ~current_umask())  # mkstemp's are owner-only; open()'s follow the umask
    try:
        with os.fdopen(handle, mode, **open_kwargs) as stream:
            yield stream
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        raise


def write_json(path, payload):
    """Writes `payload` as indented JSON, atomically."""
    with atomic_file(path) as handle:
        json.dump(payload, handle, indent=2)


@contextlib.contextmanager
def atomic_directory(path):
    """Yields a temporary directory beside `path`; on success it replaces `path` as a whole.

    Whatever `path` held before stays in place until the new directory is complete.
    """
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".staging-", dir=parent)
    os.chmod(staging, 0o777 & ~current_umask())  # mkdtemp's are owner-only; makedirs' follow the umask
    try:
        yield staging
        _follow_umask(staging)
        if os.path.exists(path):
            retired = tempfile.mkdtemp(prefix=".replaced-", dir=parent)
            os.rename(path, os.path.join(retired, "old"))
            os.rename(staging, path)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.rename(staging, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _follow_umask(folder):
    """Gives every file below `folder` the mode the umask gives new files: some writers (safetensors'
    save_file, tempfile) make theirs owner-only."""
    mode = 0o666 & ~current_umask()
    for root, _, files in os.walk(folder):
        for name in files:
            os.chmod(os.path.join(root, name), mode)


def current_umask():
    """The process's file-mode creation mask (read by setting it, so set straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def content_key(array):
    """A key for an array's content: arrays with the same bytes and shape share it.

    Used for images (identical pictures under different file names share a key, so a split keeps
    them together) and for preprocessed pixels (the embedding cache's key).
    """
    array = np.ascontiguousarray(array)
    return hashlib.sha1(array.tobytes() + str(array.shape).encode()).hexdigest()
