"""LoRA on the Keras 3 SamSegmenter's image encoder, with Keras's own `Dense.enable_lora`.

keras-hub's `Backbone.enable_lora()` picks layers by name ("query", "value", ...), as its
text models name them; the ViTDet image encoder has one fused `qkv` Dense per block with an
automatic name ("dense_12"), so it matches nothing there. This module finds the attention's
projections (and the MLP's layers) by their place in each block instead and calls Keras's
`enable_lora(rank)` on each: A random, B zero, the kernel frozen, so the output is unchanged at
step 0. `keep_only_lora_trainable` then freezes every other weight of the encoder, the Dense
layers' biases too (Keras leaves them trainable), so only A and B learn.

Saving: the `kernel` property of a LoRA Dense is the merged kernel, so `save_pretrained` (and
`keras-sam convert`) write an ordinary SAM. A `.keras` file also holds the merged kernel: Keras's
`Dense.save_own_variables` merges and its `load_own_variables` sets A and B to zero. The loaded
model predicts the same and can go on training, but A, B and their optimizer state start afresh.
"""

from keras_sam.common.adaptation_options import check_rank, check_targets


def _blocks(image_encoder):
    return [layer for layer in image_encoder.layers if type(layer).__name__ == "WindowedTransformerEncoder"]


def target_layers(image_encoder, targets):
    """The Dense layers the LoRA targets ("qkv", "proj", "mlp") name in every encoder block."""
    layers = []
    for block in _blocks(image_encoder):
        for target in check_targets(targets):
            if target == "qkv":
                layers.append(block.attention.qkv)
            elif target == "proj":
                layers.append(block.attention.projection)
            else:
                layers.extend(layer for layer in block.mlp_block.dense_net.layers
                              if type(layer).__name__ == "Dense")
    return layers


def enable_encoder_lora(image_encoder, rank, targets):
    """Keras's `enable_lora(rank)` on the target layers of every block; returns them."""
    rank = check_rank(rank)
    layers = target_layers(image_encoder, targets)
    if not layers:
        raise ValueError("the image encoder has no ViTDet blocks (WindowedTransformerEncoder) to put LoRA on")
    for layer in layers:
        layer.enable_lora(rank)
    return layers


def keep_only_lora_trainable(image_encoder):
    """The encoder trainable, but of its weights only LoRA's A and B."""
    image_encoder.trainable = True
    for variable in image_encoder.weights:
        variable.trainable = variable.name in ("lora_kernel_a", "lora_kernel_b")
