"""SamSegmenter: a tf-keras model over transformers' TFSamModel that fine-tunes with compile() and fit()."""

import collections
from collections.abc import Mapping

import tensorflow as tf
import tf_keras as keras
from transformers import SamConfig

from keras_sam.callbacks import LearningRateLogger
from keras_sam.configs import mask_grid_of, processor_for_config
from keras_sam.hub import load_tf_sam, require_tf_sam
from keras_sam.keras_checks import reject_keras3
from keras_sam.losses import DiceLoss
from keras_sam.matmul_fix import patch_positional_embedding
from keras_sam.metrics import DiceScore, IoUScore, iou_per_sample
from keras_sam.storage import atomic_directory

COMPONENTS = ("vision_encoder", "prompt_encoder", "mask_decoder", "iou_head")
IMAGE_INPUTS = ("pixel_values", "image_embeddings")
PROMPT_INPUTS = ("input_boxes", "input_points", "input_labels", "input_masks")

SegmentationOutput = collections.namedtuple("SegmentationOutput", ["mask_logits", "iou_scores"])
SegmentationOutput.__doc__ = """What SamSegmenter.segment returns: the model's output dict as a tuple.

mask_logits: (B, M, H, W) low-resolution mask logits (M = 1, or 3 with multimask_output).
iou_scores: (B, M) the model's own estimate of each mask's IoU with the object.
"""


def best_mask_logits(output):
    """In the graph: each sample's mask with the highest predicted IoU.

    Args:
        output: the model's output dict (or a SegmentationOutput).

    Returns:
        (B, H, W) logits. Outside the graph, `keras_sam.postprocessing.postprocess_masks` also
        gives the score and the mask at the image's resolution.
    """
    if not isinstance(output, Mapping):
        output = output._asdict()
    best = tf.argmax(output["iou_scores"], axis=1, output_type=tf.int32)
    return tf.gather(output["mask_logits"], best, axis=1, batch_dims=1)


class SamSegmenter(keras.Model):
    """Segment Anything as a tf-keras model: compile(), fit(), evaluate() and predict() work as usual.

    Inputs are a dict with TFSamModel's argument names. Each row of the batch is one image with one
    prompt set:

    - `pixel_values` (B, 3, S, S) from the SAM processor, or `image_embeddings` (B, C, E, E) from the
      vision encoder, which skips it (fast fine-tuning with a frozen encoder);
    - any of `input_boxes` (B, 4) or (B, 1, 4), `input_points` (B, N, 2) or (B, 1, N, 2) with
      `input_labels` (B, N) or (B, 1, N) (1 inside, 0 outside; all 1 when left out), and
      `input_masks` (B, H, W) or (B, 1, H, W) on the logits grid. Coordinates are in the padded
      model input's pixels, as the processor returns them.

    Calling the model (and `predict`) returns a dict: "mask_logits" (B, M, H, W) on the
    low-resolution grid (256x256 for the released models), M = 1, or 3 with `multimask_output`,
    and "iou_scores" (B, M), the model's estimate of each mask's IoU. `fit` trains exactly what
    `call` returns. `keras_sam.postprocessing.postprocess_masks` turns it into the best mask per
    row, at the image's resolution if asked. Targets for fit/evaluate are binary masks on that
    grid, (B, H, W) or (B, 1, H, W).

    Args:
        sam: a transformers TFSamModel, built or not (its weights keep their own names either way,
            so `save_pretrained` writes what `TFSamModel.from_pretrained` reads back).
        freeze: components whose weights stay fixed in training, any of "vision_encoder",
            "prompt_encoder", "mask_decoder" and "iou_head". Can be changed later via `.freeze`,
            even after compile().
        multimask_output: predict 3 masks per prompt; training then uses the best one per sample
            (lowest loss, as in the SAM paper). Can be changed later; the next step re-traces.
        iou_loss_weight: weight of the IoU head's loss, a mean-squared error between predicted and
            true IoU of each mask; 0 leaves the IoU head untrained (and out of the gradients).
            Can be changed later; the next step re-traces.

    Example:
        >>> from transformers import TFSamModel
        >>> model = SamSegmenter(TFSamModel(tiny_sam_config()))
        >>> model.compile()  # Adam(1e-5), Dice loss, Dice and IoU metrics
        >>> model.fit(dataset, epochs=3)  # doctest: +SKIP
    """

    def __init__(
        self,
        sam,
        *,
        freeze=("vision_encoder", "prompt_encoder"),
        multimask_output=False,
        iou_loss_weight=1.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not isinstance(sam, require_tf_sam()):
            raise TypeError(f"sam must be a transformers TFSamModel; got {type(sam).__name__}")
        if not sam.built:
            # Build under the model's own name so the weights keep their checkpoint names.
            sam.build_in_name_scope()
        self.sam = patch_positional_embedding(sam)
        self._multimask_output = bool(multimask_output)
        self._iou_loss_weight = float(iou_loss_weight)
        self.mask_grid = mask_grid_of(sam.config)
        self._compile_arguments = None
        self.freeze = freeze
        self._iou_loss_tracker = keras.metrics.Mean(name="iou_head_loss")
        self.built = True

    @property
    def multimask_output(self):
        """Whether each prompt gets 3 masks (SAM's default for ambiguous prompts) or 1."""
        return self._multimask_output

    @multimask_output.setter
    def multimask_output(self, value):
        self._multimask_output = bool(value)
        self.train_function = self.test_function = self.predict_function = None  # re-trace

    @property
    def iou_loss_weight(self):
        """Weight of the IoU head's mean-squared error in the training loss."""
        return self._iou_loss_weight

    @iou_loss_weight.setter
    def iou_loss_weight(self, value):
        self._iou_loss_weight = float(value)
        self.train_function = self.test_function = self.predict_function = None  # re-trace

    # ----------------------------------------------------------------- loading and saving
    @classmethod
    def from_pretrained(cls, name_or_path, *, freeze=("vision_encoder", "prompt_encoder"),
                        multimask_output=False, iou_loss_weight=1.0, **kwargs):
        """Loads SAM from a hub id (e.g. "facebook/sam-vit-base") or a local directory.

        Args:
            name_or_path: hub id or a directory written by `save_pretrained`.
            freeze, multimask_output, iou_loss_weight: as for the constructor.
            **kwargs: passed on to `TFSamModel.from_pretrained`.

        Raises:
            keras_sam.hub.ModelLoadError: not found, or the hub could not be reached.
        """
        sam = load_tf_sam(name_or_path, **kwargs)
        return cls(sam, freeze=freeze, multimask_output=multimask_output,
                   iou_loss_weight=iou_loss_weight)

    def save_pretrained(self, save_directory):
        """Writes the model and its matching processor config to `save_directory`.

        `TFSamModel.from_pretrained(save_directory)` and `SamProcessor.from_pretrained(...)` read it
        back. The directory is written under a temporary name and renamed into place, so a failure
        never leaves a half-written model.
        """
        with atomic_directory(save_directory) as staging:
            self.sam.save_pretrained(staging)
            processor_for_config(self.sam.config).save_pretrained(staging)

    def get_config(self):
        return {
            "sam_config": self.sam.config.to_dict(),
            "freeze": list(self.freeze),
            "multimask_output": self.multimask_output,
            "iou_loss_weight": self.iou_loss_weight,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        sam = require_tf_sam()(SamConfig.from_dict(config.pop("sam_config")))
        return cls(sam, **config)

    # ----------------------------------------------------------------- freezing
    @property
    def freeze(self):
        """Names of the frozen components; assign a new list to change it, even after compile."""
        return self._frozen

    @freeze.setter
    def freeze(self, names):
        names = (names,) if isinstance(names, str) else tuple(names or ())
        unknown = [name for name in names if name not in COMPONENTS]
        if unknown:
            raise ValueError(
                f"cannot freeze {', '.join(map(repr, unknown))}: SAM's components are "
                f"{', '.join(COMPONENTS)}"
            )
        for name in COMPONENTS:
            self._component(name).trainable = name not in names
        if "iou_head" not in names and "mask_decoder" in names:
            self._component("iou_head").trainable = False
        self._frozen = names
        # Keras trains what was trainable at compile(), as for any model: compile again with the
        # same arguments (the optimizer keeps its state) so the change takes effect.
        if self._compile_arguments is not None:
            self.compile(**self._compile_arguments)

    def _component(self, name):
        if name == "iou_head":
            return self.sam.mask_decoder.iou_prediction_head
        return getattr(self.sam, name)

    # ----------------------------------------------------------------- forward
    def _sam_arguments(self, inputs):
        if not isinstance(inputs, Mapping):
            raise TypeError(
                "SamSegmenter inputs must be a dict with keys among "
                f"{', '.join(IMAGE_INPUTS + PROMPT_INPUTS)}; got {type(inputs).__name__}"
            )
        unknown = sorted(set(inputs) - set(IMAGE_INPUTS + PROMPT_INPUTS))
        if unknown:
            raise ValueError(
                f"unknown input key(s) {', '.join(map(repr, unknown))}; SamSegmenter takes "
                f"{', '.join(IMAGE_INPUTS + PROMPT_INPUTS)}"
            )
        images = [key for key in IMAGE_INPUTS if inputs.get(key) is not None]
        if len(images) != 1:
            raise ValueError(
                "give exactly one of pixel_values and image_embeddings; got "
                f"{', '.join(images) if images else 'neither'}"
            )
        if not any(inputs.get(key) is not None for key in ("input_boxes", "input_points", "input_masks")):
            raise ValueError(
                "no prompt: give input_boxes, input_points (with input_labels) or input_masks"
            )
        args = {"pixel_values": None, "image_embeddings": None}
        for key in IMAGE_INPUTS:
            if inputs.get(key) is not None:
                args[key] = _with_rank(key, tf.cast(inputs[key], self.compute_dtype), (4,), None)
        boxes, points, labels, masks = (inputs.get(key) for key in PROMPT_INPUTS)
        if boxes is not None:
            args["input_boxes"] = _one_prompt_set("input_boxes", tf.cast(boxes, tf.float32), 2, 4)
        if points is not None:
            args["input_points"] = _one_prompt_set("input_points", tf.cast(points, tf.float32), 3, 2)
            if labels is not None:
                args["input_labels"] = _one_prompt_set("input_labels", tf.cast(labels, tf.int32), 2, None)
        elif labels is not None:
            raise ValueError("input_labels given without input_points")
        if masks is not None:
            masks = _one_prompt_set("input_masks", tf.cast(masks, tf.float32), 3, None)
            if tuple(masks.shape[2:]) != (self.mask_grid, self.mask_grid):
                raise ValueError(
                    f"input_masks must be on the {self.mask_grid}x{self.mask_grid} logits grid; "
                    f"got shape {tuple(masks.shape)}"
                )
            args["input_masks"] = masks
        return args

    @tf.autograph.experimental.do_not_convert
    def call(self, inputs, training=None):
        """Predicts masks and the model's estimate of their IoU.

        Args:
            inputs: the input dict (see the class docstring).

        Returns:
            {"mask_logits": (B, M, H, W), "iou_scores": (B, M)}.
        """
        # Not converted by autograph: TFSamModel's Python control flow is on static shapes only,
        # and converting transformers' code took most of a 20 s first step.
        output = self.sam(
            **self._sam_arguments(inputs),
            multimask_output=self.multimask_output,
            return_dict=True,
            training=bool(training),
        )
        # TFSamModel's reshapes can lose the static mask count in graph mode: restore it.
        num_masks = 3 if self.multimask_output else 1
        logits = tf.reshape(output.pred_masks[:, 0], (-1, num_masks, self.mask_grid, self.mask_grid))
        return {"mask_logits": logits, "iou_scores": tf.reshape(output.iou_scores[:, 0], (-1, num_masks))}

    def segment(self, inputs, training=False):
        """`self(inputs)` as a SegmentationOutput(mask_logits, iou_scores) tuple."""
        return SegmentationOutput(**self(inputs, training=training))

    @property
    def processor(self):
        """The SamProcessor whose resizing and padding match this model's configuration."""
        return processor_for_config(self.sam.config)

    def image_embeddings(self, pixel_values):
        """Runs the vision encoder: (B, 3, S, S) pixel values -> (B, C, E, E) image embeddings."""
        return self._encode(tf.cast(pixel_values, self.compute_dtype))

    @tf.function(reduce_retracing=True, autograph=False)
    def _encode(self, pixel_values):
        # A traced graph: run eagerly, the ViT's many small ops made embedding ~1.5x slower.
        return self.sam.get_image_embeddings(pixel_values)

    # ----------------------------------------------------------------- training
    def compile(self, optimizer="auto", loss="auto", metrics="auto", **kwargs):
        """Configures training; each argument left out keeps keras-sam's default.

        Args:
            optimizer: "auto" is Adam with learning rate 1e-5.
            loss: "auto" is DiceLoss() on the logits.
            metrics: "auto" is [DiceScore(), IoUScore()], both on the mask the model would return.
            **kwargs: passed on to `keras.Model.compile` (e.g. jit_compile, steps_per_execution).
        """
        reject_keras3("SamSegmenter.compile", optimizer=optimizer, loss=loss, metrics=metrics)
        if isinstance(optimizer, str) and optimizer == "auto":
            # The fused (legacy) Adam: same update rule, but tracing its step for SAM's ~120
            # decoder variables takes a third of the time the newer optimizer's does.
            optimizer = keras.optimizers.legacy.Adam(learning_rate=1e-5)
        if isinstance(loss, str) and loss == "auto":
            loss = DiceLoss()
        if isinstance(metrics, str) and metrics == "auto":
            metrics = [DiceScore(), IoUScore()]
        self._compile_arguments = dict(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)

    def fit(self, *args, **kwargs):
        """`keras.Model.fit`; the epoch logs also hold the optimizer's `learning_rate`."""
        callbacks = kwargs.get("callbacks") or []
        reject_keras3("SamSegmenter.fit", callbacks=callbacks)
        if isinstance(callbacks, (list, tuple)) and not any(
                isinstance(callback, LearningRateLogger) for callback in callbacks):
            # First, so TensorBoard, CSVLogger and the rest see it in the same epoch's logs.
            kwargs["callbacks"] = [LearningRateLogger(), *callbacks]
        return super().fit(*args, **kwargs)

    def evaluate(self, *args, **kwargs):
        reject_keras3("SamSegmenter.evaluate", callbacks=kwargs.get("callbacks") or [])
        return super().evaluate(*args, **kwargs)

    @property
    def metrics(self):
        metrics = super().metrics
        return metrics + [self._iou_loss_tracker] if self.compiled_loss is not None else metrics

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(x, y, y_pred, sample_weight)
        self.optimizer.minimize(loss, self.trainable_variables, tape=tape)
        return self.compute_metrics(x, y, y_pred, sample_weight)

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        y_pred = self(x, training=False)
        self.compute_loss(x, y, y_pred, sample_weight)
        return self.compute_metrics(x, y, y_pred, sample_weight)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None):
        """The compiled loss on the trained mask, plus the IoU head's mean-squared error.

        With several masks per prompt the trained mask is, per sample, the one with the lowest
        loss. The IoU head learns each mask's true IoU (of the mask thresholded at logit 0).
        """
        y = self._targets(y)
        logits, iou_scores = y_pred["mask_logits"], y_pred["iou_scores"]
        if logits.shape[1] == 1:
            trained = logits[:, 0]
        else:
            per_mask = tf.stack(
                [self._per_sample_loss(y, logits[:, m]) for m in range(logits.shape[1])], axis=1
            )
            best = tf.argmin(per_mask, axis=1, output_type=tf.int32)
            trained = tf.gather(logits, best, axis=1, batch_dims=1)
        loss = self.compiled_loss(y, trained, sample_weight, regularization_losses=self.losses)
        if self.iou_loss_weight and self._component("iou_head").trainable:
            true_iou = tf.stack(
                [iou_per_sample(y, logits[:, m] > 0) for m in range(logits.shape[1])], axis=1
            )
            squared_error = tf.reduce_mean(
                tf.square(tf.cast(iou_scores, tf.float32) - tf.stop_gradient(true_iou)), axis=1
            )
            iou_loss = _weighted_mean(squared_error, sample_weight)
            self._iou_loss_tracker.update_state(iou_loss)
            # Scaled like Keras scales the compiled loss, so that gradients summed over replicas
            # average over the global batch.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            loss += self.iou_loss_weight * iou_loss / replicas
        return loss

    def compute_metrics(self, x, y, y_pred, sample_weight):
        """Metrics on the mask the model would return (highest predicted IoU)."""
        return super().compute_metrics(x, self._targets(y), best_mask_logits(y_pred), sample_weight)

    def _per_sample_loss(self, y, logits):
        loss = self.loss
        if isinstance(loss, str):
            loss = keras.losses.get(loss)
        values = loss.call(y, logits) if isinstance(loss, keras.losses.Loss) else loss(y, logits)
        values = tf.convert_to_tensor(values)
        return tf.reduce_mean(tf.reshape(values, (tf.shape(y)[0], -1)), axis=1)

    def _targets(self, y):
        """Checks targets are binary masks on the logits grid; returns them as (B, H, W) float32."""
        if y is None:
            raise ValueError("fit/evaluate need targets: binary masks on the logits grid")
        y = tf.convert_to_tensor(y)
        grid = (self.mask_grid, self.mask_grid)
        shape = tuple(y.shape)
        if len(shape) == 4 and shape[1] == 1:
            y = y[:, 0]
        elif len(shape) != 3:
            raise ValueError(
                f"targets must be masks of shape (B, {grid[0]}, {grid[1]}) or "
                f"(B, 1, {grid[0]}, {grid[1]}); got {shape}"
            )
        if tuple(y.shape[1:]) != grid:
            raise ValueError(
                f"targets must be on the model's {grid[0]}x{grid[1]} logits grid; got shape {shape}. "
                "Resize and pad them like the image (SamProcessor's segmentation_maps does)."
            )
        y = tf.cast(y, tf.float32)
        tf.debugging.Assert(
            tf.reduce_all((y == 0.0) | (y == 1.0)),
            ["targets must be binary masks with values 0 and 1; threshold them first"],
        )
        return y


def _with_rank(name, tensor, ranks, last_dim):
    if tensor.shape.rank not in ranks or (last_dim and tensor.shape[-1] != last_dim):
        want = " or ".join(f"rank {rank}" for rank in ranks)
        raise ValueError(f"{name} must have {want}; got shape {tuple(tensor.shape)}")
    return tensor


def _one_prompt_set(name, tensor, rank, last_dim):
    """Adds the prompt-set axis (B, ...) -> (B, 1, ...) and checks there is just one set a row."""
    if tensor.shape.rank == rank:
        tensor = tf.expand_dims(tensor, 1)
    if tensor.shape.rank != rank + 1 or (last_dim and tensor.shape[-1] != last_dim):
        expected = {"input_boxes": "(B, 4) or (B, 1, 4)", "input_points": "(B, N, 2) or (B, 1, N, 2)",
                    "input_labels": "(B, N) or (B, 1, N)",
                    "input_masks": "(B, H, W) or (B, 1, H, W)"}[name]
        raise ValueError(f"{name} must have shape {expected}; got {tuple(tensor.shape)}")
    if tensor.shape[1] not in (None, 1):
        raise ValueError(
            f"{name} holds {tensor.shape[1]} prompt sets per row; SamSegmenter takes one per row. "
            "Put several prompts on one image in several rows (they may share one image embedding)."
        )
    return tensor


def _weighted_mean(values, sample_weight):
    if sample_weight is None:
        return tf.reduce_mean(values)
    weights = tf.reshape(tf.cast(sample_weight, values.dtype), (-1,))
    return tf.math.divide_no_nan(tf.reduce_sum(values * weights), tf.reduce_sum(weights))
