"""SAM's pre- and post-processing as TensorFlow graph ops that every export runtime can run.

The exported graphs take an image of any size and give masks at that size, so resizing, padding,
normalising, upscaling and cropping happen inside them. Each resize here is a product with a
(output, input) weight matrix built from the sizes at run time: matmuls convert to ONNX and to
LiteRT builtins with dynamic sizes, where TensorFlow's antialiased resize (ScaleAndTranslate) and
its crops of dynamic size do not. The same arithmetic as keras-sam's Python path, frame by frame
(`keras_sam.common.geometry`):

- the image is resized like SamImageProcessor does through PIL (bilinear, widened by the
  downscale factor, rounded to whole grey levels after each of the two passes), normalised, and
  padded at the bottom and right to the model's square;
- mask logits go from the logits grid to the padded square (bilinear, half-pixel centres, as
  `post_process_masks` does with `tf.image.resize`), are cropped to the resized image, and
  resized to the image's own size; the two resizes and the crop compose into one matrix per axis.

No Keras here: shared by every model family that exports through TensorFlow.
"""

import collections

import tensorflow as tf

ProcessingSizes = collections.namedtuple(
    "ProcessingSizes", ["longest_edge", "input_size", "grid_size", "rescale_factor", "mean", "std"])
ProcessingSizes.__doc__ = """What the graph needs from a SamProcessor: the resized longest side, the padded
square's side, the logits grid's side, and the normalisation (x * rescale_factor - mean) / std."""


def processing_sizes(processor):
    """The `ProcessingSizes` of a transformers SamProcessor (or its image processor)."""
    image_processor = getattr(processor, "image_processor", processor)
    normalise = image_processor.do_normalize
    return ProcessingSizes(
        longest_edge=int(image_processor.size["longest_edge"]),
        input_size=int(image_processor.pad_size["height"]),
        grid_size=int(image_processor.mask_pad_size["height"]),
        rescale_factor=float(image_processor.rescale_factor) if image_processor.do_rescale else 1.0,
        mean=tuple(float(v) for v in (image_processor.image_mean if normalise else (0.0, 0.0, 0.0))),
        std=tuple(float(v) for v in (image_processor.image_std if normalise else (1.0, 1.0, 1.0))),
    )


def resized_length(length, longest, longest_edge):
    """The processor's resized side, `int(length * longest_edge / longest + 0.5)`, in integers.

    Args:
        length: int32 scalar, a side of the image.
        longest: int32 scalar, the image's longest side.
        longest_edge: the model's input size (Python int).

    Returns:
        int32 scalar.
    """
    return (2 * length * longest_edge + longest) // (2 * longest)


def pil_bilinear_matrix(in_size, out_size, padded_size):
    """Weights (padded_size, in_size) of PIL's bilinear resize from in_size to out_size pixels.

    PIL widens the triangle filter by the downscale factor (an antialiased resize) and normalises
    each output pixel's weights. Rows from out_size on are zero: the padding.
    """
    in_f, out_f = tf.cast(in_size, tf.float32), tf.cast(out_size, tf.float32)
    scale = in_f / out_f
    support = tf.maximum(scale, 1.0)
    centres = (tf.range(padded_size, dtype=tf.float32) + 0.5) * scale
    sources = tf.range(in_size, dtype=tf.float32) + 0.5
    weights = tf.nn.relu(1.0 - tf.abs(sources[None, :] - centres[:, None]) / support)
    totals = tf.reduce_sum(weights, axis=1, keepdims=True)
    valid = tf.range(padded_size)[:, None] < out_size
    # Padding rows have no weight at all; dividing them by 1 rather than by a tiny floor, which
    # LiteRT's float16 quantisation rounds to 0 (0/0 made every pixel NaN).
    return tf.where(valid, weights / tf.where(totals > 0, totals, tf.ones_like(totals)), tf.zeros_like(weights))


def bilinear_matrix(in_size, out_size):
    """Weights (out_size, in_size) of `tf.image.resize(..., "bilinear")` (half-pixel centres, no
    antialiasing): each output pixel mixes the two nearest input pixels, edges clamped."""
    in_f = tf.cast(in_size, tf.float32)
    scale = in_f / tf.cast(out_size, tf.float32)
    positions = (tf.range(out_size, dtype=tf.float32) + 0.5) * scale - 0.5
    positions = tf.clip_by_value(positions, 0.0, in_f - 1.0)
    sources = tf.range(in_size, dtype=tf.float32)
    return tf.nn.relu(1.0 - tf.abs(sources[None, :] - positions[:, None]))


def as_rgb(image):
    """(H, W, C) uint8 -> (H, W, 3): 1 channel (grey) and 2 (grey and alpha) repeat the grey,
    4 (RGBA) drops alpha, 3 is kept."""
    channels = tf.shape(image)[2]
    indices = tf.where(channels >= 3, tf.constant([0, 1, 2]), tf.constant([0, 0, 0]))
    return tf.gather(image, indices, axis=2)


def image_geometry(image, longest_edge):
    """The image's (height, width) and its (height, width) once resized for the model, int32."""
    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    longest = tf.maximum(height, width)
    return (height, width,
            resized_length(height, longest, longest_edge), resized_length(width, longest, longest_edge))


def preprocess(image, sizes):
    """One image to the model's pixel values, in the graph.

    Args:
        image: (H, W, C) uint8 (see `as_rgb` for C).
        sizes: a `ProcessingSizes`.

    Returns:
        (1, 3, S, S) float32 pixel values, as SamProcessor makes them.
    """
    image = as_rgb(image)
    height, width, new_height, new_width = image_geometry(image, sizes.longest_edge)
    side = sizes.input_size
    rows = pil_bilinear_matrix(height, new_height, side)  # (S, H)
    columns = pil_bilinear_matrix(width, new_width, side)  # (S, W)
    pixels = tf.transpose(tf.cast(image, tf.float32), (2, 0, 1))  # (3, H, W)
    # PIL's horizontal pass, then its vertical one, each rounded to whole grey levels.
    across = tf.matmul(tf.reshape(pixels, (-1, width)), columns, transpose_b=True)  # (3H, S)
    across = _round_grey(across)
    across = tf.reshape(tf.transpose(tf.reshape(across, (3, height, side)), (1, 0, 2)), (height, 3 * side))
    resized = _round_grey(tf.matmul(rows, across))  # (S, 3S)
    resized = tf.transpose(tf.reshape(resized, (side, 3, side)), (1, 0, 2))  # (3, S, S)
    mean = tf.constant(sizes.mean, tf.float32)[:, None, None]
    std = tf.constant(sizes.std, tf.float32)[:, None, None]
    normalised = (resized * sizes.rescale_factor - mean) / std
    inside = (tf.cast(tf.range(side) < new_height, tf.float32)[:, None]
              * tf.cast(tf.range(side) < new_width, tf.float32)[None, :])
    return (normalised * inside[None])[None]


def _round_grey(values):
    return tf.floor(tf.clip_by_value(values, 0.0, 255.0) + 0.5)


def mask_matrix(length, resized, sizes):
    """(length, G) weights taking one axis of the logits grid to the image's own pixels: grid to
    padded square, crop to the resized image, resize to the image."""
    to_square = bilinear_matrix(sizes.grid_size, sizes.input_size)  # (S, G)
    cropped = to_square[:resized]
    return tf.matmul(bilinear_matrix(resized, length), cropped)


def masks_at_image_size(logits, height, width, new_height, new_width, sizes, threshold=0.0):
    """(N, G, G) mask logits -> (N, H, W) uint8 masks of 0 and 1 at the image's own size.

    Args:
        logits: (N, G, G) float32 on the logits grid.
        height, width: the image's size; new_height, new_width: its size resized for the model.
        sizes: a `ProcessingSizes`.
        threshold: logit above which a pixel is in the mask.
    """
    grid = sizes.grid_size
    rows = mask_matrix(height, new_height, sizes)  # (H, G)
    columns = mask_matrix(width, new_width, sizes)  # (W, G)
    # Rank-2 matmuls only: (N*G, G) @ (G, W), then (H, G) @ (G, N*W).
    across = tf.matmul(tf.reshape(logits, (-1, grid)), columns, transpose_b=True)  # (N*G, W)
    across = tf.reshape(tf.transpose(tf.reshape(across, (-1, grid, width)), (1, 0, 2)), (grid, -1))
    full = tf.reshape(tf.matmul(rows, across), (height, -1, width))  # (H, N, W)
    return tf.cast(tf.transpose(full, (1, 0, 2)) > threshold, tf.uint8)


def boxes_to_model(boxes, height, width, new_height, new_width):
    """(N, 4) boxes x0, y0, x1, y1 in image pixels -> model-input pixels, clipped to the image and
    with each box's corners put in order."""
    boxes = tf.reshape(tf.cast(boxes, tf.float32), (-1, 4))
    w, h = tf.cast(width, tf.float32), tf.cast(height, tf.float32)
    xs = tf.clip_by_value(tf.stack([boxes[:, 0], boxes[:, 2]], axis=1), 0.0, w)
    ys = tf.clip_by_value(tf.stack([boxes[:, 1], boxes[:, 3]], axis=1), 0.0, h)
    sx, sy = tf.cast(new_width, tf.float32) / w, tf.cast(new_height, tf.float32) / h
    xs, ys = xs * sx, ys * sy
    return tf.stack([tf.reduce_min(xs, 1), tf.reduce_min(ys, 1), tf.reduce_max(xs, 1), tf.reduce_max(ys, 1)],
                    axis=1)


def points_to_model(points, height, width, new_height, new_width):
    """(N, P, 2) points x, y in image pixels -> model-input pixels, clipped to the image."""
    points = tf.cast(points, tf.float32)
    w, h = tf.cast(width, tf.float32), tf.cast(height, tf.float32)
    x = tf.clip_by_value(points[..., 0], 0.0, w) * (tf.cast(new_width, tf.float32) / w)
    y = tf.clip_by_value(points[..., 1], 0.0, h) * (tf.cast(new_height, tf.float32) / h)
    return tf.stack([x, y], axis=-1)
