"""MaskOverlayCallback: every few epochs, draw what the model predicts on fixed samples into TensorBoard."""

import os

import numpy as np
import tensorflow as tf
import tf_keras as keras
from PIL import Image

from keras_sam.metrics import dice_per_sample
from keras_sam.segmenter import best_mask_logits
from keras_sam.visualization import render_overlay, tile

# SAM's processor normalises with ImageNet's mean and standard deviation.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _take_samples(samples, max_samples):
    """A list of (x, y) single samples from a list of pairs or a (batched) tf.data.Dataset."""
    if isinstance(samples, tf.data.Dataset):
        _, target_spec = samples.element_spec
        if target_spec.shape.rank == 3:  # batched (B, G, G) targets
            samples = samples.unbatch()
        samples = [
            ({key: value.numpy() for key, value in x.items()}, y.numpy())
            for x, y in samples.take(max_samples)
        ]
    samples = list(samples)[:max_samples]
    if not samples:
        raise ValueError("MaskOverlayCallback needs at least one (x, y) sample")
    return samples


def pixels_to_image(pixel_values, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """Undoes SAM's normalisation: (3, S, S) pixel values -> (S, S, 3) uint8 image."""
    image = np.transpose(np.asarray(pixel_values, np.float32), (1, 2, 0))
    image = (image * np.asarray(std) + np.asarray(mean)) * 255.0
    return image.clip(0, 255).astype(np.uint8)


class MaskOverlayCallback(keras.callbacks.Callback):
    """Writes overlays of predicted masks, ground truth and prompts to TensorBoard as training goes.

    At the end of every `every_n_epochs`-th epoch the model predicts the fixed samples and writes,
    under `log_dir/run` (the Keras TensorBoard callback's validation run by default, so scalars and
    overlays show together), one image per sample tagged `overlays/sample_K`, and all of them in
    one grid tagged `overlays/all`. Each shows the image in the model's (resized, padded) frame,
    the predicted mask in blue, the true mask's outline in yellow, the prompt box in green, the
    points (green inside, red outside), and the sample's Dice and the model's predicted IoU.

    Args:
        samples: a list of (x, y) single samples (x a dict of unbatched SamSegmenter inputs, y the
            (G, G) mask), or a tf.data.Dataset, from which the first `max_samples` are taken.
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
        self.samples = _take_samples(samples, max_samples)
        if images is None:
            if "pixel_values" not in self.samples[0][0]:
                raise ValueError(
                    "samples carry image_embeddings, not pixel_values: pass images= (the images "
                    "in the model frame, one per sample) so the overlays have something to show"
                )
            images = [pixels_to_image(x["pixel_values"]) for x, _ in self.samples]
        if len(images) < len(self.samples):
            raise ValueError(f"got {len(images)} images for {len(self.samples)} samples")
        self.images = [np.asarray(image, np.uint8) for image in images[: len(self.samples)]]
        self.log_dir = os.fspath(log_dir)
        self.run = run
        self.every_n_epochs = every_n_epochs
        self.png_dir = png_dir
        self.display_size = display_size
        self._writer = None

    def _get_writer(self):
        if self._writer is None:  # created lazily, as Keras's TensorBoard callback does
            self._writer = tf.summary.create_file_writer(os.path.join(self.log_dir, self.run))
        return self._writer

    def render(self, model=None):
        """Predicts the samples and returns their overlays, a list of (D, D, 3) uint8 arrays."""
        model = model or self.model
        inputs = {key: np.stack([x[key] for x, _ in self.samples]) for key in self.samples[0][0]}
        truth = np.stack([y for _, y in self.samples]).astype(np.float32)
        output = model.segment(inputs)
        logits = best_mask_logits(output).numpy()
        best_iou = tf.reduce_max(output.iou_scores, axis=1).numpy()
        dice = dice_per_sample(truth, logits > 0).numpy()
        overlays = []
        for index, (x, _) in enumerate(self.samples):
            image = self.images[index]
            side = self.display_size
            scale = side / image.shape[0]
            shown = np.asarray(Image.fromarray(image).resize((side, side), Image.BILINEAR))
            overlays.append(render_overlay(
                shown,
                predicted=_upsample(logits[index] > 0, side),
                truth=_upsample(truth[index] > 0.5, side),
                box=None if "input_boxes" not in x else np.ravel(x["input_boxes"])[:4] * scale,
                points=None if "input_points" not in x else np.reshape(x["input_points"], (-1, 2)) * scale,
                labels=x.get("input_labels"),
                text=f"Dice {dice[index]:.3f}  predicted IoU {best_iou[index]:.3f}",
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
