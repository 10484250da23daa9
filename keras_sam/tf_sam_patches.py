"""Fixes to transformers' TFSamModel, applied to each instance keras-sam builds or loads.

The installed transformers package is never changed: `patch_tf_sam(sam)` replaces methods on the
layers of one model, and the weights and the numbers it computes in float32 stay the same.

1. A TensorFlow bug (2.19 to 2.21 with oneDNN, the default on x86 CPUs; tensorflow/tensorflow
   issues 117700 and 123109) corrupts memory in `tf.matmul` of a rank-4 tensor with a broadcast
   rank-2 tensor: batch 16 and up crashes the process, batch 12 silently returns wrong numbers.
   TFSamModel's positional embedding does exactly that matmul, shape (B, n, 2, 2) @ (2, F), for
   every box and point prompt. The fix computes the same product on rank-2 tensors.
2. Mixed precision: under Keras's `mixed_float16` or `mixed_bfloat16` policy the attention layers
   divide a half-precision tensor by a float32 scalar and fail. The fix scales the attention
   scores and takes their softmax in float32 (as Keras's own MultiHeadAttention does), then goes
   back to the compute dtype.
3. Whole-model saving: some weights are tracked under names with a dot ("no_mask_embed.weight"),
   which TensorFlow's SavedModel loader reads as a path and cannot find. The fix tracks them
   under the same names with "__" for the dot, for checkpoints and SavedModels alike; the
   variables' own names, which `save_pretrained` writes, do not change.
"""

import math
import types

import tensorflow as tf
from transformers.models.sam.modeling_tf_sam import TFSamAttention

_DOT = "__"


def patch_tf_sam(sam):
    """Applies every fix to `sam` (a transformers TFSamModel) and returns it."""
    patch_positional_embedding(sam.shared_image_embedding)
    for layer in _layers(sam):
        if isinstance(layer, TFSamAttention):
            patch_attention(layer)
        track_without_dots(layer)
    return sam


def patch_positional_embedding(layer):
    """Fix 1 on one TFSamPositionalEmbedding: its projection as a rank-2 matmul."""
    layer.call = types.MethodType(_rank2_positional_call, layer)
    return layer


def patch_attention(layer):
    """Fix 2 on one TFSamAttention: scores and softmax in float32 under any precision policy."""
    layer.call = types.MethodType(_mixed_precision_attention_call, layer)
    return layer


def _layers(sam):
    return [sam, *(module for module in sam.submodules if isinstance(module, tf.Module))]


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
    embedding = tf.concat([tf.sin(projected), tf.cos(projected)], axis=-1)
    return tf.cast(embedding, self.compute_dtype)


def _mixed_precision_attention_call(self, query, key, value):
    """TFSamAttention.call with the scaled scores and their softmax in float32."""
    query, key, value = self.q_proj(query), self.k_proj(key), self.v_proj(value)
    point_batch_size = tf.shape(query)[1]
    query = self._separate_heads(query, self.num_attention_heads)
    key = self._separate_heads(key, self.num_attention_heads)
    value = self._separate_heads(value, self.num_attention_heads)
    c_per_head = query.shape[-1] or tf.shape(query)[-1]
    scores = tf.matmul(query, tf.transpose(key, perm=[0, 1, 3, 2]))
    scores = tf.cast(scores, tf.float32) / tf.math.sqrt(tf.cast(c_per_head, tf.float32))
    weights = tf.cast(tf.nn.softmax(scores, axis=-1), value.dtype)
    out = self._recombine_heads(tf.matmul(weights, value), point_batch_size)
    return self.out_proj(out)


def track_without_dots(layer):
    """Fix 3 on one layer: its checkpoint dependencies named without dots ("a.weight" -> "a__weight")."""
    children = layer._trackable_children
    lookup = layer._lookup_dependency

    def _trackable_children(self, save_type="checkpoint", **kwargs):
        return {name.replace(".", _DOT): child for name, child in children(save_type, **kwargs).items()}

    def _lookup_dependency(self, name, cached_dependencies=None):
        found = lookup(name, cached_dependencies)
        if found is None and _DOT in name:
            found = lookup(name.replace(_DOT, "."), cached_dependencies)
        return found

    layer._trackable_children = types.MethodType(_trackable_children, layer)
    layer._lookup_dependency = types.MethodType(_lookup_dependency, layer)
