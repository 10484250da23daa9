"""tf-keras callbacks: mask overlays in TensorBoard, the learning rate in the logs, a NaN guard."""

import numpy as np
import tf_keras as keras

from keras_sam.common.overlays import OverlayCallbackMixin

class MaskOverlayCallback(OverlayCallbackMixin, keras.callbacks.Callback):
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


def current_learning_rate(optimizer):
    """The learning rate `optimizer` applies at its current step (a schedule evaluated there)."""
    rate = optimizer.learning_rate
    if isinstance(rate, keras.optimizers.schedules.LearningRateSchedule):
        rate = rate(optimizer.iterations)
    return float(keras.backend.get_value(rate))


class LearningRateLogger(keras.callbacks.Callback):
    """Adds the optimizer's current learning rate to each epoch's logs as `learning_rate`.

    Callbacks after it (TensorBoard as `epoch_learning_rate`, CSVLogger, History) record it, so
    put it first: `model.fit(..., callbacks=[LearningRateLogger(), TensorBoard(log_dir)])`.
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
