"""The four exported functions, `segment`, `embed`, `decode` and `decode_points`, over a TFSamModel.

Built from the model's parts (vision encoder, prompt encoder, mask decoder), not from
`TFSamModel.call`: that call ensures the pixel values' shape with `tf.EnsureShape`, which LiteRT
has no builtin for. The model is a copy of the one given, so its caller's model never changes.

The contract, the same in every runtime:

- `segment`: `image` uint8 (H, W, 3) and `boxes` float32 (N, 4) as x0, y0, x1, y1 in the image's
  pixels -> `masks` uint8 (N, H, W) of 0 and 1 at the image's size and `scores` float32 (N,) in [0, 1].
- `embed`: `image` -> `image_embeddings` float32 (1, C, E, E).
- `decode`: `image_embeddings`, `boxes` and `image_size` int32 (2,) as (H, W) -> `masks`, `scores`.
- `decode_points`: `image_embeddings`, `points` float32 (N, P, 2) in image pixels, `labels` int32
  (N, P) (1 foreground, 0 background) and `image_size` -> `masks`, `scores`.

Images with 1, 2 or 4 channels are converted to RGB; boxes and points are clipped to the image.
"""

import math
import types

import tensorflow as tf
from transformers.models.sam.modeling_tf_sam import TFSamMLPBlock

from keras_sam.export import image_ops
from keras_sam.export.graph_names import SIGNATURES
from keras_sam.common.hub import require_tf_sam
from keras_sam.tfkeras.tf_sam_patches import patch_tf_sam


def erf_gelu(x):
    """Exact GELU, 0.5 x (1 + erf(x / sqrt 2)), computed in float32.

    TensorFlow's `tf.nn.gelu` computes it with erfc, which ONNX has no operator for; erf it has.
    """
    x32 = tf.cast(x, tf.float32)
    return tf.cast(0.5 * x32 * (1.0 + tf.math.erf(x32 * (1.0 / math.sqrt(2.0)))), x.dtype)


def exportable_copy(sam, gelu=None):
    """A copy of a TFSamModel (same config and weights) with keras-sam's fixes, its GELUs `gelu`.

    Args:
        sam: a built transformers TFSamModel.
        gelu: the exact GELU to compute with (default: TensorFlow's `tf.nn.gelu`); `erf_gelu` for ONNX.

    Returns:
        The new TFSamModel.
    """
    copy = require_tf_sam()(sam.config)
    copy.build_in_name_scope()
    copy.set_weights(sam.get_weights())
    patch_tf_sam(copy)
    if gelu is not None:
        for layer in copy.submodules:
            if isinstance(layer, TFSamMLPBlock) and layer.config.hidden_act == "gelu":
                layer.call = types.MethodType(_mlp_call_with(gelu), layer)
        copy.mask_decoder.activation = gelu
    copy.prompt_encoder._embed_points = types.MethodType(_embed_points, copy.prompt_encoder)
    return copy


def _embed_points(self, points, labels, pad):
    """TFSamPromptEncoder._embed_points with `tf.expand_dims` for transformers' `labels[..., None]`:
    LiteRT has no builtin for a strided slice that adds an axis to a tensor of unknown shape."""
    points = points + 0.5  # the centre of the pixel
    if pad:
        shape = tf.shape(points)
        points = tf.concat([points, tf.zeros(tf.stack([shape[0], shape[1], 1, 2]), points.dtype)], axis=2)
        labels = tf.concat([labels, -tf.ones(tf.stack([shape[0], shape[1], 1]), labels.dtype)], axis=2)
    size = self.input_image_size
    embedding = self.shared_embedding(points, (size, size))
    label = tf.expand_dims(labels, -1)
    embedding = tf.where(label == -1, self.not_a_point_embed[0], embedding)
    embedding = tf.where(label != -10, embedding, tf.zeros_like(embedding))
    embedding = tf.where(label == 0, embedding + self.point_embed[0], embedding)
    return tf.where(label == 1, embedding + self.point_embed[1], embedding)


def _mlp_call_with(gelu):
    def call(self, hidden_states):
        rows = tf.reshape(hidden_states, (-1, hidden_states.shape[-1]))
        rows = self.lin2(gelu(self.lin1(rows)))
        return tf.reshape(rows, tf.concat([tf.shape(hidden_states)[:-1], [rows.shape[-1]]], axis=0))
    return call


class SamExportModule(tf.Module):
    """The four functions over one TFSamModel, ready to save or convert.

    Args:
        sam: a TFSamModel prepared by `exportable_copy`.
        processor: the model's SamProcessor (its sizes and normalisation go into the graph).
        multimask_output: predict 3 masks per prompt and keep the one with the highest score.

    Example:
        >>> module = SamExportModule(exportable_copy(model.sam), model.processor)  # doctest: +SKIP
        >>> out = module.segment(image=image, boxes=[[40., 30., 200., 160.]])  # doctest: +SKIP
    """

    def __init__(self, sam, processor, multimask_output=False):
        super().__init__(name="sam_export")
        self.sam = sam
        self.sizes = image_ops.processing_sizes(processor)
        self.multimask_output = bool(multimask_output)
        vision = sam.config.vision_config
        side = vision.image_size // vision.patch_size
        self.embedding_shape = (vision.output_channels, side, side)
        self.image_spec = tf.TensorSpec((None, None, None), tf.uint8, name="image")
        self.boxes_spec = tf.TensorSpec((None, 4), tf.float32, name="boxes")
        self.points_spec = tf.TensorSpec((None, None, 2), tf.float32, name="points")
        self.labels_spec = tf.TensorSpec((None, None), tf.int32, name="labels")
        self.size_spec = tf.TensorSpec((2,), tf.int32, name="image_size")
        self.embeddings_spec = tf.TensorSpec((1, *self.embedding_shape), tf.float32, name="image_embeddings")
        self.segment = tf.function(self._segment, input_signature=[self.image_spec, self.boxes_spec],
                                   autograph=False)
        self.embed = tf.function(self._embed, input_signature=[self.image_spec], autograph=False)
        self.decode = tf.function(self._decode, input_signature=[
            self.embeddings_spec, self.boxes_spec, self.size_spec], autograph=False)
        self.decode_points = tf.function(self._decode_points, input_signature=[
            self.embeddings_spec, self.points_spec, self.labels_spec, self.size_spec], autograph=False)

    def concrete_functions(self):
        """{signature name: concrete function}, for SavedModel signatures and converters."""
        return {name: getattr(self, name).get_concrete_function() for name in SIGNATURES}

    # ------------------------------------------------------------------ the four functions
    def _segment(self, image, boxes):
        embeddings = self._embeddings(image)
        shape = tf.shape(image)
        return self._decode(embeddings, boxes, tf.stack([shape[0], shape[1]]))

    def _embed(self, image):
        return {"image_embeddings": self._embeddings(image)}

    def _decode(self, image_embeddings, boxes, image_size):
        height, width, new_height, new_width = self._geometry(image_size)
        model_boxes = image_ops.boxes_to_model(boxes, height, width, new_height, new_width)
        logits, scores = self._masks(image_embeddings, input_boxes=model_boxes[:, None])
        return self._outputs(logits, scores, height, width, new_height, new_width)

    def _decode_points(self, image_embeddings, points, labels, image_size):
        height, width, new_height, new_width = self._geometry(image_size)
        model_points = image_ops.points_to_model(points, height, width, new_height, new_width)
        logits, scores = self._masks(image_embeddings, input_points=model_points[:, None],
                                     input_labels=tf.cast(labels, tf.int32)[:, None])
        return self._outputs(logits, scores, height, width, new_height, new_width)

    # ------------------------------------------------------------------ the parts
    def _embeddings(self, image):
        pixel_values = image_ops.preprocess(image, self.sizes)
        embeddings = self.sam.vision_encoder(pixel_values, return_dict=True)["last_hidden_state"]
        return tf.reshape(tf.cast(embeddings, tf.float32), (1, *self.embedding_shape))

    def _geometry(self, image_size):
        height, width = image_size[0], image_size[1]
        longest = tf.maximum(height, width)
        edge = self.sizes.longest_edge
        return (height, width, image_ops.resized_length(height, longest, edge),
                image_ops.resized_length(width, longest, edge))

    def _masks(self, image_embeddings, input_boxes=None, input_points=None, input_labels=None):
        """Logits (N, G, G) and scores (N,) of the best mask for each of N prompt rows on one image.

        One row per prompt with the image embedding repeated, as SamSegmenter lays out its batches:
        the decoder needs the number of prompts per row known when the graph is built.
        """
        sam = self.sam
        prompts = input_boxes if input_boxes is not None else input_points
        rows = tf.shape(prompts)[0]
        sparse, dense = sam.prompt_encoder(batch_size=rows, input_points=input_points, input_labels=input_labels,
                                           input_boxes=input_boxes, input_masks=None)
        logits, scores, _ = sam.mask_decoder(
            image_embeddings=tf.tile(image_embeddings, [rows, 1, 1, 1]),
            image_positional_embeddings=tf.tile(sam.get_image_wide_positional_embeddings(), [rows, 1, 1, 1]),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=self.multimask_output,
        )
        grid = self.sizes.grid_size
        masks = 3 if self.multimask_output else 1
        logits = tf.reshape(tf.cast(logits, tf.float32), (-1, masks, grid, grid))
        scores = tf.reshape(tf.cast(scores, tf.float32), (-1, masks))
        if masks == 1:
            return logits[:, 0], scores[:, 0]
        # The highest-scoring mask, chosen with a one-hot product (a gather with batch dimensions
        # is not in every runtime).
        best = tf.one_hot(tf.argmax(scores, axis=1), masks, dtype=tf.float32)
        return tf.reduce_sum(logits * best[:, :, None, None], axis=1), tf.reduce_sum(scores * best, axis=1)

    def _outputs(self, logits, scores, height, width, new_height, new_width):
        masks = image_ops.masks_at_image_size(logits, height, width, new_height, new_width, self.sizes)
        # As keras-sam reports it: the IoU head regresses without bounds, an IoU lies in [0, 1].
        return {"masks": masks, "scores": tf.clip_by_value(scores, 0.0, 1.0)}
