"""Immunity to a TensorFlow bug that TFSamModel walks into for every box and point prompt.

TensorFlow 2.19 to 2.21 with oneDNN (the default on x86 CPUs) corrupt memory in `tf.matmul` of a
rank-4 tensor with a broadcast rank-2 tensor (tensorflow/tensorflow issues 117700 and 123109):
batch 16 and up crashes the process, batch 12 silently returns wrong numbers. TFSamModel's
positional embedding does exactly that matmul, shape (B, n, 2, 2) @ (2, F). The fix computes the
same product on rank-2 tensors, which is exact and keeps oneDNN's speed elsewhere.
"""

import math
import types

import tensorflow as tf


def _rank2_positional_call(self, input_coords, input_shape=None):
    """TFSamPositionalEmbedding.call with the projection done as a rank-2 matmul."""
    coordinates = input_coords
    if input_shape is not None:
        coordinates = tf.stack(
            [
                tf.cast(coordinates[..., 0], tf.float32) / input_shape[1],
                tf.cast(coordinates[..., 1], tf.float32) / input_shape[0],
            ],
            axis=-1,
        )
    coordinates = tf.cast(2 * coordinates - 1, self.positional_embedding.dtype)
    features = self.positional_embedding.shape[-1]
    flat = tf.matmul(tf.reshape(coordinates, (-1, 2)), self.positional_embedding)
    projected = tf.reshape(flat, tf.concat([tf.shape(coordinates)[:-1], [features]], axis=0))
    projected.set_shape(coordinates.shape[:-1].concatenate([features]))
    projected = 2 * math.pi * projected
    return tf.concat([tf.sin(projected), tf.cos(projected)], axis=-1)


def patch_positional_embedding(sam):
    """Makes `sam`'s positional embedding (shared by its prompt encoder) use the rank-2 matmul.

    Only this model instance changes; the weights and the numbers it computes stay the same.

    Args:
        sam: a transformers TFSamModel.

    Returns:
        `sam`, for chaining.
    """
    layer = sam.shared_image_embedding
    layer.call = types.MethodType(_rank2_positional_call, layer)
    return sam
