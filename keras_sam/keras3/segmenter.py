"""SamSegmenter for Keras 3: keras-hub's SAM parts, trained with compile() and fit() on JAX,
TensorFlow or PyTorch.

keras-hub 0.32's own `SAMImageSegmenter` only predicts. This model holds its parts (the
`ViTDetBackbone` image encoder, `SAMPromptEncoder`, `SAMMaskDecoder`) behind the tf-keras
SamSegmenter's contract: the same input dict (channels-first `pixel_values` or
`image_embeddings`, `input_boxes`, `input_points`/`input_labels`, `input_masks`), the same
output dict, the same compile() defaults, losses, freezing, multimask training and IoU head.
Everything is written in `keras.ops`; the training objective goes through `compute_loss`.
"""

import math
import warnings

import keras
import keras_hub
import numpy as np
from keras import ops

from keras_sam.common import training_objective
from keras_sam.common.adaptation_options import DEFAULT_LORA_RANK, DEFAULT_LORA_TARGETS, check_method, check_targets
from keras_sam.common.clicks import error_clicks
from keras_sam.common.training_options import TrainingOptions, auto
from keras_sam.common.configs import processor_for_sizes
from keras_sam.keras3.adaptation import enable_encoder_lora, keep_only_lora_trainable
from keras_sam.keras3.convert import assign_weights, read_checkpoint, save_pretrained
from keras_sam.keras3.losses import OPS, DiceLoss, MaskLoss, per_sample_arrays, replicas
from keras_sam.keras3.metrics import DiceScore, IoUScore, OnProbabilities
from keras_sam.common.metric_inputs import on_masks
from keras_sam.common.trained_prompt import trained_prompt_of

IMAGE_INPUTS = ("pixel_values", "image_embeddings")
PROMPT_INPUTS = ("input_boxes", "input_points", "input_labels", "input_masks")
# What a batch of build_dataset(..., prompts=PromptOptions(kind="clicks")) carries instead of prompts,
# and the targets fit/evaluate add beside them (the clicks are drawn from the model's errors).
CLICK_INPUTS = ("click_rounds", "click_seed", "click_extent")
CLICK_TARGETS = "click_targets"
# SamProcessor's normalisation, which keras-hub's image encoder applies itself.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def parts_from_sam_config(config):
    """keras-hub's SAM parts with the architecture of a transformers `SamConfig`."""
    vision, prompt, decoder = config.vision_config, config.prompt_encoder_config, config.mask_decoder_config
    side = vision.image_size // vision.patch_size
    image_encoder = keras_hub.models.ViTDetBackbone(
        hidden_size=vision.hidden_size, num_layers=vision.num_hidden_layers,
        intermediate_dim=vision.mlp_dim, num_heads=vision.num_attention_heads,
        global_attention_layer_indices=list(vision.global_attn_indexes),
        image_shape=(vision.image_size, vision.image_size, 3), patch_size=vision.patch_size,
        num_output_channels=vision.output_channels, use_bias=vision.qkv_bias,
        use_abs_pos=vision.use_abs_pos, use_rel_pos=vision.use_rel_pos, window_size=vision.window_size,
        layer_norm_epsilon=vision.layer_norm_eps)
    prompt_encoder = keras_hub.layers.SAMPromptEncoder(
        hidden_size=prompt.hidden_size, image_embedding_size=(side, side),
        input_image_size=(vision.image_size, vision.image_size), mask_in_channels=prompt.mask_input_channels,
        activation="gelu")
    mask_decoder = keras_hub.layers.SAMMaskDecoder(
        hidden_size=decoder.hidden_size, num_layers=decoder.num_hidden_layers,
        intermediate_dim=decoder.mlp_dim, num_heads=decoder.num_attention_heads,
        embedding_dim=decoder.hidden_size, num_multimask_outputs=decoder.num_multimask_outputs,
        iou_head_depth=decoder.iou_head_depth, iou_head_hidden_dim=decoder.iou_head_hidden_dim)
    return image_encoder, prompt_encoder, mask_decoder


def _rank2_positional_encodings(layer):
    """keras-hub's RandomFrequencyPositionalEmbeddings with its projection as a rank-2 matmul.

    On the TensorFlow backend, `coords @ matrix` with rank-3 or -4 coordinates walks into the
    oneDNN matmul bug of TensorFlow 2.19-2.21 (wrong prompt embeddings from batch 12, crashes
    from 16); flattening to rank 2 is exact on every backend.
    """
    def positional_encodings(coords):
        coords = coords * 2 - 1
        matrix = ops.cast(layer.positional_encoding_gaussian_matrix, layer.compute_dtype)
        flat = ops.matmul(ops.reshape(coords, (-1, 2)), matrix)
        coords = ops.reshape(flat, (*ops.shape(coords)[:-1], matrix.shape[-1])) * (2 * math.pi)
        return ops.concatenate([ops.sin(coords), ops.cos(coords)], axis=-1)

    layer._positional_encodings = positional_encodings


@keras.saving.register_keras_serializable(package="keras_sam")
class SamSegmenter(TrainingOptions, keras.Model):
    """Segment Anything as a Keras 3 model: compile(), fit(), evaluate() and predict() on any backend.

    Inputs, outputs, targets and options are the tf-keras `keras_sam.SamSegmenter`'s: a dict of
    `pixel_values` (B, 3, S, S) or `image_embeddings` (B, C, E, E), and `input_boxes` (B, 4),
    `input_points` (B, N, 2) with `input_labels` (B, N), and/or `input_masks` (B, G, G); out
    come {"mask_logits": (B, M, G, G), "iou_scores": (B, M)} in float32.

    Args:
        image_encoder: a keras_hub.models.ViTDetBackbone.
        prompt_encoder: a keras_hub.layers.SAMPromptEncoder.
        mask_decoder: a keras_hub.layers.SAMMaskDecoder.
        freeze: components whose weights stay fixed, among "vision_encoder", "prompt_encoder",
            "mask_decoder" and "iou_head".
        multimask_output: 3 masks per prompt; training uses the best one per sample.
        iou_loss_weight: weight of the IoU head's mean-squared error.
        trained_prompt: the prompt kind the model was fine-tuned with ("box", "none", ...; None
            unrecorded), kept in its config and in `save_pretrained`'s config.json.

    Example:
        >>> model = SamSegmenter.from_sam_config(keras_sam.tiny_sam_config())  # doctest: +SKIP
        >>> model.compile()  # doctest: +SKIP
        >>> model.fit(dataset, epochs=3)  # doctest: +SKIP
    """

    # The family's side of the shared training objective (TrainingOptions._per_sample_loss).
    _objective_ops, _keras_module, _mask_loss_class = OPS, keras, MaskLoss
    _per_sample_arrays = staticmethod(per_sample_arrays)

    def __init__(self, image_encoder, prompt_encoder, mask_decoder, *,
                 freeze=("vision_encoder", "prompt_encoder"), multimask_output=False, iou_loss_weight=1.0,
                 decoder_norm_epsilon=None, trained_prompt=None, **kwargs):
        super().__init__(**kwargs)
        # The prompt kind it was fine-tuned with (keras_sam.common.trained_prompt): saved with it, and
        # read by inference, which warns before segmenting with no prompt a model not trained so.
        self.trained_prompt = trained_prompt
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        for part in (prompt_encoder, mask_decoder):
            if not part.built:  # built already when load_model revives them
                part.build()
        _rank2_positional_encodings(prompt_encoder.positional_embedding_layer)
        # keras-hub fixes the two-way transformer's LayerNorm epsilon at 1e-5; transformers' SAM
        # configs say 1e-6. The model keeps (and saves) the one its weights were trained with.
        self.decoder_norm_epsilon = decoder_norm_epsilon
        if decoder_norm_epsilon is not None:
            for layer in mask_decoder.transformer._flatten_layers():
                if isinstance(layer, keras.layers.LayerNormalization):
                    layer.epsilon = decoder_norm_epsilon
        self.image_size = image_encoder.image_shape[0]
        self.embedding_side = prompt_encoder.image_embedding_size[0]
        self.mask_grid = 4 * self.embedding_side
        self._multimask_output = bool(multimask_output)
        self._iou_loss_weight = float(iou_loss_weight)
        object.__setattr__(self, "_compile_arguments", None)  # not tracked (see compile)
        self.freeze = freeze
        self._iou_loss_tracker = keras.metrics.Mean(name="iou_head_loss")
        self.built = True

    @classmethod
    def from_sam_config(cls, config, **kwargs):
        """A model with random weights and the architecture of a transformers SamConfig."""
        return cls(*parts_from_sam_config(config), decoder_norm_epsilon=config.mask_decoder_config.layer_norm_eps,
                   **kwargs)

    @classmethod
    def from_pretrained(cls, name_or_path, **kwargs):
        """Loads a transformers SAM checkpoint (tf_model.h5 or model.safetensors) into a Keras 3 model.

        Args:
            name_or_path: a model shipped with keras-sam ("sam-small-shapes") or a folder written by
                `save_pretrained` (config.json beside the weights).
            **kwargs: freeze, multimask_output, iou_loss_weight.
        """
        config, weights = read_checkpoint(name_or_path)
        kwargs.setdefault("trained_prompt", trained_prompt_of(config))
        model = cls.from_sam_config(config, **kwargs)
        assign_weights((model.image_encoder, model.prompt_encoder, model.mask_decoder), weights)
        return model

    def save_pretrained(self, folder):
        """Writes the model as a transformers checkpoint (config.json, model.safetensors under
        PyTorch's names, processor config). Both keras-sam families' `from_pretrained` read it;
        for plain `TFSamModel.from_pretrained`, `keras-sam convert` adds tf_model.h5 (transformers
        4.5x cannot read safetensors files with safetensors 0.6 and newer)."""
        save_pretrained(self, folder)

    @classmethod
    def from_preset(cls, preset, **kwargs):
        """keras-hub's SAM presets ("sam_base_sa1b", ...), downloaded by keras-hub.

        Raises:
            OSError: one line when the preset cannot be downloaded (no network).
        """
        try:
            backbone = keras_hub.models.SAMBackbone.from_preset(preset)
        except Exception as error:  # keras-hub and kagglehub raise many kinds when offline
            raise OSError(f"could not load keras-hub preset {preset!r} ({type(error).__name__}: "
                          f"{str(error).splitlines()[0] if str(error) else ''}); it is downloaded from "
                          "Kaggle: check the network, or convert a local transformers checkpoint with "
                          "keras-sam convert") from error
        return cls(backbone.image_encoder, backbone.prompt_encoder, backbone.mask_decoder, **kwargs)

    @property
    def processor(self):
        """The SamProcessor whose resizing and padding match this model."""
        return processor_for_sizes(self.image_size, self.mask_grid)

    # ------------------------------------------------------------------------ freezing
    def _component(self, name):
        return {"vision_encoder": self.image_encoder, "prompt_encoder": self.prompt_encoder,
                "mask_decoder": self.mask_decoder,
                "iou_head": self.mask_decoder.iou_prediction_head}[name]

    def _apply_freeze(self):
        super()._apply_freeze()
        if getattr(self, "_lora", None) is not None and "vision_encoder" in self.freeze:
            keep_only_lora_trainable(self.image_encoder)

    def adapt(self, method, *, rank=DEFAULT_LORA_RANK, targets=DEFAULT_LORA_TARGETS):
        """Chooses how the image encoder learns; returns the model.

        As the tf-keras `SamSegmenter.adapt`: "decoder" (frozen encoder), "lora" (Keras's own
        `Dense.enable_lora` on the encoder's attention projections, see
        keras_sam.keras3.adaptation) or "full". Adapters are in the tf-keras family only.

        Raises:
            ValueError: an unknown method or target, a rank below 1, or LoRA twice.
        """
        check_method(method)
        if method == "adapter":
            raise ValueError("adapters are in the tf-keras family only (keras_sam.SamSegmenter.adapt); "
                             "use 'lora' here")
        if method == "lora":
            if getattr(self, "_lora", None) is not None:
                raise ValueError("this model already has LoRA on its encoder; adapt a fresh model to change it")
            enable_encoder_lora(self.image_encoder, rank, targets)
            object.__setattr__(self, "_lora", {"rank": rank, "targets": list(check_targets(targets))})
        elif getattr(self, "_lora", None) is not None:
            raise ValueError(f"this model has LoRA on its encoder; adapt a fresh model for {method!r}")
        frozen = tuple(name for name in self.freeze if name != "vision_encoder")
        self.freeze = frozen if method == "full" else ("vision_encoder", *frozen)
        return self

    # ------------------------------------------------------------------------ forward
    @property
    def embedding_shape(self):
        """(C, E, E): one image embedding's shape."""
        return (self.image_encoder.num_output_channels, self.embedding_side, self.embedding_side)

    @property
    def encoder_weights(self):
        """The image encoder's weights (what an image embedding depends on)."""
        return [keras.ops.convert_to_numpy(weight) for weight in self.image_encoder.weights]

    @property
    def encoder_dtype(self):
        """The dtype the image encoder computes in."""
        return self.image_encoder.compute_dtype

    def image_embeddings(self, pixel_values):
        """(B, 3, S, S) processor-normalised pixel values -> (B, C, E, E) float32 NumPy embeddings."""
        embeddings = self.image_encoder.predict(self._images(pixel_values), verbose=0)
        return np.transpose(np.asarray(embeddings, np.float32), (0, 3, 1, 2))

    def trace_image_embeddings(self, batch_size):
        """Prepares `image_embeddings` for calls of `batch_size` images.

        Keras 3 traces (and on JAX compiles) the encoder's predict function when it first runs on
        a batch of a size, so the encoder runs here once on zeros: the embedding cache calls this
        on one thread before another runs the encoder.
        """
        self.image_embeddings(np.zeros((batch_size, 3, self.image_size, self.image_size), np.float32))

    def _images(self, pixel_values):
        """Processor-normalised channels-first pixels -> the [0, 1] channels-last images keras-hub's
        encoder takes (it normalises them itself)."""
        images = ops.transpose(ops.cast(pixel_values, "float32"), (0, 2, 3, 1))
        return images * ops.array(IMAGENET_STD, "float32") + ops.array(IMAGENET_MEAN, "float32")

    def call(self, inputs, training=None):
        """{"mask_logits": (B, M, G, G), "iou_scores": (B, M)} in float32 for the input dict.

        With corrective clicks (the input dict of a clicks dataset, see `click_prompts`), the
        outputs of the first click's and of the last round's prompts, joined along the batch (2B
        rows), which `compute_loss` and `compute_metrics` score against the targets twice over.
        """
        _check_keys(inputs)
        if inputs.get("click_rounds") is not None:
            outputs = [self._predict(prompts, training) for prompts in self.click_prompts(inputs)]
            return {key: ops.concatenate([output[key] for output in outputs], axis=0) for key in outputs[0]}
        return self._predict(inputs, training)

    def click_prompts(self, inputs):
        """Corrective-click training, as the tf-keras `SamSegmenter.click_prompts`, in `keras.ops`.

        The clicks come from `keras_sam.common.clicks.error_clicks`, the arithmetic both families
        share: a first positive click well inside the lesion, then one click per round from the
        sample's current error with the previous round's mask logits fed back, no gradient through
        the rounds. Two prompt sets train: the first click alone, and the sample's last round (its
        clicks so far, padded with SAM's "not a point" label up to the dataset's most rounds R,
        which is static here, and the mask predicted before its last click).

        The randomness of each click is a stateless hash of the sample's "click_seed" and the
        round (no random state: the same on every backend and replica, inside any trace).

        Args:
            inputs: the image, "click_rounds" (B, R), "click_seed" (B, 2), "click_extent" (B, 2)
                and CLICK_TARGETS (B, G, G), the targets, which `fit` and `evaluate` add.

        Returns:
            [first, last]: two input dicts of prompts for the image.
        """
        if inputs.get(CLICK_TARGETS) is None:
            raise ValueError("corrective clicks are drawn from the targets: train or evaluate with fit() or "
                             "evaluate() on the clicks dataset (they add its targets as 'click_targets')")
        truth = self._targets(inputs[CLICK_TARGETS])
        active_rounds = ops.cast(inputs["click_rounds"], "int32")
        most = int(active_rounds.shape[1])
        rounds = ops.sum(active_rounds, axis=-1)
        seed = ops.cast(inputs["click_seed"], "int32") % 9973  # small: the hash stays precise in float32
        extent = ops.cast(inputs["click_extent"], "float32")
        grid = self.mask_grid
        centres = ops.arange(grid, dtype="float32") + 0.5
        valid = ops.cast((centres[None, :, None] < extent[:, 1, None, None])
                         & (centres[None, None, :] < extent[:, 0, None, None]), "float32")
        image = {key: inputs[key] for key in IMAGE_INPUTS if inputs.get(key) is not None}
        to_model = float(self.image_size) / grid

        def click(step, logits, active=None):
            noise = _hashed_noise(seed, step, grid)
            return error_clicks(ops, truth, logits, noise, active=active, valid=valid)

        def predict(points, labels, masks=None):
            prompts = dict(image, input_points=points * to_model, input_labels=labels)
            if masks is not None:
                prompts["input_masks"] = masks
            output = self._predict(prompts, training=False)
            return ops.stop_gradient(training_objective.highest_scored_masks(
                OPS, output["mask_logits"], output["iou_scores"]))

        first_points, first_labels = click(0, -ops.ones_like(truth))
        points, labels = [first_points], [first_labels]
        first = dict(image, input_points=first_points[:, None] * to_model, input_labels=first_labels[:, None])
        current = predict(first_points[:, None], first_labels[:, None])
        for step in range(1, most + 1):
            new_points, new_labels = click(step, current, active=step <= rounds)
            points.append(new_points)
            labels.append(new_labels)
            if step < most:  # the prediction after this click, for samples with rounds left
                refined = predict(ops.stack(points, axis=1), ops.stack(labels, axis=1), current)
                current = ops.where((step < rounds)[:, None, None], refined, current)
        return [first, dict(image, input_points=ops.stack(points, axis=1) * to_model,
                            input_labels=ops.stack(labels, axis=1), input_masks=current)]

    def fit(self, x=None, y=None, *args, validation_data=None, **kwargs):
        """`keras.Model.fit`; clicks datasets get their targets beside the inputs (see `click_prompts`)."""
        x, y = _with_click_targets(x, y)
        if validation_data is not None:
            validation_data = _with_click_targets(validation_data, None)[0]
        return super().fit(x, y, *args, validation_data=validation_data, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        """`keras.Model.evaluate`; clicks datasets get their targets beside the inputs."""
        x, y = _with_click_targets(x, y)
        return super().evaluate(x, y, *args, **kwargs)

    def _predict(self, inputs, training=None):
        """The model's output for one prompt set per row."""
        if inputs.get("image_embeddings") is not None:
            embeddings = ops.transpose(ops.cast(inputs["image_embeddings"], self.compute_dtype), (0, 2, 3, 1))
        else:
            embeddings = self.image_encoder(self._images(inputs["pixel_values"]))
        prompts = self.prompt_encoder(**self._prompts(inputs))
        decoded = self.mask_decoder(
            image_embeddings=embeddings,
            prompt_dense_positional_embeddings=prompts["prompt_dense_positional_embeddings"],
            prompt_sparse_embeddings=prompts["prompt_sparse_embeddings"],
            prompt_dense_embeddings=prompts["prompt_dense_embeddings"])
        chosen = slice(1, None) if self.multimask_output else slice(0, 1)
        return {"mask_logits": ops.cast(decoded["masks"][:, chosen], "float32"),
                "iou_scores": ops.cast(decoded["iou_pred"][:, chosen], "float32")}

    def _prompts(self, inputs):
        """The input dict's prompts in keras-hub's layout (boxes as corners, points padded)."""
        prompts = {}
        boxes = inputs.get("input_boxes")
        if boxes is not None:
            boxes = _one_set("input_boxes", ops.cast(boxes, "float32"), (4,), "(B, 4) or (B, 1, 4)")
            prompts["boxes"] = ops.reshape(boxes, (-1, 1, 2, 2))
        points = inputs.get("input_points")
        if points is not None:
            points = _one_set("input_points", ops.cast(points, "float32"), (None, 2), "(B, N, 2) or (B, 1, N, 2)")
            points = points[:, 0]
            labels = inputs.get("input_labels")
            if labels is None:
                labels = ops.ones(ops.shape(points)[:2], "float32")
            else:
                labels = _one_set("input_labels", ops.cast(labels, "float32"), (None,), "(B, N) or (B, 1, N)")[:, 0]
            if boxes is None:  # SAM pads points given alone with a point labelled "not a point"
                points = ops.concatenate([points, ops.zeros_like(points[:, :1])], axis=1)
                labels = ops.concatenate([labels, -ops.ones_like(labels[:, :1])], axis=1)
            prompts["points"], prompts["labels"] = points, labels
        masks = inputs.get("input_masks")
        if masks is not None:
            grid = self.mask_grid
            masks = _one_set("input_masks", ops.cast(masks, "float32"), (grid, grid),
                             f"(B, {grid}, {grid}) or (B, 1, {grid}, {grid}) on the {grid}x{grid} logits grid")
            prompts["masks"] = masks[..., None]
        if not prompts:  # SAM's empty prompt: no sparse token at all, as in transformers' SAM
            image = inputs.get("image_embeddings")
            batch = ops.shape(image if image is not None else inputs["pixel_values"])[0]
            prompts["points"], prompts["labels"] = ops.zeros((batch, 0, 2)), ops.zeros((batch, 0))
        return prompts

    def segment(self, image, *, boxes=(), points=(), labels=None, mask_input=None, best=True):
        """Masks for one image at its own resolution, from prompts in its own pixels (boxes,
        positive and negative clicks, a previous mask to refine, or none): as the tf-keras
        `SamSegmenter.segment` (`keras_sam.common.inference.segment_image`)."""
        if hasattr(image, "keys"):  # the input dict, as segment took before 0.2
            warnings.warn("SamSegmenter.segment(inputs) with the input dict is deprecated: call the model, "
                          "model(inputs), or segment(image, boxes=..., points=...) for masks at an "
                          "image's resolution", DeprecationWarning, stacklevel=2)
            outputs = self(image, training=False)
            return outputs["mask_logits"], outputs["iou_scores"]
        from keras_sam.common.inference import segment_image

        return segment_image(self, image, boxes=boxes, points=points, labels=labels, mask_input=mask_input,
                             best=best)

    # ------------------------------------------------------------------------ training
    def compile(self, optimizer="auto", loss="auto", metrics="auto", weighted_metrics=None, **kwargs):
        """As the tf-keras SamSegmenter.compile: Adam(1e-5), DiceLoss, Dice and IoU by default;
        metrics get probabilities (B, G, G, 1), `from_logits` ones the logits."""
        optimizer = auto(optimizer, lambda: keras.optimizers.Adam(learning_rate=1e-5))
        loss, metrics = auto(loss, DiceLoss), auto(metrics, lambda: [DiceScore(), IoUScore()])
        arguments = dict(optimizer=optimizer, loss=loss, metrics=on_masks(metrics, keras, OnProbabilities),
                         weighted_metrics=on_masks(weighted_metrics, keras, OnProbabilities), **kwargs)
        object.__setattr__(self, "_compile_arguments", arguments)  # not tracked: no duplicate metrics
        super().compile(**arguments)

    def compile_from_config(self, config):
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built and getattr(self.optimizer, "built", True) is False:
            self.optimizer.build(self.trainable_variables)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The compiled loss on the trained mask (best of M by loss), plus the IoU head's error:
        `keras_sam.common.training_objective`'s objective, as in the tf-keras family. With clicks, each
        target scores both of its sample's predictions (the first click's and the last round's)."""
        y, sample_weight = _per_click_round(x, y, sample_weight)
        y, pixel_weights = self._targets(y), self._pixel_weights(sample_weight)
        terms = training_objective.objective_terms(
            OPS, y, y_pred, pixel_weights, lambda y, logits: self._per_sample_loss(y, logits, pixel_weights),
            self._trained_iou_loss_weight())
        loss = super().compute_loss(x, y[..., None], terms.trained[..., None], pixel_weights, training=training)
        if terms.iou_loss is None:
            return loss
        self._iou_loss_tracker.update_state(terms.iou_errors, sample_weight=terms.sample_weights)
        return loss + training_objective.replica_share(terms.iou_loss, replicas())

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        """Metrics on the mask the model would hand out (highest predicted IoU), as (B, G, G, 1)."""
        logits = training_objective.highest_scored_masks(OPS, y_pred["mask_logits"], y_pred["iou_scores"])
        y, sample_weight = _per_click_round(x, y, sample_weight)
        return super().compute_metrics(x, self._targets(y)[..., None], logits[..., None],
                                       self._pixel_weights(sample_weight))

    def _targets(self, y):
        if y is None:
            raise ValueError("fit/evaluate need targets: binary masks on the logits grid")
        grid = self.mask_grid
        y = _one_set("targets", ops.cast(y, "float32"), (grid, grid),
                     f"(B, {grid}, {grid}) or (B, 1, {grid}, {grid}) on the model's logits grid "
                     "(resize and pad them like the image: SamProcessor's segmentation_maps does)")
        return y[:, 0]

    def _pixel_weights(self, sample_weight):
        if sample_weight is None:
            return None
        weights = ops.cast(sample_weight, "float32")
        grid = self.mask_grid
        if len(weights.shape) <= 1 or (len(weights.shape) == 2 and weights.shape[1] == 1):
            return training_objective.per_pixel(OPS, weights, grid)
        return _one_set("sample_weight", weights, (grid, grid),
                        f"(B,) per sample, or (B, {grid}, {grid}) or (B, 1, {grid}, {grid}) per pixel")[:, 0]

    # ------------------------------------------------------------------------ saving
    def get_config(self):
        return {
            "image_encoder": keras.saving.serialize_keras_object(self.image_encoder),
            "prompt_encoder": keras.saving.serialize_keras_object(self.prompt_encoder),
            "mask_decoder": keras.saving.serialize_keras_object(self.mask_decoder),
            "decoder_norm_epsilon": self.decoder_norm_epsilon,
            "trained_prompt": self.trained_prompt,
            **self.options_config(),
            **({"lora": dict(self._lora)} if getattr(self, "_lora", None) is not None else {}),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        parts = [keras.saving.deserialize_keras_object(config.pop(key))
                 for key in ("image_encoder", "prompt_encoder", "mask_decoder")]
        lora = config.pop("lora", None)
        model = cls(*parts, **config)
        if lora is not None:
            model.adapt("lora", **lora)
        return model


def _hashed_noise(seed, step, grid):
    """(B, G, G) values in [0, 1) from each sample's (B, 2) integer seed and the round: a classic
    sine hash, stateless and the same on every backend (the clicks' tie-breaking randomness)."""
    rows = ops.arange(grid, dtype="float32")[None, :, None]
    columns = ops.arange(grid, dtype="float32")[None, None, :]
    seed = ops.cast(seed, "float32")
    angle = (rows * 12.9898 + columns * 78.233 + seed[:, 0, None, None] * 0.1731
             + seed[:, 1, None, None] * 0.7397 + float(step) * 3.1113)
    value = ops.sin(angle) * 43758.5453
    return value - ops.floor(value)


def _with_click_targets(x, y):
    """A clicks dataset (or input dict) with its targets added to the inputs as CLICK_TARGETS: the
    model draws its clicks from them. Anything else as it is."""
    spec = getattr(x, "element_spec", None)
    if isinstance(spec, tuple) and isinstance(spec[0], dict) and "click_rounds" in spec[0]:
        return x.map(lambda inputs, targets, *rest: ({**inputs, CLICK_TARGETS: targets}, targets, *rest)), y
    if isinstance(x, dict) and "click_rounds" in x and y is not None:
        return {**x, CLICK_TARGETS: y}, y
    return x, y


def _per_click_round(x, y, sample_weight):
    """Targets (and weights) repeated for the two predictions of each clicks sample."""
    if not (hasattr(x, "keys") and x.get("click_rounds") is not None):
        return y, sample_weight
    repeat = lambda value: None if value is None else ops.concatenate([value, value], axis=0)  # noqa: E731
    return repeat(y), repeat(sample_weight)


def _check_keys(inputs):
    if not hasattr(inputs, "keys"):
        raise TypeError("SamSegmenter inputs must be a dict with keys among "
                        f"{', '.join(IMAGE_INPUTS + PROMPT_INPUTS)}; got {type(inputs).__name__}")
    unknown = sorted(set(inputs) - set(IMAGE_INPUTS + PROMPT_INPUTS + CLICK_INPUTS + (CLICK_TARGETS,)))
    if unknown:
        raise ValueError(f"unknown input key(s) {', '.join(map(repr, unknown))}; SamSegmenter takes "
                         f"{', '.join(IMAGE_INPUTS + PROMPT_INPUTS)}")
    images = [key for key in IMAGE_INPUTS if inputs.get(key) is not None]
    if len(images) != 1:
        raise ValueError("give exactly one of pixel_values and image_embeddings; got "
                         f"{', '.join(images) if images else 'neither'}")
    if inputs.get("input_labels") is not None and inputs.get("input_points") is None:
        raise ValueError("input_labels given without input_points")


def _one_set(name, tensor, tail, expected):
    """`tensor` (B, *tail) or (B, 1, *tail) -> (B, 1, *tail); wrong known sizes raise ValueError."""
    shape = tuple(tensor.shape)
    if len(shape) == len(tail) + 1:
        tensor = ops.expand_dims(tensor, 1)
    elif len(shape) != len(tail) + 2 or shape[1] not in (None, 1):
        raise ValueError(f"{name} must have shape {expected}; got {shape}")
    for have, need in zip(tuple(tensor.shape)[2:], tail):
        if need is not None and have is not None and have != need:
            raise ValueError(f"{name} must have shape {expected}; got {shape}")
    return tensor
