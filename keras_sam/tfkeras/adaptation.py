"""Parameter-efficient adaptation of a tf-keras SamSegmenter's image encoder: LoRA or adapters.

`EncoderAdaptation` holds the new weights (one `keras_sam.tfkeras.lora.LoraDense` per updated layer, or
two `keras_sam.tfkeras.adapters.BottleneckAdapter` per block) and installs them into a TFSamModel's
vision encoder. The segmenter owns it beside its TFSamModel, so the encoder can stay frozen and
bit-identical while these weights train. Call `SamSegmenter.adapt(...)` rather than this module.
"""

import tensorflow as tf
import tf_keras as keras

from keras_sam.common.adaptation_options import (DEFAULT_ADAPTER_RATIO, DEFAULT_LORA_RANK, DEFAULT_LORA_TARGETS,
                                                 check_rank, check_targets)
from keras_sam.tfkeras.adapters import MLP_ADAPTER_SCALE, BottleneckAdapter, attach_after_attention
from keras_sam.tfkeras.lora import LoraDense, attach_update, check_linear, merged_kernels

PARAMETER_EFFICIENT = ("lora", "adapter")


def _target_layers(block, target):
    """The Dense layers a LoRA target names in one TFSamVisionLayer."""
    return {"qkv": [block.attn.qkv], "proj": [block.attn.proj], "mlp": [block.mlp.lin1, block.mlp.lin2]}[target]


@keras.saving.register_keras_serializable(package="keras_sam")
class EncoderAdaptation(keras.layers.Layer):
    """The trainable additions to a frozen SAM image encoder.

    Args:
        method: "lora" or "adapter".
        rank: LoRA's rank (method "lora").
        targets: LoRA's targets in every block, among keras_sam.common.adaptation_options.LORA_TARGETS.
        alpha: LoRA's scale is alpha / rank; None for alpha = rank.
        ratio: an adapter's bottleneck width as a share of the encoder's width (method "adapter").

    Raises:
        ValueError: an unknown method or target, a rank below 1, a ratio outside (0, 1].
    """

    def __init__(self, method, rank=DEFAULT_LORA_RANK, targets=DEFAULT_LORA_TARGETS, alpha=None,
                 ratio=DEFAULT_ADAPTER_RATIO, **kwargs):
        kwargs.setdefault("name", "encoder_adaptation")
        super().__init__(**kwargs)
        if method not in PARAMETER_EFFICIENT:
            raise ValueError(f"EncoderAdaptation is {' or '.join(PARAMETER_EFFICIENT)}; got {method!r}")
        self.method = method
        self.rank = check_rank(rank)
        self.targets = check_targets(targets)
        self.alpha = alpha
        if not 0 < float(ratio) <= 1:
            raise ValueError(f"adapter ratio must be in (0, 1] (0.25 is Medical SAM Adapter's); got {ratio!r}")
        self.ratio = float(ratio)
        self.additions = []
        self._untracked_pairs()

    @tf.__internal__.tracking.no_automatic_dependency_tracking
    def _untracked_pairs(self):
        # (Dense layer, its LoraDense): what merging changes. Not tracked: the encoder's layers
        # would count among this layer's weights.
        self._pairs = []

    def install(self, sam):
        """Creates the new weights for `sam`'s vision encoder and makes its layers use them."""
        if self.additions:
            raise RuntimeError("this EncoderAdaptation is already installed")
        blocks = sam.vision_encoder.layers
        width = sam.config.vision_config.hidden_size
        for index, block in enumerate(blocks):
            if self.method == "lora":
                for target in self.targets:
                    for dense in _target_layers(block, target):
                        check_linear(dense, f"block {index}'s {dense.name}")
                        update = LoraDense(dense.kernel.shape[0], dense.kernel.shape[1], self.rank, self.alpha,
                                           dtype=dense.dtype_policy, name=f"block{index}_{dense.name}_lora")
                        attach_update(dense, update)
                        self.additions.append(update)
                        self._pairs.append((dense, update))
            else:
                hidden = max(1, int(round(width * self.ratio)))
                space = BottleneckAdapter(width, hidden, dtype=block.attn.dtype_policy,
                                          name=f"block{index}_attention_adapter")
                beside_mlp = BottleneckAdapter(width, hidden, dtype=block.mlp.dtype_policy,
                                               name=f"block{index}_mlp_adapter")
                attach_after_attention(block.attn, space)
                attach_update(block.mlp, beside_mlp, scale=MLP_ADAPTER_SCALE)
                self.additions.extend([space, beside_mlp])
        return self

    @property
    def mergeable(self):
        """LoRA folds into the kernels; adapters add layers SAM does not have."""
        return self.method == "lora"

    def merged(self):
        """A context in which the encoder's kernels hold the LoRA updates (keras_sam.tfkeras.lora.merged_kernels)."""
        if not self.mergeable:
            raise ValueError("adapters cannot be merged into SAM's weights: they add layers an ordinary "
                             "SAM does not have; save with model.save('model.keras') instead")
        return merged_kernels(self._pairs)

    def get_config(self):
        return {**super().get_config(), "method": self.method, "rank": self.rank,
                "targets": list(self.targets), "alpha": self.alpha, "ratio": self.ratio}

    def options(self):
        """The arguments `SamSegmenter.adapt` takes to rebuild this adaptation."""
        return {"method": self.method, "rank": self.rank, "targets": list(self.targets),
                "alpha": self.alpha, "ratio": self.ratio}
