"""Fixes to transformers' TFSamModel, applied to each instance keras-sam builds or loads.

The installed transformers package is never changed: `patch_tf_sam(sam)` replaces methods on the
layers of one model; the weights stay the same, and so do the numbers it computes in float32 (to
rounding, 1e-5 relative, where a rewrite sums in another order). Fixes 1 to 3 are correctness
fixes and always applied. Fixes 4 to 7 are speed rewrites, named in SPEED_REWRITES: each can be
left out (`patch_tf_sam(sam, speed=())` applies none) and each is tested against transformers'
own output. The fixes replace private methods, so `patch_tf_sam` first checks that the installed
transformers is one they were written for (SUPPORTED_TRANSFORMERS). Measurements of the speed
rewrites are in BENCHMARKS.md.

1. A TensorFlow bug (2.19 to 2.21 with oneDNN, the default on x86 CPUs; tensorflow/tensorflow
   issues 117700 and 123109) corrupts memory in `tf.matmul` of a rank-4 tensor with a broadcast
   rank-2 tensor: large batches crash the process, somewhat smaller ones silently return wrong
   numbers. TFSamModel's positional embedding does exactly that matmul, shape (B, n, 2, 2) @ (2, F),
   for every box and point prompt. The fix computes the same product on rank-2 tensors.
2. Mixed precision: under Keras's `mixed_float16` or `mixed_bfloat16` policy the attention layers
   divide a half-precision tensor by a float32 scalar and fail. The fix scales the attention
   scores and takes their softmax in float32 (as Keras's own MultiHeadAttention does), then goes
   back to the compute dtype.
3. Whole-model saving: some weights are tracked under names with a dot ("no_mask_embed.weight"),
   which TensorFlow's SavedModel loader reads as a path and cannot find. The fix tracks them
   under the same names with "__" for the dot, for checkpoints and SavedModels alike; the
   variables' own names, which `save_pretrained` writes, do not change.
4. Speed ("decoder_layer_norms", "decoder_gelu", "block_attention"): training the mask decoder
   from cached embeddings on a CPU is bound by memory traffic over the image-sized tensors (4096
   image tokens, the 128x128 and 256x256 upscaling maps), not by arithmetic. Three rewrites
   compute the same functions with fewer passes over them: the decoder's layer norms in float32
   with their gradient written out (autodiff of `tf.nn.batch_normalization` makes twice the
   passes); its GELU in float32 (bfloat16's erf has no fast kernel); and attention between the
   few prompt tokens and the image tokens with the token side laid out as a block-diagonal
   matrix, one block per head, so the image-side tensors are multiplied as they are instead of
   being transposed to split and join heads (fix 2 is part of it).
5. Speed of the image encoder at 16-bit precision ("vision_attention", the embedding cache under
   mixed_bfloat16): its attention adds two relative-position terms to every score, rel_h[q, key
   row] and rel_w[q, key column], as two passes over a score tensor of (heads, 4096, 4096) per
   image in the global layers. The fix appends those terms to each query and one-hot codes of the
   key's row and column to each key, so the score matmul adds them itself (accumulating in
   float32, which also rounds less). The scores are computed a few heads at a time
   (`SCORES_PER_PASS`): all heads of 2 images at once hold most of the encoder's memory, and on a
   virtual machine each first touch of fresh memory is slow (page faults), so smaller passes make
   a fresh process's first embedding sooner with the same values. In float32 the original is
   faster (the longer matmul costs more than the adds save there) and is kept. At any precision,
   the encoder's MLPs run as 2-D matmuls ("dense_rows"), which oneDNN fuses with their bias add
   and the exact GELU (bfloat16's erf has no fast kernel).
6. Speed of the mask decoder's upscaling ("upscaling_rows"): each of its two transposed
   convolutions (kernel 2, stride 2) maps one pixel to a 2x2 block, and what follows them (layer
   norm over channels, GELU, the masks as dot products with the hypernetwork's outputs) works
   pixel by pixel. So the image tokens stay as (pixels, channels) rows, as the transformer leaves
   them: each convolution is one 2-D matmul whose output rows are the block's pixels, and only the
   finished masks are put back in image order. transformers' code transposes the 128x128 and
   256x256 maps to channels-first and back around each convolution, and TensorFlow's gradient of
   such a convolution's kernel was the slowest op of a cached step.
7. Graph size of the training step ("dense_rows"): Keras runs a Dense layer on a tensor of rank 3
   or more as a tensordot, some 24 graph ops with the batch size unknown, where a 2-D matmul with
   its bias add is 2. The mask decoder's MLPs, IoU head and hypernetwork MLPs run on (N, C) rows
   with the leading axes put back by one reshape: a smaller graph traces and optimizes sooner. The
   same values: tensordot is itself a reshape, matmul, reshape.
"""

import math
import types

import tensorflow as tf
import tf_keras as keras
import transformers
from packaging.version import Version
from transformers.models.sam.modeling_tf_sam import (TFSamAttention, TFSamFeedForward, TFSamLayerNorm,
                                                     TFSamMLPBlock, TFSamVisionAttention, shape_list)

_DOT = "__"
# Fix 5's attention computes the scores of a few heads at a time, at most this many bytes of
# scores an image: a global layer of sam-vit-base (4096 tokens) in bfloat16 holds 32 MiB a head,
# so 3 of its 12 heads a pass.
SCORES_PER_PASS = 96 * 2**20
# The transformers releases whose TFSamModel these fixes were written against and tested with
# (they replace private methods, which another release may change; 5.0 has no TFSamModel).
SUPPORTED_TRANSFORMERS = (Version("4.40"), Version("5"))
# The speed rewrites by name, each of which `patch_tf_sam(sam, speed=...)` can leave out:
SPEED_REWRITES = (
    "decoder_layer_norms",  # fix 4: the mask decoder's layer norms in float32, gradient written out
    "decoder_gelu",  # fix 4: the mask decoder's GELU in float32
    "block_attention",  # fix 4: prompt-image attention without transposing the image side
    "vision_attention",  # fix 5: at 16-bit, relative positions inside the encoder's score matmul
    "upscaling_rows",  # fix 6: the decoder's upscaling on (pixels, channels) rows
    "dense_rows",  # fix 7 (and fix 5's MLPs): Dense layers on 2-D rows, not Keras's tensordot
)


class UnsupportedTransformersError(RuntimeError):
    """The installed transformers is outside the range keras-sam's TFSamModel fixes support."""


def check_transformers_version(version=None):
    """Raises UnsupportedTransformersError unless transformers is in SUPPORTED_TRANSFORMERS.

    Args:
        version: the version to check; the installed transformers' by default.
    """
    version = Version(version or transformers.__version__)
    low, high = SUPPORTED_TRANSFORMERS
    if not low <= version < high:
        raise UnsupportedTransformersError(
            f"keras-sam's fixes to TFSamModel support transformers >={low},<{high}; transformers "
            f"{version} is installed. Install a supported release: pip install 'transformers>={low},<{high}'")


def patch_tf_sam(sam, speed=SPEED_REWRITES):
    """Applies the correctness fixes (1 to 3) and the chosen speed rewrites to `sam`; returns it.

    Args:
        sam: a transformers TFSamModel.
        speed: names from SPEED_REWRITES to apply (all by default; () for none). Each computes
            what transformers computes, to float32 rounding.

    Raises:
        UnsupportedTransformersError: transformers outside SUPPORTED_TRANSFORMERS.
        ValueError: an unknown speed rewrite.
    """
    check_transformers_version()
    speed = tuple(speed or ())
    unknown = sorted(set(speed) - set(SPEED_REWRITES))
    if unknown:
        raise ValueError(f"unknown speed rewrite(s) {', '.join(map(repr, unknown))}; choose among "
                         f"{', '.join(SPEED_REWRITES)}")
    # Correctness, always.
    patch_positional_embedding(sam.shared_image_embedding)
    for layer in _layers(sam):
        if isinstance(layer, TFSamAttention):
            patch_attention(layer, block_diagonal="block_attention" in speed)
        track_without_dots(layer)
    # Speed, as chosen.
    decoder = sam.mask_decoder
    if "decoder_layer_norms" in speed:
        for layer in decoder.submodules:
            if isinstance(layer, (keras.layers.LayerNormalization, TFSamLayerNorm)):
                patch_layer_norm(layer)
    if "decoder_gelu" in speed:
        decoder.activation = gelu_in_float32
    if "upscaling_rows" in speed:
        decoder.call = types.MethodType(_pixel_rows_decoder_call, decoder)
    if "vision_attention" in speed:
        for layer in sam.vision_encoder.submodules:
            if isinstance(layer, TFSamVisionAttention):
                patch_vision_attention(layer)
    if "dense_rows" in speed:
        for layer in sam.submodules:
            if isinstance(layer, TFSamMLPBlock):
                layer.call = types.MethodType(_mlp_call, layer)
            elif isinstance(layer, TFSamFeedForward):
                layer.call = types.MethodType(_feed_forward_rows_call, layer)
    return sam


def patch_positional_embedding(layer):
    """Fix 1 on one TFSamPositionalEmbedding: its projection as a rank-2 matmul."""
    layer.call = types.MethodType(_rank2_positional_call, layer)
    return layer


def patch_attention(layer, block_diagonal=True):
    """Fix 2 on one TFSamAttention: scores and softmax in float32 under any precision policy;
    with `block_diagonal` (fix 4), the heads of the longer side are never transposed."""
    layer.call = types.MethodType(_block_attention_call if block_diagonal else _float32_attention_call, layer)
    return layer


def patch_vision_attention(layer):
    """Fix 5 on one TFSamVisionAttention: at 16-bit precision, relative positions added inside
    the score matmul."""
    layer.call = types.MethodType(_vision_attention_call, layer)
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


def _float32_attention_call(self, query, key, value):
    """TFSamAttention.call with its scores scaled and their softmax taken in float32 (fix 2)."""
    query, key, value = self.q_proj(query), self.k_proj(key), self.v_proj(value)
    point_batch = shape_list(query)[1]
    query, key, value = (self._separate_heads(x, self.num_attention_heads) for x in (query, key, value))
    scores = tf.matmul(query, key, transpose_b=True)
    weights = tf.nn.softmax(tf.cast(scores, tf.float32) / math.sqrt(query.shape[-1]), axis=-1)
    out = tf.matmul(tf.cast(weights, value.dtype), value)
    return self.out_proj(self._recombine_heads(out, point_batch))


def _block_attention_call(self, query, key, value):
    """TFSamAttention.call with float32 scores and softmax, and no transposes of the long side.

    Head h of a (n, C) side is its channels h*d..(h+1)*d. The shorter side (the prompt tokens) is
    laid out block-diagonally as (heads*n, C), zeros off its head's channels, so one plain matmul
    with the longer side (the image tokens, untouched) gives every head's scores at once.
    """
    batch, point_batch = tf.shape(query)[0], tf.shape(query)[1]
    queries, keys = tf.shape(query)[2], tf.shape(key)[2]
    static_queries, static_keys = query.shape[2], key.shape[2]
    heads, channels = self.num_attention_heads, self.internal_dim
    per_head = channels // heads
    q = tf.reshape(_dense_2d(self.q_proj, query), (-1, queries, channels))
    k = tf.reshape(_dense_2d(self.k_proj, key), (-1, keys, channels))
    v = tf.reshape(_dense_2d(self.v_proj, value), (-1, keys, channels))
    scale = math.sqrt(per_head)
    if static_queries is not None and (static_keys is None or static_queries <= static_keys):
        # Few queries: block rows per head; (B*P, heads*queries, keys) scores.
        scores = tf.matmul(_block_diagonal(q, heads), k, transpose_b=True)
        weights = tf.nn.softmax(tf.cast(scores, tf.float32) / scale, axis=-1)
        out = tf.matmul(tf.cast(weights, v.dtype), v)  # every head's weights on all channels
        own_head = tf.reshape(tf.eye(heads, dtype=out.dtype), (1, heads, 1, heads, 1))
        out = tf.reduce_sum(tf.reshape(out, (-1, heads, queries, heads, per_head)) * own_head, axis=1)
    else:
        # Few keys: block columns per head; (B*P, queries, heads*keys) scores.
        scores = tf.matmul(q, _block_diagonal(k, heads), transpose_b=True)
        scores = tf.reshape(tf.cast(scores, tf.float32) / scale, (-1, queries, heads, keys))
        weights = tf.reshape(tf.nn.softmax(scores, axis=-1), (-1, queries, heads * keys))
        out = tf.matmul(tf.cast(weights, v.dtype), _block_diagonal(v, heads))
    out = self.out_proj(tf.reshape(out, (-1, channels)))
    return tf.reshape(out, (batch, point_batch, queries, out.shape[-1]))


def _vision_attention_call(self, hidden_states, output_attentions=False, training=False):
    """TFSamVisionAttention.call; at 16-bit precision with the relative positions in the matmul."""
    if not self.use_rel_pos or self.compute_dtype == "float32":
        return TFSamVisionAttention.call(self, hidden_states, output_attentions=output_attentions, training=training)
    return _attention_with_positions_in_matmul(self, hidden_states, output_attentions, training)


def _attention_with_positions_in_matmul(self, hidden_states, output_attentions=False, training=False):
    """TFSamVisionAttention.call with the relative-position terms added by the score matmul.

    scores[q, k] = scale * q.k + rel_h[q, row(k)] + rel_w[q, column(k)] is the dot product of
    [scale * q, rel_h[q, :], rel_w[q, :]] with [k, onehot(row(k)), onehot(column(k))].
    """
    batch = tf.shape(hidden_states)[0]
    _, height, width, channels = hidden_states.shape
    heads = self.num_attention_heads
    qkv = tf.reshape(_dense_2d(self.qkv, hidden_states), (batch, height * width, 3, heads, channels // heads))
    query, key, value = tf.unstack(tf.reshape(tf.transpose(qkv, (2, 0, 3, 1, 4)),
                                              (3, batch * heads, height * width, channels // heads)))
    grid = tf.reshape(query, (-1, height, width, channels // heads))
    rows = tf.cast(self.get_rel_pos(height, height, self.rel_pos_h), query.dtype)
    columns = tf.cast(self.get_rel_pos(width, width, self.rel_pos_w), query.dtype)
    rel_h = tf.reshape(tf.einsum("bhwc,hkc->bhwk", grid, rows), (-1, height * width, height))
    rel_w = tf.reshape(tf.einsum("bhwc,wkc->bhwk", grid, columns), (-1, height * width, width))
    key_row = tf.repeat(tf.eye(height, dtype=key.dtype), width, axis=0)  # key k = row * width + column
    key_column = tf.tile(tf.eye(width, dtype=key.dtype), [height, 1])
    count = tf.shape(key)[0]
    queries = tf.concat([query * self.scale, rel_h, rel_w], axis=-1)
    keys = tf.concat([key, tf.broadcast_to(key_row, (count, height * width, height)),
                      tf.broadcast_to(key_column, (count, height * width, width))], axis=-1)
    group = _heads_per_pass(height * width, heads, query.dtype)
    passes = [group] * (heads // group) + ([heads % group] if heads % group else [])
    by_head = [tf.split(tf.reshape(x, (batch, heads, height * width, x.shape[-1])), passes, axis=1)
               for x in (queries, keys, value)]
    outputs, all_weights = [], []
    for queries_part, keys_part, values_part in zip(*by_head):
        with tf.control_dependencies(outputs[-1:]):  # one pass after the other: its scores are the peak
            scores = tf.matmul(queries_part, keys_part, transpose_b=True)
        weights = tf.nn.softmax(scores, axis=-1)
        probabilities = tf.nn.dropout(weights, rate=self.dropout) if training and self.dropout else weights
        outputs.append(probabilities @ values_part)
        all_weights.append(weights)
    output = tf.reshape(tf.concat(outputs, axis=1), (batch, heads, height, width, channels // heads))
    output = tf.reshape(tf.transpose(output, (0, 2, 3, 1, 4)), (-1, channels))
    tokens = height * width
    attentions = tf.reshape(tf.concat(all_weights, axis=1), (-1, tokens, tokens)) if output_attentions else None
    return tf.reshape(self.proj(output), (batch, height, width, channels)), attentions


def _heads_per_pass(tokens, heads, dtype):
    """How many heads' scores one pass of the attention computes: (tokens, tokens) each, at most
    SCORES_PER_PASS bytes an image (at least one head)."""
    return max(1, min(heads, SCORES_PER_PASS // (tokens * tokens * tf.as_dtype(dtype).size)))


def _mlp_call(self, hidden_states):
    """TFSamMLPBlock.call as 2-D matmuls, which oneDNN fuses with their bias add and the first
    with transformers' "gelu" (the exact one, as tf.nn.gelu computes it)."""
    activation = tf.nn.gelu if self.config.hidden_act == "gelu" else self.act
    return _with_leading_axes_of(hidden_states, self.lin2(activation(_dense_2d(self.lin1, hidden_states))))


def _feed_forward_rows_call(self, hidden_states):
    """TFSamFeedForward.call (the IoU head, the hypernetwork MLPs) on (N, C) rows: its Dense layers
    are then plain matmuls, not Keras's tensordot, and the leading axes come back in one reshape."""
    rows = TFSamFeedForward.call(self, tf.reshape(hidden_states, (-1, hidden_states.shape[-1])))
    return _with_leading_axes_of(hidden_states, rows)


def _with_leading_axes_of(x, rows):
    """(N, C') rows computed from x's (..., C) rows, reshaped to (..., C')."""
    return tf.reshape(rows, tf.concat([tf.shape(x)[:-1], [rows.shape[-1]]], axis=0))


def _pixel_rows_decoder_call(self, image_embeddings, image_positional_embeddings, sparse_prompt_embeddings,
                             dense_prompt_embeddings, multimask_output, output_attentions=None):
    """TFSamMaskDecoder.call with the upscaling done on (pixels, channels) rows (fix 6)."""
    batch, channels, height, width = shape_list(image_embeddings)
    point_batch = tf.math.maximum(1, tf.shape(sparse_prompt_embeddings)[1])
    tokens = tf.tile(tf.concat([self.iou_token, self.mask_tokens], axis=0)[None, None], [batch, point_batch, 1, 1])
    if shape_list(sparse_prompt_embeddings)[1] != 0:
        tokens = tf.concat((tokens, sparse_prompt_embeddings), axis=2)
    image_embeddings = tf.repeat(image_embeddings + dense_prompt_embeddings, point_batch, axis=0)
    point_embedding, image_embeddings, attentions = self.transformer(
        point_embeddings=tf.cast(tokens, self.iou_token.dtype),
        image_embeddings=image_embeddings,
        image_positional_embeddings=tf.repeat(image_positional_embeddings, point_batch, axis=0),
        output_attentions=output_attentions,
    )
    mask_tokens_out = point_embedding[:, :, 1:1 + self.num_mask_tokens, :]

    # Rows in (image, token, then each block's pixel (dy, dx)) order, one per output pixel.
    norm = self.upscale_layer_norm
    rows = _upscale_rows(self.upscale_conv1, tf.reshape(image_embeddings, (-1, channels)))
    rows = self.activation(tf.cast(_layer_norm(rows, norm.weight, norm.bias, 1, norm.eps), rows.dtype))
    rows = self.activation(_upscale_rows(self.upscale_conv2, rows))
    hyper_in = tf.stack([mlp(mask_tokens_out[:, :, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)],
                        axis=2)
    masks = tf.matmul(hyper_in, tf.reshape(rows, (batch, point_batch, -1, rows.shape[-1])), transpose_b=True)
    # (..., y, x, dy1, dx1, dy2, dx2) -> image order: row 4y + 2dy1 + dy2, column 4x + 2dx1 + dx2.
    # The leading axes and y stay in place, merged into one: a rank-6 transpose, the most LiteRT takes.
    masks = tf.reshape(masks, (-1, width, 2, 2, 2, 2))
    masks = tf.reshape(tf.transpose(masks, (0, 2, 4, 1, 3, 5)),
                       (batch, point_batch, self.num_mask_tokens, 4 * height, 4 * width))
    iou_pred = self.iou_prediction_head(point_embedding[:, :, 0, :])
    kept = slice(1, None) if multimask_output else slice(0, 1)
    return masks[:, :, kept], iou_pred[:, :, kept], attentions if output_attentions else None


def _upscale_rows(convolution, rows):
    """A channels-first Conv2DTranspose with kernel 2 and stride 2 on (pixels, C_in) rows: each
    pixel's 2x2 block as 4 consecutive (pixels * 4, C_out) rows, in (dy, dx) order."""
    kernel = convolution.kernel  # (dy, dx, C_out, C_in)
    outputs, inputs = kernel.shape[2], kernel.shape[3]
    matrix = tf.reshape(tf.transpose(tf.cast(kernel, rows.dtype), (3, 0, 1, 2)), (inputs, 4 * outputs))
    blocks = tf.nn.bias_add(tf.matmul(rows, matrix), tf.tile(tf.cast(convolution.bias, rows.dtype), [4]))
    return tf.reshape(blocks, (-1, outputs))


def _dense_2d(dense, x):
    """A Dense layer on (..., C) as one (N, C) matmul, which oneDNN fuses with the bias add (on
    higher ranks Keras's tensordot puts reshapes between them)."""
    return dense(tf.reshape(x, (-1, x.shape[-1])))


def _block_diagonal(x, heads):
    """(N, n, C) -> (N, heads*n, C): row block h holds x's head-h channels and zeros elsewhere."""
    count = tf.shape(x)[1]
    split = tf.reshape(x, (-1, count, heads, x.shape[-1] // heads))
    blocks = tf.einsum("nihc,hg->nhigc", split, tf.eye(heads, dtype=x.dtype))
    return tf.reshape(blocks, (-1, heads * count, x.shape[-1]))


def patch_layer_norm(layer):
    """Fix 4 on one keras LayerNormalization or TFSamLayerNorm: computed in float32 with its
    gradient written out. A LayerNormalization over other axes than the last one, or without its
    scale and offset, keeps Keras's own call."""
    if isinstance(layer, TFSamLayerNorm):
        layer.call = types.MethodType(_sam_layer_norm_call, layer)
    else:
        layer.call = types.MethodType(_keras_layer_norm_call, layer)
    return layer


def _sam_layer_norm_call(self, inputs):
    axis = inputs.shape.rank - 1 if self.data_format == "channels_last" else 1
    return tf.cast(_layer_norm(inputs, self.weight, self.bias, axis, self.eps), self.compute_dtype)


def _keras_layer_norm_call(self, inputs):
    rank = inputs.shape.rank
    axes = [axis % rank for axis in (self.axis if isinstance(self.axis, (list, tuple)) else [self.axis])]
    if axes != [rank - 1] or not (self.center and self.scale):
        return keras.layers.LayerNormalization.call(self, inputs)
    return tf.cast(_layer_norm(inputs, self.gamma, self.beta, rank - 1, self.epsilon), self.compute_dtype)


def _layer_norm(inputs, scale, offset, axis, epsilon):
    """(x - mean) / sqrt(variance + epsilon) * scale + offset along `axis`, in float32.

    The gradient is written out: with n = (x - mean) / std and g = upstream * scale,
    dx = (g - mean(g) - n * mean(g * n)) / std, d_scale = sum(upstream * n), d_offset = sum(upstream).
    """
    rank = inputs.shape.rank
    others = [i for i in range(rank) if i != axis]
    shape = [1] * rank
    shape[axis] = -1
    x = tf.cast(inputs, tf.float32)
    scale = tf.reshape(tf.cast(scale, tf.float32), shape)
    offset = tf.reshape(tf.cast(offset, tf.float32), shape)

    @tf.custom_gradient
    def normalize(x, scale, offset):
        centered = x - tf.reduce_mean(x, axis, keepdims=True)
        inverse_std = tf.math.rsqrt(tf.reduce_mean(tf.square(centered), axis, keepdims=True) + epsilon)
        normalized = centered * inverse_std

        def gradient(upstream):
            d_normalized = upstream * scale
            d_x = inverse_std * (d_normalized - tf.reduce_mean(d_normalized, axis, keepdims=True)
                                 - normalized * tf.reduce_mean(d_normalized * normalized, axis, keepdims=True))
            d_scale = tf.reduce_sum(upstream * normalized, others, keepdims=True)
            return d_x, d_scale, tf.reduce_sum(upstream, others, keepdims=True)

        return normalized * scale + offset, gradient

    return normalize(x, scale, offset)


def gelu_in_float32(x):
    """Exact GELU computed in float32 and returned in x's dtype (bfloat16's erf is slow on CPU)."""
    return tf.cast(tf.nn.gelu(tf.cast(x, tf.float32)), x.dtype)


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
