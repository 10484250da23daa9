"""Shape checks for the tf-keras family's inputs, targets and weights, whatever a data source knows.

A tf.data pipeline, a Python generator, a `keras.utils.Sequence` or `tf.py_function` may leave
some dimensions (or the whole rank) unknown when `fit` traces its step. `with_checked_shape` checks what is
known when tracing and raises ValueError at once; what is not known is checked when each batch
arrives, with the same message (raised as tf.errors.InvalidArgumentError). Nothing correct is
rejected, and the result always has the static shape the model needs.
"""

import tensorflow as tf


def with_checked_shape(name, tensor, tail, expected, *, set_axis=False, several=None):
    """`tensor` as (B, *tail), or (B, 1, *tail) with `set_axis`, its static shape set.

    Args:
        name: what the tensor is, for messages ("input_boxes").
        tensor: the tensor as it came.
        tail: the shape after the batch (and set) axis; None where any size goes.
        expected: the accepted shapes in words, for messages ("(B, 4) or (B, 1, 4)").
        set_axis: accept (B, *tail) and (B, 1, *tail), and return the latter (one prompt set per
            row).
        several: with `set_axis`, the message when that axis holds more than one, known when
            tracing.

    Raises:
        ValueError: the shape is wrong and already known to be when tracing.
    """
    message = f"{name} must have shape {expected}; got"
    want = [1, *tail] if set_axis else list(tail)
    rank = tensor.shape.rank
    received = str(tensor.shape)
    original = tensor
    if rank is None:
        return _conform_unknown_rank(tensor, tail, want, message, set_axis)
    if set_axis and rank == len(tail) + 1:
        tensor = tf.expand_dims(tensor, 1)
    elif rank != len(want) + 1:
        raise ValueError(f"{message} {received}")
    if set_axis and tensor.shape[1] not in (None, 1):
        raise ValueError(several.format(count=tensor.shape[1]) if several else f"{message} {received}")
    unknown = []
    for axis, (have, need) in enumerate(zip(tensor.shape[1:], want), start=1):
        if need is None:
            continue
        if have is None:
            unknown.append((axis, need))
        elif have != need:
            raise ValueError(f"{message} {received}")
    if unknown:
        shape = tf.shape(tensor)
        matches = tf.reduce_all(tf.stack([tf.equal(shape[axis], need) for axis, need in unknown]))
        tensor = _after(tf.debugging.Assert(matches, [message, tf.shape(original)]), tensor)
    tensor.set_shape([None, *want])
    return tensor


def _conform_unknown_rank(tensor, tail, want, message, set_axis):
    shape = tf.shape(tensor)
    rank = tf.size(shape)
    padded = tf.pad(shape, [[0, len(want) + 2]])  # safe indexing whatever the rank
    short, full = len(tail) + 1, len(want) + 1
    rank_ok = tf.equal(rank, full)
    if set_axis:
        rank_ok = (rank_ok & tf.equal(padded[1], 1)) | tf.equal(rank, short)
    trailing = [tf.equal(padded[rank - len(tail) + index], need)
                for index, need in enumerate(tail) if need is not None]
    matches = tf.reduce_all(tf.stack([rank_ok, *trailing]))
    tensor = _after(tf.debugging.Assert(matches, [message, shape]), tensor)
    sizes = [shape[0], *(1 for _ in want[:1] if set_axis)]
    sizes += [padded[rank - len(tail) + index] if need is None else need for index, need in enumerate(tail)]
    tensor = tf.reshape(tensor, tf.stack([tf.cast(size, tf.int32) for size in sizes]))
    tensor.set_shape([None, *want])
    return tensor


def _after(assertion, tensor):
    with tf.control_dependencies([assertion]):
        return tf.identity(tensor)


def assert_binary(targets):
    """Checks when the batch arrives that targets are 0/1 masks."""
    return _after(
        tf.debugging.Assert(
            tf.reduce_all((targets == 0.0) | (targets == 1.0)),
            ["targets must be binary masks with values 0 and 1; threshold them first"],
        ),
        targets,
    )
