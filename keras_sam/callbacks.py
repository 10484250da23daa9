"""tf-keras callbacks: mask overlays in TensorBoard, the learning rate in the logs, a NaN guard."""

import os
from collections.abc import Mapping

import numpy as np
import tensorflow as tf
import tf_keras as keras
from PIL import Image

from keras_sam.configs import processor_for_config
from keras_sam.metrics import dice_per_sample
from keras_sam.postprocessing import postprocess_masks
from keras_sam.preprocessing import pixels_to_image
from keras_sam.visualization import render_overlay, tile

IMAGE_INPUTS = ("pixel_values", "image_embeddings")


def _as_numpy(value):
    return value.numpy() if hasattr(value, "numpy") else np.asarray(value)


def _single_samples(element):
    """One (x, y[, w]) element of a dataset -> a list of unbatched (x, y) samples."""
    x, y = element[0], element[1]
    x = {key: _as_numpy(value) for key, value in x.items()}
    y = _as_numpy(y)
    image = next((x[key] for key in IMAGE_INPUTS if key in x), None)
    if image is None or image.ndim == 3:  # already one sample
        return [(x, y)]
    return [({key: value[row] for key, value in x.items()}, y[row]) for row in range(len(image))]


def take_samples(samples, max_samples):
    """The first `max_samples` single (x, y) samples of anything `fit` takes as data.

    Args:
        samples: a list of (x, y) samples, or batches or samples from a tf.data.Dataset, a
            keras.utils.Sequence, or any iterable of (x, y) or (x, y, sample_weight).
        max_samples: how many to take.
    """
    if isinstance(samples, keras.utils.Sequence):
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


class MaskOverlayCallback(keras.callbacks.Callback):
    """Writes overlays of predicted masks, ground truth and prompts to TensorBoard as training goes.

    At the end of every `every_n_epochs`-th epoch the model predicts the fixed samples and writes,
    under `log_dir/run` (the Keras TensorBoard callback's validation run by default, so scalars and
    overlays show together), one image per sample tagged `overlays/sample_K`, and all of them in
    one grid tagged `overlays/all`. Each shows the image in the model's (resized, padded) frame,
    the predicted mask in blue, the true mask's outline in yellow, the prompt box in green, the
    points (green inside, red outside), and the sample's Dice and the model's predicted IoU.

    Samples carrying `pixel_values` are drawn from their pixels; while the vision encoder is
    frozen their image embeddings are computed once, so each epoch costs only the mask decoder.

    Args:
        samples: anything `fit` takes as data (tf.data.Dataset, keras.utils.Sequence, a generator,
            (x, y) arrays, or a list of (x, y) samples; batched or not, targets (H, W) or
            (1, H, W) per sample); the first `max_samples` samples are used.
        log_dir: the TensorBoard log directory (the one given to keras.callbacks.TensorBoard).
        every_n_epochs: write every n-th epoch.
        max_samples: how many samples to draw.
        images: the (S, S, 3) uint8 images in the model frame, one per sample; needed when the
            samples carry image_embeddings instead of pixel_values.
        run: sub-directory of `log_dir` to write to.
        png_dir: also save each epoch's overlays there as PNG files (for people without TensorBoard).
        display_size: side of each overlay in pixels.

    Example:
        >>> callback = MaskOverlayCallback(val_dataset, log_dir="logs")  # doctest: +SKIP
        >>> model.fit(train, validation_data=val_dataset, callbacks=[
        ...     keras.callbacks.TensorBoard("logs"), callback])  # doctest: +SKIP
    """

    def __init__(self, samples, log_dir="logs", *, every_n_epochs=1, max_samples=8, images=None,
                 run="validation", png_dir=None, display_size=512):
        super().__init__()
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be at least 1; got {every_n_epochs}")
        self.samples = take_samples(samples, max_samples)
        if images is None and "pixel_values" not in self.samples[0][0]:
            raise ValueError(
                "samples carry image_embeddings, not pixel_values: pass images= (the images "
                "in the model frame, one per sample) so the overlays have something to show"
            )
        if images is not None and len(images) < len(self.samples):
            raise ValueError(f"got {len(images)} images for {len(self.samples)} samples")
        self.images = None if images is None else [np.asarray(i, np.uint8) for i in images[: len(self.samples)]]
        self.log_dir = os.fspath(log_dir)
        self.run = run
        self.every_n_epochs = every_n_epochs
        self.png_dir = png_dir
        self.display_size = display_size
        self._writer = None
        self._embeddings = None

    def _get_writer(self):
        if self._writer is None:  # created lazily, as Keras's TensorBoard callback does
            self._writer = tf.summary.create_file_writer(os.path.join(self.log_dir, self.run))
        return self._writer

    def _inputs(self, model):
        """The samples as one batch of model inputs (pixels swapped for embeddings when frozen)."""
        inputs = {key: np.stack([x[key] for x, _ in self.samples]) for key in self.samples[0][0]}
        if "pixel_values" in inputs and "vision_encoder" in getattr(model, "freeze", ()):
            if self._embeddings is None:
                self._embeddings = model.image_embeddings(inputs["pixel_values"]).numpy()
            inputs["image_embeddings"] = self._embeddings
            del inputs["pixel_values"]
        return inputs

    def _images(self, model):
        if self.images is None:
            processor = processor_for_config(model.sam.config)
            self.images = [pixels_to_image(x["pixel_values"], processor) for x, _ in self.samples]
        return self.images

    def render(self, model=None):
        """Predicts the samples and returns their overlays, a list of (D, D, 3) uint8 arrays."""
        model = model or self.model
        truth = np.stack([np.reshape(y, y.shape[-2:]) for _, y in self.samples]).astype(np.float32)
        result = postprocess_masks(model(self._inputs(model)))
        dice = dice_per_sample(truth, result.masks)
        overlays = []
        for index, ((x, _), image) in enumerate(zip(self.samples, self._images(model))):
            side = self.display_size
            scale = side / image.shape[0]
            shown = np.asarray(Image.fromarray(image).resize((side, side), Image.BILINEAR))
            overlays.append(render_overlay(
                shown,
                predicted=_upsample(result.masks[index], side),
                truth=_upsample(truth[index] > 0.5, side),
                box=None if "input_boxes" not in x else np.ravel(x["input_boxes"])[:4] * scale,
                points=None if "input_points" not in x else np.reshape(x["input_points"], (-1, 2)) * scale,
                labels=x.get("input_labels"),
                text=f"Dice {dice[index]:.3f}  predicted IoU {result.scores[index]:.3f}",
            ))
        return overlays

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_n_epochs:
            return
        overlays = self.render()
        writer = self._get_writer()
        with writer.as_default():
            for index, overlay in enumerate(overlays):
                tf.summary.image(f"overlays/sample_{index}", overlay[None], step=epoch)
            tf.summary.image("overlays/all", tile(overlays)[None], step=epoch)
        writer.flush()
        if self.png_dir:
            os.makedirs(self.png_dir, exist_ok=True)
            Image.fromarray(tile(overlays)).save(
                os.path.join(self.png_dir, f"epoch_{epoch + 1:03d}.png"))

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _upsample(mask, side):
    return np.asarray(Image.fromarray(np.asarray(mask, np.uint8) * 255).resize(
        (side, side), Image.NEAREST)) > 127


def current_learning_rate(optimizer):
    """The learning rate `optimizer` applies at its current step (a schedule evaluated there)."""
    rate = optimizer.learning_rate
    if isinstance(rate, keras.optimizers.schedules.LearningRateSchedule):
        rate = rate(optimizer.iterations)
    return float(keras.backend.get_value(rate))


class LearningRateLogger(keras.callbacks.Callback):
    """Adds the optimizer's current learning rate to each epoch's logs as `learning_rate`.

    Callbacks after it (TensorBoard as `epoch_learning_rate`, CSVLogger, History) record it.
    `SamSegmenter.fit` puts one first in `callbacks` unless you pass your own.
    """

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = current_learning_rate(self.model.optimizer)


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss; the message says at which epoch and step."""


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stops `fit` at the first NaN or infinite loss with an error naming the epoch and step.

    It raises at once, before the epoch ends, so callbacks that save at epoch end (ModelCheckpoint,
    BackupAndRestore) keep their last good state: put it anywhere in `callbacks=[...]`.

    Raises:
        NonFiniteLossError: from `fit`.
    """

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss):
            raise NonFiniteLossError(
                f"the training loss became {float(loss)} at epoch {getattr(self, '_epoch', 0) + 1}, "
                f"step {batch + 1}; training stopped (try a lower learning rate)"
            )
