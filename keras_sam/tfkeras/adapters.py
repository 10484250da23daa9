"""Bottleneck adapters for the tf-keras image encoder, after Medical SAM Adapter.

Wu et al. 2023, "Medical SAM Adapter: Adapting Segment Anything Model for Medical Image
Segmentation" (github.com/KidsWithTokens/Medical-SAM-Adapter), following AdaptFormer (Chen et al.
2022): each block of the frozen ViT gets two small MLPs (width -> width/4 -> width, GELU)
- one after the attention, added to its output (Med-SA's "Space_Adapter", with its skip);
- one beside the block's MLP on the same normalised input, its output scaled by 0.5 and added
  (Med-SA's "MLP_Adapter").

Unlike Med-SA, each adapter's up-projection starts at zero (as AdaptFormer does), so the adapted
encoder computes exactly what the frozen one does until training moves it.
"""

import tensorflow as tf
import tf_keras as keras

MLP_ADAPTER_SCALE = 0.5  # Med-SA's scale for the adapter beside the MLP


@keras.saving.register_keras_serializable(package="keras_sam")
class BottleneckAdapter(keras.layers.Layer):
    """up(gelu(down(x))): (..., width) -> (..., width), zero until `up` leaves its zero start.

    Args:
        width: the input and output width.
        hidden: the bottleneck's width.
    """

    def __init__(self, width, hidden, **kwargs):
        super().__init__(**kwargs)
        self.width, self.hidden = int(width), int(hidden)
        self.down_kernel = self.add_weight("down_kernel", shape=(self.width, self.hidden),
                                           initializer="glorot_uniform", trainable=True)
        self.down_bias = self.add_weight("down_bias", shape=(self.hidden,), initializer="zeros", trainable=True)
        self.up_kernel = self.add_weight("up_kernel", shape=(self.hidden, self.width),
                                         initializer="zeros", trainable=True)
        self.up_bias = self.add_weight("up_bias", shape=(self.width,), initializer="zeros", trainable=True)
        self.built = True

    def call(self, inputs):
        rows = tf.reshape(inputs, (-1, self.width))  # 2-D matmuls (see keras_sam.tfkeras.lora)
        hidden = tf.nn.gelu(tf.nn.bias_add(tf.matmul(rows, self.down_kernel), self.down_bias))
        rows = tf.nn.bias_add(tf.matmul(hidden, self.up_kernel), self.up_bias)
        return tf.reshape(rows, tf.shape(inputs))

    def get_config(self):
        return {**super().get_config(), "width": self.width, "hidden": self.hidden}


def attach_after_attention(attention, adapter):
    """Makes a TFSamVisionAttention return `out + adapter(out)` (Med-SA's Space_Adapter)."""
    own_call = attention.call

    def call(self, hidden_states, output_attentions=False, training=False):
        output, weights = own_call(hidden_states, output_attentions=output_attentions, training=training)
        return output + tf.cast(adapter(output), output.dtype), weights

    attention.call = call.__get__(attention)
    return attention
