"""Gradient checkpointing for the tf-keras image encoder: each block's activations recomputed in
the backward pass instead of kept from the forward pass.

When the encoder learns (LoRA, adapters, full), a training step keeps every block's attention
scores and MLP activations for the gradient: most of a step's memory at sam-vit-base size. With
`recompute_blocks(sam)` only each block's input is kept, and the block runs again during the
backward pass (Chen et al. 2016, "Training Deep Nets with Sublinear Memory Cost"): less memory for
about one more forward pass of the encoder. The values and gradients are the same.
"""

import types

import tensorflow as tf


def recompute_blocks(sam):
    """Wraps every TFSamVisionLayer of `sam`'s vision encoder in `tf.recompute_grad`; returns sam."""
    for block in sam.vision_encoder.layers:
        _recompute(block)
    return sam


def _recompute(block):
    own_call = block.call

    def call(self, hidden_states, output_attentions=False, training=False):
        if output_attentions:  # attention maps asked for: keep them, as the plain block does
            return own_call(hidden_states, output_attentions=output_attentions, training=training)
        recomputed = tf.recompute_grad(lambda x: own_call(x, output_attentions=False, training=training)[0])
        return (recomputed(hidden_states),)

    block.call = types.MethodType(call, block)
    return block
