"""What the mask overlay callbacks of both model families share: taking samples from any data
source, predicting and drawing them, and writing the pictures to TensorBoard and PNG files.

No Keras here: the tf-keras and Keras 3 callbacks are `OverlayCallbackMixin` on their own
Callback class.
"""

import os
from collections.abc import Mapping

import numpy as np
from PIL import Image

from keras_sam.common.clicks import NO_CLICK, Click, first_click, next_click
from keras_sam.common.geometry import input_size
from keras_sam.common.losses_and_scores import dice_per_sample
from keras_sam.common.postprocessing import postprocess_masks
from keras_sam.common.preprocessing import pixels_to_image
from keras_sam.common.visualization import render_overlay, tile

IMAGE_INPUTS = ("pixel_values", "image_embeddings")
CLICK_INPUTS = ("click_rounds", "click_seed", "click_extent")
"""What samples of a clicks dataset (PromptOptions(kind="clicks")) carry instead of prompts."""
OVERLAY_CLICKS = 3
"""Clicks drawn for samples that carry clicks: the protocol's first click and two corrective ones."""


def _as_numpy(value):
    return value.numpy() if hasattr(value, "numpy") else np.asarray(value)


def _single_samples(element):
    """One (x, y[, w]) element of a data source -> a list of unbatched (x, y) samples."""
    x, y = element[0], element[1]
    x = {key: _as_numpy(value) for key, value in x.items()}
    y = _as_numpy(y)
    image = next((x[key] for key in IMAGE_INPUTS if key in x), None)
    if image is None or image.ndim == 3:  # already one sample
        return [(x, y)]
    return [({key: value[row] for key, value in x.items()}, y[row]) for row in range(len(image))]


def _is_sequence(samples):
    """A keras.utils.Sequence or PyDataset: batches by index."""
    return (hasattr(samples, "__getitem__") and hasattr(samples, "__len__")
            and not isinstance(samples, (list, tuple, Mapping)))


def take_samples(samples, max_samples):
    """The first `max_samples` single (x, y) samples of anything `fit` takes as data.

    Args:
        samples: a list of (x, y) samples, (x, y) arrays, or batches or samples from a
            tf.data.Dataset, a keras.utils.Sequence, or any iterable of (x, y) or
            (x, y, sample_weight).
        max_samples: how many to take.
    """
    if _is_sequence(samples):
        sequence = samples
        samples = (sequence[index] for index in range(len(sequence)))
    elif isinstance(samples, tuple) and isinstance(samples[0], Mapping):
        samples = [samples]  # (x, y) arrays, as fit(x, y) takes them
    taken = []
    for element in samples:
        taken.extend(_single_samples(element))
        if len(taken) >= max_samples:
            break
    if not taken:
        raise ValueError("MaskOverlayCallback needs at least one (x, y) sample")
    return taken[:max_samples]


class OverlayRenderer:
    """Predicts fixed samples and draws the predicted mask, the true outline and the prompts: the
    box, the clicks (positive and negative markers) and, for samples that carry a previous mask
    (`input_masks`, as corrective clicks do), its outline beside the refined mask predicted.

    Args:
        samples, max_samples, images, display_size: as MaskOverlayCallback takes them.
    """

    def __init__(self, samples, max_samples=8, images=None, display_size=512):
        self.samples = take_samples(samples, max_samples)
        if images is None and "pixel_values" not in self.samples[0][0]:
            raise ValueError(
                "samples carry image_embeddings, not pixel_values, so there is no image to draw on: "
                "give the callback samples with pixels (build_dataset(lesions, processor, "
                "training=False) without embeddings=; a frozen encoder still embeds them once), or "
                "pass images= (the images in the model frame, one per sample)"
            )
        if images is not None and len(images) < len(self.samples):
            raise ValueError(f"got {len(images)} images for {len(self.samples)} samples")
        self.images = None if images is None else [np.asarray(i, np.uint8) for i in images[: len(self.samples)]]
        self.display_size = display_size
        self._embeddings = None

    def _inputs(self, model):
        """The samples as one batch of model inputs (pixels swapped for embeddings when frozen)."""
        inputs = {key: np.stack([x[key] for x, _ in self.samples]) for key in self.samples[0][0]}
        if "pixel_values" in inputs and "vision_encoder" in model.freeze:
            if self._embeddings is None:
                self._embeddings = _as_numpy(model.image_embeddings(inputs["pixel_values"]))
            inputs["image_embeddings"] = self._embeddings
            del inputs["pixel_values"]
        return inputs

    def _images(self, model):
        if self.images is None:
            self.images = [pixels_to_image(x["pixel_values"], model.processor) for x, _ in self.samples]
        return self.images

    def render(self, model):
        """Predicts the samples and returns their overlays, a list of (D, D, 3) uint8 arrays.

        Samples of a clicks dataset get OVERLAY_CLICKS clicks of the scoring protocol's simulated
        user (keras_sam.common.clicks: the first at the lesion's interior-most pixel, each next on
        the largest error, the previous mask fed back), drawn with the mask they refine."""
        truth = np.stack([np.reshape(y, y.shape[-2:]) for _, y in self.samples]).astype(np.float32)
        inputs = self._inputs(model)
        prompts = [dict(x) for x, _ in self.samples]
        if any(key in inputs for key in CLICK_INPUTS):
            inputs = {key: value for key, value in inputs.items() if key not in CLICK_INPUTS}
            result, prompts = self._clicked(model, inputs, truth)
        else:
            result = postprocess_masks(model(inputs))
        dice = dice_per_sample(truth, result.masks)
        overlays = []
        for index, (x, image) in enumerate(zip(prompts, self._images(model))):
            side = self.display_size
            scale = side / image.shape[0]
            shown = np.asarray(Image.fromarray(image).resize((side, side), Image.BILINEAR))
            points, labels = x.get("input_points"), x.get("input_labels")
            if points is not None:
                points = np.reshape(points, (-1, 2))
                labels = np.ones(len(points)) if labels is None else np.ravel(labels)
                points, labels = points[labels != NO_CLICK] * scale, labels[labels != NO_CLICK]
            clicks = f"  after {x['clicks']} clicks" if "clicks" in x else ("  refined" if "input_masks" in x else "")
            overlays.append(render_overlay(
                shown,
                predicted=_upsample(result.masks[index], side),
                truth=_upsample(truth[index] > 0.5, side),
                box=None if "input_boxes" not in x else np.ravel(x["input_boxes"])[:4] * scale,
                points=points, labels=labels,
                text=f"Dice {dice[index]:.3f}  predicted IoU {result.scores[index]:.3f}{clicks}",
                # A sample with a previous mask (corrective clicks): its outline beside the refined one.
                previous=None if "input_masks" not in x else _upsample(
                    np.reshape(x["input_masks"], x["input_masks"].shape[-2:]) > 0, side),
            ))
        return overlays

    def _clicked(self, model, inputs, truth):
        """OVERLAY_CLICKS simulated clicks per sample on the logits grid; returns the last
        prediction and each sample's prompts (its clicks and the mask they refined)."""
        grid = truth.shape[-1]
        to_model = input_size(model.processor) / grid
        clicks = [[first_click(mask > 0.5) or Click(grid / 2, grid / 2, NO_CLICK)] for mask in truth]
        fed = None
        for count in range(OVERLAY_CLICKS):
            if count:
                fed = result.logits
                for row, mask, predicted in zip(clicks, truth, result.masks):
                    row.append(next_click(mask > 0.5, predicted) or Click(0.0, 0.0, NO_CLICK))
            points = np.array([[(c.x, c.y) for c in row] for row in clicks], np.float32) * to_model
            labels = np.array([[c.label for c in row] for row in clicks], np.int32)
            step = dict(inputs, input_points=points, input_labels=labels)
            if fed is not None:
                step["input_masks"] = fed
            result = postprocess_masks(model(step))
        prompts = [{"input_points": points[row], "input_labels": labels[row], "clicks": OVERLAY_CLICKS,
                    **({"input_masks": fed[row]} if fed is not None else {})} for row in range(len(truth))]
        return result, prompts


def _upsample(mask, side):
    return np.asarray(Image.fromarray(np.asarray(mask, np.uint8) * 255).resize(
        (side, side), Image.NEAREST)) > 127


class OverlayWriter:
    """Writes overlays as TensorBoard images (`overlays/sample_K`, `overlays/all`) and PNG grids.

    The file writer is created at the first write, as Keras's TensorBoard callback does.
    """

    def __init__(self, log_dir, run="validation", png_dir=None):
        self.directory = os.path.join(os.fspath(log_dir), run)
        self.png_dir = png_dir
        self._writer = None

    def write(self, overlays, epoch):
        import tensorflow as tf  # TensorBoard's writer; loaded only when a callback writes

        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.directory)
        with self._writer.as_default():
            for index, overlay in enumerate(overlays):
                tf.summary.image(f"overlays/sample_{index}", overlay[None], step=epoch)
            tf.summary.image("overlays/all", tile(overlays)[None], step=epoch)
        self._writer.flush()
        if self.png_dir:
            os.makedirs(self.png_dir, exist_ok=True)
            Image.fromarray(tile(overlays)).save(os.path.join(self.png_dir, f"epoch_{epoch + 1:03d}.png"))

    def close(self):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class OverlayCallbackMixin:
    """The body of both families' MaskOverlayCallback: `class X(OverlayCallbackMixin, Callback)`."""

    def __init__(self, samples, log_dir="logs", *, every_n_epochs=1, max_samples=8, images=None,
                 run="validation", png_dir=None, display_size=512):
        super().__init__()
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be at least 1; got {every_n_epochs}")
        self.renderer = OverlayRenderer(samples, max_samples, images, display_size)
        self.writer = OverlayWriter(log_dir, run, png_dir)
        self.every_n_epochs = every_n_epochs

    @property
    def samples(self):
        return self.renderer.samples

    def render(self, model=None):
        """Predicts the samples and returns their overlays, a list of (D, D, 3) uint8 arrays."""
        return self.renderer.render(model or self.model)

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_n_epochs == 0:
            self.writer.write(self.render(), epoch)

    def on_train_end(self, logs=None):
        self.writer.close()
