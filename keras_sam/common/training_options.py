"""SAM's components, which of them train, and the training options both model families share
(no Keras here)."""

from keras_sam.common import training_objective

COMPONENTS = ("vision_encoder", "prompt_encoder", "mask_decoder", "iou_head")


def frozen_names(names):
    """`freeze=` as a checked tuple of component names.

    Raises:
        ValueError: a name that is not a component, with the list of those that are.
    """
    names = (names,) if isinstance(names, str) else tuple(names or ())
    unknown = [name for name in names if name not in COMPONENTS]
    if unknown:
        raise ValueError(f"cannot freeze {', '.join(map(repr, unknown))}: SAM's components are "
                         f"{', '.join(COMPONENTS)}")
    return names


def trainable_flags(frozen):
    """{component: trainable} for a tuple of frozen names (the IoU head is part of the decoder)."""
    flags = {name: name not in frozen for name in COMPONENTS}
    if "mask_decoder" in frozen and "iou_head" not in frozen:
        flags["iou_head"] = False
    return flags


def auto(value, make):
    """`make()` where a compile() argument is left at "auto", else the value as given."""
    return make() if isinstance(value, str) and value == "auto" else value


class TrainingOptions:
    """What a segmenter trains, as properties both model families share (a mixin before the Model).

    `multimask_output` and `iou_loss_weight` change what a training step computes: setting either
    drops the traced steps so the next call re-traces. `freeze` sets each component's `trainable`
    and compiles again with the same arguments where the model was compiled, since Keras trains
    what was trainable at compile(). The model provides `_component(name)` and
    `_compile_arguments` (None until compiled), and for the training objective its family's
    `_objective_ops`, `_keras_module`, `_per_sample_arrays` and `_mask_loss_class`.
    """

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

    @property
    def freeze(self):
        """Names of the frozen components; assign a new list to change it, even after compile."""
        return self._frozen

    @freeze.setter
    def freeze(self, names):
        self._frozen = frozen_names(names)
        self._apply_freeze()
        if self._compile_arguments is not None:
            self.compile(**self._compile_arguments)

    def options_config(self):
        """The options above (and the model's name) as `get_config` entries."""
        return {"freeze": list(self.freeze), "multimask_output": self.multimask_output,
                "iou_loss_weight": self.iou_loss_weight, "name": self.name}

    def _per_sample_loss(self, y, logits, pixel_weights):
        """The compiled loss of each sample (B,), through the shared training objective."""
        return training_objective.per_sample_loss(self._objective_ops, self._keras_module, self.loss, y, logits,
                                                  pixel_weights, self._per_sample_arrays, self._mask_loss_class)

    def _trained_iou_loss_weight(self):
        """The IoU head's loss weight, 0 while the IoU head is frozen (it then gets no loss)."""
        return self.iou_loss_weight if self._component("iou_head").trainable else 0.0

    def _apply_freeze(self):
        for name, trainable in trainable_flags(self._frozen).items():
            self._component(name).trainable = trainable
