"""LoRA for tf-keras Dense layers: a low-rank update added to a frozen layer's output.

Hu et al. 2021, "LoRA: Low-Rank Adaptation of Large Language Models": a frozen kernel W (in, out)
learns through W + (alpha / rank) * A @ B, with A (in, rank) random and B (rank, out) zero at the
start, so the adapted model computes exactly what the frozen one does until B moves. Keras 3's
`Dense.enable_lora` is the same design; this is its tf-keras counterpart for TFSamModel, whose
layers are tf-keras ones.

The update is a layer of its own (`LoraDense`), owned by the segmenter, not by the Dense layer it
updates: freezing the image encoder (`vision_encoder.trainable = False`) then leaves the update
trainable, so the optimizer holds state for A and B only and every encoder weight stays
bit-identical. `attach_update(dense, update)` makes the Dense layer add the update to its output,
whatever calls it (TFSamModel's code or keras_sam.tfkeras.tf_sam_patches' faster rewrites).
"""

import contextlib
import types

import numpy as np
import tensorflow as tf
import tf_keras as keras


@keras.saving.register_keras_serializable(package="keras_sam")
class LoraDense(keras.layers.Layer):
    """The low-rank update (alpha / rank) * x @ A @ B of one linear Dense layer.

    Args:
        input_dim: the Dense layer's input width.
        units: its output width.
        rank: the rank of the update (A is (input_dim, rank), B is (rank, units)).
        alpha: the update's scale is alpha / rank; None means alpha = rank (scale 1, as Keras 3's
            `enable_lora` and SAMed use).

    Call: (..., input_dim) -> (..., units), in the layer's compute dtype. It is zero until B
    leaves its zero start.

    Example:
        >>> update = LoraDense(32, 96, rank=4)
        >>> attach_update(dense, update)  # dense(x) now returns its output plus update(x)  # doctest: +SKIP
    """

    def __init__(self, input_dim, units, rank, alpha=None, **kwargs):
        super().__init__(**kwargs)
        self.input_dim, self.units, self.rank = int(input_dim), int(units), int(rank)
        self.alpha = float(rank if alpha is None else alpha)
        # A as Keras 3's enable_lora starts it (He uniform), B at zero: the update starts at zero.
        self.lora_a = self.add_weight("lora_a", shape=(self.input_dim, self.rank),
                                      initializer=keras.initializers.HeUniform(), trainable=True)
        self.lora_b = self.add_weight("lora_b", shape=(self.rank, self.units),
                                      initializer="zeros", trainable=True)
        self.built = True

    @property
    def scale(self):
        return self.alpha / self.rank

    def call(self, inputs):
        # On (N, C) rows: a rank-4 tensor times a broadcast rank-2 one is the matmul that TensorFlow
        # 2.19-2.21 with oneDNN can corrupt (keras_sam.tfkeras.tf_sam_patches, fix 1).
        rows = tf.reshape(inputs, (-1, self.input_dim))
        update = tf.matmul(tf.matmul(rows, self.lora_a), self.lora_b) * tf.cast(self.scale, rows.dtype)
        return tf.reshape(update, tf.concat([tf.shape(inputs)[:-1], [self.units]], axis=0))

    def delta_kernel(self):
        """(alpha / rank) * A @ B as a float32 numpy array: what merging adds to the kernel."""
        return self.scale * (self.lora_a.numpy().astype(np.float64) @ self.lora_b.numpy().astype(np.float64))

    def get_config(self):
        return {**super().get_config(), "input_dim": self.input_dim, "units": self.units,
                "rank": self.rank, "alpha": self.alpha}


def attach_update(layer, update, scale=1.0):
    """Makes `layer` return its own output plus `scale * update(inputs)`.

    Only the instance's `call` changes (as keras_sam.tfkeras.tf_sam_patches does), and `update` is not
    tracked by `layer`: its weights stay with whoever owns it, trainable while `layer` is frozen.
    """
    own_call = layer.call

    def call(self, inputs, *args, **kwargs):
        output = own_call(inputs, *args, **kwargs)
        return output + tf.cast(scale, output.dtype) * tf.cast(update(inputs), output.dtype)

    layer.call = types.MethodType(call, layer)
    return layer


def check_linear(dense, name):
    """Refuses a Dense layer with an activation: its update could not be merged into the kernel."""
    if not isinstance(dense, keras.layers.Dense):
        raise TypeError(f"LoRA updates Dense layers; {name} is a {type(dense).__name__}")
    if dense.activation is not keras.activations.linear:
        raise ValueError(f"LoRA on {name} cannot be merged: it applies {dense.activation.__name__} "
                         "after its kernel; choose a linear layer")
    return dense


@contextlib.contextmanager
def merged_kernels(pairs):
    """Within the block, each (dense, update) pair's kernel holds W + (alpha / rank) * A @ B.

    The kernels get their exact former values back on leaving, even on an error, so training can
    go on unmerged. Outside the block the model computes the same (to float32 rounding) merged or
    not; save an ordinary SAM inside it.
    """
    saved = [(dense.kernel, dense.kernel.numpy()) for dense, _ in pairs]
    try:
        for (dense, update), (_, kernel) in zip(pairs, saved):
            dense.kernel.assign((kernel.astype(np.float64) + update.delta_kernel()).astype(kernel.dtype))
        yield
    finally:
        for variable, kernel in saved:
            variable.assign(kernel)
