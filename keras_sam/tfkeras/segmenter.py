"""SamSegmenter: a tf-keras model over transformers' TFSamModel that fine-tunes with compile() and fit()."""

import collections
import contextlib
import warnings
from collections.abc import Mapping

import tensorflow as tf
import tensorflow.experimental.numpy as tnp
import tf_keras as keras
from transformers import SamConfig

from keras_sam.common import training_objective
from keras_sam.common.clicks import NO_CLICK, error_clicks
from keras_sam.common.adaptation_options import (DEFAULT_ADAPTER_RATIO, DEFAULT_LORA_RANK, DEFAULT_LORA_TARGETS,
                                                 check_method)
from keras_sam.common.training_options import TrainingOptions, auto
from keras_sam.common.configs import mask_grid_of, processor_for_config
from keras_sam.common.hub import ModelLoadError, load_tf_sam, require_tf_sam
from keras_sam.tfkeras.input_checks import assert_binary, with_checked_shape
from keras_sam.tfkeras.keras3_guard import reject_keras3
from keras_sam.tfkeras.losses import OPS, DiceLoss, MaskLoss, per_sample_arrays
from keras_sam.common.metric_inputs import on_masks
from keras_sam.tfkeras.metrics import DiceScore, IoUScore, OnProbabilities
from keras_sam.tfkeras.optimizers import FusedAdam
from keras_sam.common.storage import atomic_directory
from keras_sam.tfkeras.tf_sam_patches import patch_tf_sam
from keras_sam.common.trained_prompt import record_trained_prompt, trained_prompt_of

IMAGE_INPUTS = ("pixel_values", "image_embeddings")
PROMPT_DTYPES = {"input_boxes": tf.float32, "input_points": tf.float32, "input_labels": tf.int32,
                 "input_masks": tf.float32}
PROMPT_INPUTS = tuple(PROMPT_DTYPES)
CLICK_INPUTS = ("click_rounds", "click_seed", "click_extent")
# The training clicker's ops in this family: TensorFlow's NumPy API with TensorFlow's cast.
CLICK_OPS = training_objective.NamespaceWith(tnp, cast=tf.cast)
SEVERAL_PROMPT_SETS = (
    "{name} holds {count} prompt sets per row; SamSegmenter takes one per row. Put several prompts "
    "on one image in several rows (they may share one image embedding).")

SegmentationOutput = collections.namedtuple("SegmentationOutput", ["mask_logits", "iou_scores"])
SegmentationOutput.__doc__ = """The model's output dict as a tuple (what the deprecated `segment(inputs)` returns).

mask_logits: (B, M, H, W) low-resolution mask logits (M = 1, or 3 with multimask_output).
iou_scores: (B, M) the model's own estimate of each mask's IoU with the object.
"""


def best_mask_logits(output):
    """In the graph: each sample's mask with the highest predicted IoU.

    Args:
        output: the model's output dict (or a SegmentationOutput).

    Returns:
        (B, H, W) logits. Outside the graph, `keras_sam.common.postprocessing.postprocess_masks` also
        gives the score and the mask at the image's resolution.
    """
    if not isinstance(output, Mapping):
        output = output._asdict()
    best = tf.argmax(output["iou_scores"], axis=1, output_type=tf.int32)
    return tf.gather(output["mask_logits"], best, axis=1, batch_dims=1)


@keras.saving.register_keras_serializable(package="keras_sam")
class SamSegmenter(TrainingOptions, keras.Model):
    """Segment Anything as a tf-keras model: compile(), fit(), evaluate() and predict() work as usual.

    Inputs are a dict with TFSamModel's argument names. Each row of the batch is one image with one
    prompt set:

    - `pixel_values` (B, 3, S, S) from the SAM processor, or `image_embeddings` (B, C, E, E) from the
      vision encoder, which skips it (fast fine-tuning with a frozen encoder);
    - any of `input_boxes` (B, 4) or (B, 1, 4), `input_points` (B, N, 2) or (B, 1, N, 2) with
      `input_labels` (B, N) or (B, 1, N) (1 inside, 0 outside; all 1 when left out), and
      `input_masks` (B, H, W) or (B, 1, H, W) on the logits grid. Coordinates are in the padded
      model input's pixels, as the processor returns them. None of them is SAM's empty prompt,
      what a model fine-tuned with `PromptOptions(kind="none")` takes (`trained_prompt`).

    Calling the model (and `predict`) returns a dict: "mask_logits" (B, M, H, W) on the
    low-resolution grid (256x256 for the released models), M = 1, or 3 with `multimask_output`,
    and "iou_scores" (B, M), the model's estimate of each mask's IoU. `fit` trains exactly what
    `call` returns. `keras_sam.common.postprocessing.postprocess_masks` turns it into the best mask per
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

    # The family's side of the shared training objective (TrainingOptions._per_sample_loss).
    _objective_ops, _keras_module, _mask_loss_class = OPS, keras, MaskLoss
    _per_sample_arrays = staticmethod(per_sample_arrays)

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
        self.sam = patch_tf_sam(sam)
        self._multimask_output = bool(multimask_output)
        self._iou_loss_weight = float(iou_loss_weight)
        self.mask_grid = mask_grid_of(sam.config)
        self._compile_arguments = None
        self._class_weights = None
        self.freeze = freeze
        self._iou_loss_tracker = keras.metrics.Mean(name="iou_head_loss")
        self.adaptation = None  # keras_sam.tfkeras.adaptation.EncoderAdaptation, once adapt() adds one
        self.built = True

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
            keras_sam.common.hub.ModelLoadError: not found, or the hub could not be reached.
        """
        sam = load_tf_sam(name_or_path, **kwargs)
        return cls(sam, freeze=freeze, multimask_output=multimask_output,
                   iou_loss_weight=iou_loss_weight)

    def save_pretrained(self, save_directory):
        """Writes the model and its matching processor config to `save_directory`.

        `TFSamModel.from_pretrained(save_directory)` and `SamProcessor.from_pretrained(...)` read it
        back. The directory is written under a temporary name and renamed into place, so a failure
        never leaves a half-written model.

        With LoRA (`adapt("lora")`) the updates are merged into the kernels of the saved copy,
        so it is an ordinary SAM; the model itself stays unmerged. Adapters cannot be merged and
        are refused: save the model with `model.save("model.keras")`.
        """
        merged = self.adaptation.merged() if self.adaptation is not None else contextlib.nullcontext()
        with atomic_directory(save_directory) as staging, merged:
            self.sam.save_pretrained(staging)
            processor_for_config(self.sam.config).save_pretrained(staging)

    def get_config(self):
        config = {"sam_config": self.sam.config.to_dict(), **self.options_config()}
        if self.adaptation is not None:
            config["adaptation"] = self.adaptation.options()
        if getattr(self, "_recomputes_encoder", False):
            config["recompute_encoder"] = True
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        sam = require_tf_sam()(SamConfig.from_dict(config.pop("sam_config")))
        adaptation = config.pop("adaptation", None)
        recompute = config.pop("recompute_encoder", False)
        model = cls(sam, **config)
        if adaptation is not None:  # the unmerged structure, so saved LoRA/adapter weights load
            model.adapt(**adaptation)
        if recompute:
            model.recompute_encoder()
        return model

    def recompute_encoder(self):
        """Gradient checkpointing: the encoder's blocks run again in the backward pass rather than
        keep their activations (less memory when the encoder learns, one more encoder forward pass;
        the same gradients). See keras_sam.tfkeras.recompute. Returns the model."""
        from keras_sam.tfkeras.recompute import recompute_blocks

        if not getattr(self, "_recomputes_encoder", False):
            recompute_blocks(self.sam)
            self._recomputes_encoder = True
            self.train_function = self.test_function = self.predict_function = None
        return self

    @property
    def trained_prompt(self):
        """The prompt kind the model was fine-tuned with ("box", "none", ...; None if unrecorded).

        Kept in the SAM config, so `save_pretrained` and `model.save` carry it; segmenting with no
        prompt warns unless it is "none" (keras_sam.common.trained_prompt)."""
        return trained_prompt_of(self.sam.config)

    @trained_prompt.setter
    def trained_prompt(self, kind):
        record_trained_prompt(self.sam.config, kind)

    # ----------------------------------------------------------------- encoder adaptation
    def adapt(self, method, *, rank=DEFAULT_LORA_RANK, targets=DEFAULT_LORA_TARGETS, alpha=None,
              ratio=DEFAULT_ADAPTER_RATIO):
        """Chooses how the image encoder learns; returns the model.

        Args:
            method: "decoder" (the encoder frozen, as by default), "lora" (low-rank updates of
                the encoder's linear layers; the encoder's own weights stay frozen), "adapter"
                (Medical SAM Adapter's bottleneck MLPs in every block, see keras_sam.tfkeras.adapters)
                or "full" (every encoder weight trains).
            rank, targets, alpha: LoRA's rank, the layers it updates in each block ("qkv", the
                attention's fused projection, as SAMed; "proj"; "mlp", both MLP layers) and its
                scale alpha / rank (alpha None: scale 1). See keras_sam.tfkeras.lora.
            ratio: the adapters' bottleneck width as a share of the encoder's width.

        LoRA and adapters start at zero: the model's output is unchanged until it trains. Only
        their weights train in the encoder (the optimizer keeps state for them alone), so the
        encoder's weights stay bit-identical. Call it before compile(), or compile again after.
        Must be called inside a tf.distribute strategy's scope when training with one.

        Raises:
            ValueError: an unknown method or target (the message lists the valid ones), a rank
                below 1, or a second LoRA/adapter on an already adapted model.

        Example:
            >>> model = SamSegmenter(TFSamModel(tiny_sam_config())).adapt("lora", rank=4, targets=("qkv",))
        """
        from keras_sam.tfkeras.adaptation import PARAMETER_EFFICIENT, EncoderAdaptation

        check_method(method)
        frozen = tuple(name for name in self.freeze if name != "vision_encoder")
        if method in PARAMETER_EFFICIENT:
            if self.adaptation is not None:
                raise ValueError(f"this model already has {self.adaptation.method} on its encoder; adapt a "
                                 "fresh model (from_pretrained) to change it")
            self.adaptation = EncoderAdaptation(method, rank=rank, targets=targets, alpha=alpha,
                                                ratio=ratio).install(self.sam)
        elif self.adaptation is not None:
            raise ValueError(f"this model has {self.adaptation.method} on its encoder; adapt a fresh model "
                             f"(from_pretrained) for {method!r}")
        self.train_function = self.test_function = self.predict_function = None
        self.freeze = frozen if method == "full" else ("vision_encoder", *frozen)
        return self

    # ----------------------------------------------------------------- freezing
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
        if inputs.get("input_labels") is not None and inputs.get("input_points") is None:
            raise ValueError("input_labels given without input_points")
        args = {"pixel_values": None, "image_embeddings": None}
        for key, dtype in PROMPT_DTYPES.items():
            if inputs.get(key) is not None:
                tail, expected = self._input_shapes[key]
                args[key] = with_checked_shape(key, tf.cast(inputs[key], dtype), tail, expected, set_axis=True,
                                               several=SEVERAL_PROMPT_SETS.replace("{name}", key))
        key = images[0]
        tail, expected = self._input_shapes[key]
        args[key] = with_checked_shape(key, tf.cast(inputs[key], self.compute_dtype), tail, expected)
        return args

    @property
    def _input_shapes(self):
        """Each input's shape after the batch (and prompt set) axis, and how messages say it."""
        vision = self.sam.config.vision_config
        size, side, grid = vision.image_size, vision.image_size // vision.patch_size, self.mask_grid
        return {
            "pixel_values": ((3, size, size), f"(B, 3, {size}, {size})"),
            "image_embeddings": ((vision.output_channels, side, side),
                                 f"(B, {vision.output_channels}, {side}, {side})"),
            "input_boxes": ((4,), "(B, 4) or (B, 1, 4)"),
            "input_points": ((None, 2), "(B, N, 2) or (B, 1, N, 2)"),
            "input_labels": ((None,), "(B, N) or (B, 1, N)"),
            "input_masks": ((grid, grid), f"(B, {grid}, {grid}) or (B, 1, {grid}, {grid}) on the "
                                          f"{grid}x{grid} logits grid"),
        }

    @tf.autograph.experimental.do_not_convert
    def call(self, inputs, training=None):
        """Predicts masks and the model's estimate of their IoU.

        Args:
            inputs: the input dict (see the class docstring).

        Returns:
            {"mask_logits": (B, M, H, W), "iou_scores": (B, M)}.
        """
        # Not converted by autograph: TFSamModel's Python control flow is on static shapes only,
        # and converting transformers' code was most of the first step's time.
        output = self.sam(
            **self._sam_arguments(inputs),
            multimask_output=self.multimask_output,
            return_dict=True,
            training=bool(training),
        )
        # TFSamModel's reshapes can lose the static mask count in graph mode: restore it.
        # Outputs in float32 whatever the precision policy, as Keras advises for a model's last layer.
        num_masks = 3 if self.multimask_output else 1
        logits = tf.reshape(output.pred_masks[:, 0], (-1, num_masks, self.mask_grid, self.mask_grid))
        scores = tf.reshape(output.iou_scores[:, 0], (-1, num_masks))
        return {"mask_logits": tf.cast(logits, tf.float32), "iou_scores": tf.cast(scores, tf.float32)}

    def segment(self, image, *, boxes=(), points=(), labels=None, mask_input=None, best=True):
        """Masks for one image at its own resolution, from prompts in its own pixels.

        `keras_sam.common.inference.segment_image(self, image, ...)`: the image is embedded once, then
        one mask is predicted per box (or one for the clicks, the previous mask, or no prompt,
        which warns unless the model was fine-tuned with `--prompt none`).

        Args:
            image: (H, W, 3) uint8 RGB array.
            boxes: (x0, y0, x1, y1) boxes in image pixels.
            points: (x, y) clicks in image pixels; labels one per click, 1 inside (positive), 0
                outside (negative).
            mask_input: a previous mask to refine: the (G, G) logits a previous call returned
                (`result.logits[0]`), or a boolean mask at the image's size.
            best: only the mask with the highest predicted IoU per prompt.

        Returns:
            keras_sam.common.postprocessing.PostprocessedMasks(logits, scores, masks).

        Example:
            >>> result = model.segment(image, boxes=[[40, 30, 200, 160]])  # doctest: +SKIP
            >>> mask, score = result.masks[0], result.scores[0]  # doctest: +SKIP
        """
        if isinstance(image, Mapping):  # the input dict, as segment took before 0.2
            warnings.warn("SamSegmenter.segment(inputs) with the input dict is deprecated: call the model, "
                          "model(inputs), or segment(image, boxes=..., points=...) for masks at an "
                          "image's resolution", DeprecationWarning, stacklevel=2)
            return SegmentationOutput(**self(image, training=False))
        from keras_sam.common.inference import segment_image

        return segment_image(self, image, boxes=boxes, points=points, labels=labels, mask_input=mask_input,
                             best=best)

    @property
    def processor(self):
        """The SamProcessor whose resizing and padding match this model's configuration."""
        return processor_for_config(self.sam.config)

    @property
    def embedding_shape(self):
        """(C, E, E): one image embedding's shape."""
        vision = self.sam.config.vision_config
        side = vision.image_size // vision.patch_size
        return (vision.output_channels, side, side)

    @property
    def encoder_weights(self):
        """The vision encoder's weights (what an image embedding depends on), LoRA's or adapters' too."""
        extra = self.adaptation.weights if self.adaptation is not None else []
        return self.sam.vision_encoder.weights + extra

    @property
    def encoder_dtype(self):
        """The dtype the vision encoder computes in ("bfloat16" under mixed_bfloat16)."""
        return self.sam.vision_encoder.compute_dtype

    def image_embeddings(self, pixel_values):
        """Runs the vision encoder: (B, 3, S, S) pixel values -> (B, C, E, E) image embeddings."""
        return self._encode(tf.cast(pixel_values, self.compute_dtype))

    def trace_image_embeddings(self, batch_size):
        """Traces the vision encoder for calls of `batch_size` images, without running it.

        The first `image_embeddings` call of that many images then starts with its graph ready.
        Tracing is Python, running the graph is not: the embedding cache traces on one thread
        before another runs the encoder, so that the first thread is free for Python work.
        """
        vision = self.sam.config.vision_config
        self._encode.get_concrete_function(tf.TensorSpec(
            (batch_size, vision.num_channels, vision.image_size, vision.image_size), self.compute_dtype))

    @tf.function(reduce_retracing=True, autograph=False)
    def _encode(self, pixel_values):
        # A traced graph: run eagerly, the ViT's many small ops each pay Python's overhead.
        return tf.cast(self.sam.get_image_embeddings(pixel_values), tf.float32)

    # ----------------------------------------------------------------- training
    def compile(self, optimizer="auto", loss="auto", metrics="auto", weighted_metrics=None, **kwargs):
        """Configures training; each argument left out keeps keras-sam's default.

        The loss and the metrics see the mask the model would hand out for each sample (with
        `multimask_output`, the loss takes the best of the 3 by loss, the metrics the one with the
        highest predicted IoU), shaped like a Keras binary segmentation model's: targets
        (B, H, W, 1) and predictions (B, H, W, 1). The loss receives logits: keras-sam's losses
        expect them, Keras's own need `from_logits=True`. Metrics receive probabilities (the
        sigmoid of the logits), so Keras's threshold metrics ("accuracy", BinaryAccuracy,
        BinaryIoU, Precision, Recall at 0.5) score the masks `predict` gives thresholded at logit
        0, and AUC ranks the probabilities; a metric made with `from_logits=True`, like
        keras-sam's DiceScore and IoUScore, receives the logits. `sample_weight` (per sample
        (B,) or per pixel (B, H, W)) reaches the loss and the `weighted_metrics`, as in Keras.

        Args:
            optimizer: "auto" is Adam with learning rate 1e-5.
            loss: "auto" is DiceLoss() on the logits.
            metrics: "auto" is [DiceScore(), IoUScore()]; any Keras metrics or their names.
            weighted_metrics: metrics that also receive `sample_weight`.
            **kwargs: passed on to `keras.Model.compile` (e.g. jit_compile, steps_per_execution).
        """
        reject_keras3("SamSegmenter.compile", optimizer=optimizer, loss=loss, metrics=metrics,
                      weighted_metrics=weighted_metrics)
        optimizer, loss = auto(optimizer, default_optimizer), auto(loss, DiceLoss)
        metrics = auto(metrics, lambda: [DiceScore(), IoUScore()])
        arguments = dict(optimizer=optimizer, loss=loss, metrics=on_masks(metrics, keras, OnProbabilities),
                         weighted_metrics=on_masks(weighted_metrics, keras, OnProbabilities), **kwargs)
        self._apply_freeze()  # also after loading a SavedModel, which revives layers trainable
        trainable = {id(variable) for variable in self.trainable_variables}
        if optimizer is getattr(self, "optimizer", None) and not trainable <= self._optimized:
            # Unfrozen after compile: Adam and its kind hold state only for the weights they
            # were built with. Start it afresh, as a new optimizer would.
            if int(optimizer.iterations.numpy()) > 0:
                warnings.warn("SamSegmenter: weights became trainable after the optimizer took steps; "
                              "it starts afresh (its state only covered the weights trainable before)",
                              stacklevel=3)
            optimizer = optimizer.__class__.from_config(optimizer.get_config())
            arguments["optimizer"] = optimizer
        self._remember_compile_arguments(arguments, trainable)
        super().compile(**arguments)

    @tf.__internal__.tracking.no_automatic_dependency_tracking
    def _remember_compile_arguments(self, arguments, trainable):
        # Not tracked: the model would list these metrics twice and checkpoint the optimizer twice.
        self._compile_arguments = arguments
        self._optimized = trainable

    def compile_from_config(self, config):
        """Compiles as a saved model was compiled (`keras.models.load_model` calls it)."""
        self.compile(**keras.saving.deserialize_keras_object(config))
        if isinstance(self.optimizer, keras.optimizers.Optimizer):
            self.optimizer.build(self.trainable_variables)  # so its saved state has somewhere to go

    def save(self, filepath, overwrite=True, save_format=None, **kwargs):
        """`keras.Model.save` to a `.keras` file or a SavedModel folder (a path without extension).

        HDF5 cannot hold this model. A SavedModel is written without the traced call functions of
        every layer (`save_traces=False`: tracing every layer makes saving many times slower): load_model
        rebuilds the model from its config and loads its weights. Like every tf-keras SavedModel,
        it restores the optimizer's configuration but not its state; a `.keras` file restores both.
        """
        path = str(filepath)
        if save_format == "h5" or path.endswith((".h5", ".hdf5")):
            raise ValueError(
                f"cannot save SamSegmenter to {path}: whole-model HDF5 is for Functional and "
                "Sequential models only. Save to a .keras file, a SavedModel folder (a path "
                "without an extension), or with model.save_pretrained(folder).")
        if save_format == "tf" or (save_format is None and not path.endswith(".keras")):
            kwargs.setdefault("save_traces", False)
        return super().save(filepath, overwrite=overwrite, save_format=save_format, **kwargs)

    def fit(self, *args, class_weight=None, **kwargs):
        """`keras.Model.fit`; `class_weight={0: background, 1: lesion}` weights the pixels of each
        class (per-pixel weights, combined with any `sample_weight`). Nothing is added to
        `callbacks`: for the learning rate in the epoch logs, pass
        `keras_sam.tfkeras.callbacks.LearningRateLogger()` first among them."""
        reject_keras3("SamSegmenter.fit", callbacks=kwargs.get("callbacks") or [])
        table = None if class_weight is None else _class_weight_table(class_weight)
        if table != self._class_weights:
            self._class_weights = table
            self.train_function = None  # re-trace with the new weights
        self._create_training_variables()
        return super().fit(*args, **kwargs)

    def evaluate(self, *args, **kwargs):
        reject_keras3("SamSegmenter.evaluate", callbacks=kwargs.get("callbacks") or [])
        self._create_training_variables()
        return super().evaluate(*args, **kwargs)

    def trace_train_step(self, dataset):
        """Traces the compiled training step for batches like `dataset`'s, ahead of `fit`.

        `fit` on a dataset with the same element spec then starts with the step ready (for
        sam-vit-base's decoder, tracing takes seconds). Useful while something else computes
        outside Python: `keras-sam finetune` traces while the embedding cache fills. Compiling
        again, or `fit` with another `class_weight`, discards the trace.
        """
        if not self._is_compiled:
            raise RuntimeError("compile() the model before trace_train_step()")
        self._create_training_variables()
        self.make_train_function().get_concrete_function(tf.data.IteratorSpec(dataset.element_spec))

    def _create_training_variables(self):
        """Creates the optimizer's slots and the compiled loss's and metrics' variables now.

        Keras creates them inside the first traced step, and a tf.function that creates variables
        is traced a second time without them: a second trace of the whole step, seconds for
        sam-vit-base's decoder.
        """
        if not self._is_compiled:
            return
        with self.distribute_strategy.scope():
            if isinstance(self.optimizer, keras.optimizers.Optimizer):
                self.optimizer.build(self.trainable_variables)  # does nothing once built
            # Shaped like what compute_loss and compute_metrics pass: (B, H, W, 1) masks.
            masks = tf.zeros((1, self.mask_grid, self.mask_grid, 1))
            if not self.compiled_loss.built:
                self.compiled_loss.build(masks)
            if not self.compiled_metrics.built:
                self.compiled_metrics.build(masks, masks)

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x, y, sample_weight = self._click_rounds(x, y, sample_weight)
        if self._class_weights is not None:
            sample_weight = self._with_class_weights(y, sample_weight)
        with tf.GradientTape() as tape:
            y_pred = self._predict_rounds(x, training=True)
            loss = self.compute_loss(x, y, y_pred, sample_weight)
        self.optimizer.minimize(loss, self._variables_trained(x), tape=tape)
        return self.compute_metrics(x, y, y_pred, sample_weight)

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x, y, sample_weight = self._click_rounds(x, y, sample_weight)
        y_pred = self._predict_rounds(x, training=False)
        self.compute_loss(x, y, y_pred, sample_weight)
        return self.compute_metrics(x, y, y_pred, sample_weight)

    def _variables_trained(self, x):
        """The trainable variables, less (with clicks, which prompt no box) the box corners'
        embeddings, which then get no gradient (TensorFlow would warn at every trace)."""
        if not isinstance(x, list):
            return self.trainable_variables
        corners = {id(weight) for weight in self.sam.prompt_encoder.point_embed[2:]}
        return [variable for variable in self.trainable_variables if id(variable) not in corners]

    def _click_rounds(self, x, y, sample_weight):
        """Without clicks, (x, y, sample_weight) as they are. With clicks (see `click_prompts`), a
        list of the rounds' inputs, with the targets and weights repeated once per round: the loss
        and the metrics (the logged dice) see both trained predictions of every sample."""
        rounds = self.click_prompts(x, y)
        if rounds is x:
            return x, y, sample_weight

        def repeat(value):
            return None if value is None else tf.concat([value] * len(rounds), axis=0)
        return rounds, repeat(y), repeat(sample_weight)

    def _predict_rounds(self, x, training):
        """The model's output for x, or for each round of a list of rounds, joined along the batch."""
        if not isinstance(x, list):
            return self(x, training=training)
        outputs = [self(inputs, training=training) for inputs in x]
        return {key: tf.concat([output[key] for output in outputs], axis=0) for key in outputs[0]}

    def click_prompts(self, x, y):
        """Corrective-click training: the prompts of each sample's last round, from its own errors.

        Batches of `build_dataset(..., prompts=PromptOptions(kind="clicks"))` carry no prompt but
        "click_rounds" (B, R), 1 for each of a sample's r corrective rounds, "click_seed" (B, 2)
        and "click_extent" (B, 2), the image's width and height on the logits grid (clicks stay
        off the padding). In the graph, with no gradient:

        1. a first click, positive, at a random pixel well inside the lesion
           (`keras_sam.common.clicks.error_clicks` on an empty prediction), predicts a mask;
        2. each round adds one click from that sample's current error (positive in a missed part,
           negative on a false positive, well inside the larger error, drawn at random) and
           predicts again with the previous mask's logits as `input_masks`.

        Two predictions train, each from inputs made here and predicted by the caller under the
        gradient tape: the first click's alone (no mask: how every interaction starts, and what
        Dice after 1 click scores) and the sample's last round, its first click and r corrective
        clicks (points padded with SAM's "not a point" label, -1, up to the batch's most rounds)
        with the mask predicted before its last click. The rounds in between only make the last
        round's inputs and take no gradient, as in RITM's iterative training: a step costs two
        backward passes whatever the rounds, where unrolling the gradient through every round
        would keep every round's activations and multiply the backward pass by the rounds.

        Inputs without "click_rounds" are returned as they are.

        Args:
            x: the input dict; y: (B, G, G) binary targets.

        Returns:
            [first, last], two input dicts: the image with "input_points" (B, 1, 2) and
            "input_labels" (B, 1); and the image with "input_points" (B, 1 + R', 2),
            "input_labels" (B, 1 + R') and "input_masks" (B, G, G), R' the batch's most rounds.
        """
        if not isinstance(x, Mapping) or "click_rounds" not in x:
            return x
        x = dict(x)
        rounds = tf.reduce_sum(tf.cast(x.pop("click_rounds"), tf.int32), axis=-1)  # (B,)
        seed = tf.cast(x.pop("click_seed"), tf.int64)
        # One seed for the batch, from its samples' seeds: each round's noise folds in the round.
        seed = tf.stack([tf.reduce_sum(seed[:, 0]), tf.reduce_sum(seed[:, 1])]) % 2**31
        truth = self._targets(y)
        extent = tf.cast(x.pop("click_extent"), tf.float32)
        centres = tf.range(self.mask_grid, dtype=tf.float32) + 0.5
        valid = tf.cast((centres[None, :, None] < extent[:, 1, None, None])
                        & (centres[None, None, :] < extent[:, 0, None, None]), tf.float32)
        image = {key: x[key] for key in IMAGE_INPUTS if x.get(key) is not None}
        to_model = float(self.sam.config.vision_config.image_size) / self.mask_grid
        most = tf.reduce_max(rounds)
        slots = most + 1
        batch = tf.shape(truth)[0]

        def click(step, logits, active=None):
            noise = tf.random.stateless_uniform(tf.shape(truth), seed=tf.random.experimental.stateless_fold_in(
                seed, tf.cast(step, tf.int64)))
            return error_clicks(CLICK_OPS, truth, logits, noise, active=active, valid=valid)

        def put(points, labels, step, new_points, new_labels):
            slot = tf.range(slots) == step  # (slots,)
            return (tf.where(slot[None, :, None], new_points[:, None, :], points),
                    tf.where(slot[None, :], new_labels[:, None], labels))

        def predict(points, labels, masks=None):
            inputs = dict(image, input_points=points * to_model, input_labels=labels)
            if masks is not None:
                inputs["input_masks"] = masks
            return tf.stop_gradient(best_mask_logits(self(inputs, training=False)))

        points = tf.zeros(tf.stack([batch, slots, 2]), tf.float32)
        labels = tf.fill(tf.stack([batch, slots]), tf.constant(NO_CLICK, tf.int32))
        first_points, first_labels = click(0, -tf.ones_like(truth))
        points, labels = put(points, labels, 0, first_points, first_labels)
        first = dict(image, input_points=first_points[:, None] * to_model, input_labels=first_labels[:, None])
        current = predict(first_points[:, None], first_labels[:, None])

        def one_round(step, points, labels, current):
            new_points, new_labels = click(step, current, active=step <= rounds)
            points, labels = put(points, labels, step, new_points, new_labels)
            refined = predict(points, labels, current)
            current = tf.where((step < rounds)[:, None, None], refined, current)
            return step + 1, points, labels, current

        _, points, labels, current = tf.while_loop(
            lambda step, *_: step < most, one_round, (tf.constant(1), points, labels, current))
        new_points, new_labels = click(most, current, active=most <= rounds)
        points, labels = put(points, labels, most, new_points, new_labels)
        return [first, dict(image, input_points=points * to_model, input_labels=labels, input_masks=current)]

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None):
        """The compiled loss on the trained mask, plus the IoU head's mean-squared error.

        The objective is `keras_sam.common.training_objective`'s: with several masks per prompt the
        trained mask is, per sample, the one with the lowest loss (pixel weights included); the
        IoU head learns each mask's true IoU, each sample counting by its mean weight.
        """
        y, pixel_weights = self._targets(y), self._pixel_weights(sample_weight)
        terms = training_objective.objective_terms(
            OPS, y, y_pred, pixel_weights, lambda y, logits: self._per_sample_loss(y, logits, pixel_weights),
            self._trained_iou_loss_weight())
        extra = list(self.losses)
        if terms.iou_loss is not None:
            self._iou_loss_tracker.update_state(terms.iou_errors, sample_weight=terms.sample_weights)
            # With the regularization losses, Keras shares the IoU head's term across replicas
            # as it shares the compiled loss, and counts it in the logged `loss`.
            extra.append(terms.iou_loss)
        return self.compiled_loss(y[..., None], terms.trained[..., None], pixel_weights,
                                  regularization_losses=extra)

    def compute_metrics(self, x, y, y_pred, sample_weight):
        """Metrics on the mask the model would return (highest predicted IoU), shaped (B, H, W, 1)."""
        targets = self._targets(y)[..., None]
        pixel_weights = self._pixel_weights(sample_weight)
        return super().compute_metrics(x, targets, best_mask_logits(y_pred)[..., None], pixel_weights)

    def _targets(self, y):
        """Checks targets are binary masks on the logits grid; returns them as (B, H, W) float32."""
        if y is None:
            raise ValueError("fit/evaluate need targets: binary masks on the logits grid")
        grid = self.mask_grid
        y = with_checked_shape("targets", tf.cast(tf.convert_to_tensor(y), tf.float32), (grid, grid),
                               f"(B, {grid}, {grid}) or (B, 1, {grid}, {grid}) on the model's logits grid "
                               "(resize and pad them like the image: SamProcessor's segmentation_maps does)",
                               set_axis=True)
        return assert_binary(y[:, 0])

    def _pixel_weights(self, sample_weight):
        """Any sample_weight as per-pixel weights (B, H, W) float32, or None."""
        if sample_weight is None:
            return None
        weights = tf.cast(tf.convert_to_tensor(sample_weight), tf.float32)
        grid = self.mask_grid
        if weights.shape.rank is None:
            raise ValueError("sample_weight must have a known rank: (B,) per sample, or (B, "
                             f"{grid}, {grid}) or (B, 1, {grid}, {grid}) per pixel")
        if weights.shape.rank <= 1 or (weights.shape.rank == 2 and weights.shape[1] == 1):
            return training_objective.per_pixel(OPS, weights, grid)
        weights = with_checked_shape("sample_weight", weights, (grid, grid),
                                     f"(B,) per sample, or (B, {grid}, {grid}) or (B, 1, {grid}, {grid}) per pixel",
                                     set_axis=True)
        return weights[:, 0]

    def _with_class_weights(self, y, sample_weight):
        """Per-pixel weights with each pixel's class weight multiplied in."""
        by_class = tf.gather(tf.constant(self._class_weights), tf.cast(self._targets(y), tf.int32))
        weights = self._pixel_weights(sample_weight)
        return by_class if weights is None else by_class * weights


def load_model_file(path):
    """The SamSegmenter saved with `model.save(path)` (a .keras file or a SavedModel folder).

    Raises:
        keras_sam.common.hub.ModelLoadError: `path` holds another kind of model, or cannot be read.
    """
    try:
        model = keras.models.load_model(path)
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"could not load {path} as a tf-keras model: {error}") from error
    if not isinstance(model, SamSegmenter):
        raise ModelLoadError(f"{path} holds a {type(model).__name__}, not a keras-sam SamSegmenter")
    return model


def default_optimizer(learning_rate=1e-5):
    """The optimizer `compile()` uses: Adam, each weight's update by one kernel (FusedAdam), run as
    ordinary graph ops (no XLA of its own), which both traced and stepped sooner than its default
    XLA update (BENCHMARKS.md)."""
    return FusedAdam(learning_rate=learning_rate, jit_compile=False)


def _class_weight_table(class_weight):
    """{0: w0, 1: w1} -> (w0, w1), checked (absent classes weigh 1)."""
    unknown = sorted(set(class_weight) - {0, 1})
    if unknown:
        raise ValueError(f"class_weight holds classes {unknown}; masks have classes 0 (background) and 1 "
                         "(the object)")
    return tuple(float(class_weight.get(label, 1.0)) for label in (0, 1))
