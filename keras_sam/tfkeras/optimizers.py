"""Keras's Adam with each weight's update done by one TensorFlow kernel (the tf-keras family).

tf-keras's Adam builds dozens of small graph ops for each weight it updates (the moments, the
bias correction, the step), and SAM's mask decoder has over a hundred weights: the optimizer
alone made most of a decoder step's ops. TensorFlow's `ResourceApplyAdam` kernel updates each
weight in one op, with the step's scalars made once, so the step runs and traces sooner
(BENCHMARKS.md has the figures). The formula is Keras's own:

    m <- m + (g - m) (1 - beta_1)          v <- v + (g^2 - v) (1 - beta_2)
    w <- w - lr sqrt(1 - beta_2^t) / (1 - beta_1^t) * m / (sqrt(v) + epsilon)

so a model trained with either agrees to float32 rounding; the variables and the saved
optimizer state are Keras's too.
"""

import tensorflow as tf
import tf_keras as keras


@keras.saving.register_keras_serializable(package="keras_sam")
class FusedAdam(keras.optimizers.Adam):
    """`keras.optimizers.Adam`, each dense float update by one kernel (see the module).

    Takes Adam's arguments. Where the kernel does not apply (sparse gradients, `amsgrad`,
    `adaptive_epsilon`, or a weight whose dtype differs from its gradient's), the update is
    Keras's own.
    """

    @tf.__internal__.tracking.no_automatic_dependency_tracking
    def apply_gradients(self, grads_and_vars, *args, **kwargs):
        self._step_constants = {}  # by dtype and graph: the step's scalars, made once for all its weights
        try:
            # Keras's own arguments pass through (a LossScaleOptimizer gives skip_gradients_aggregation).
            return super().apply_gradients(grads_and_vars, *args, **kwargs)
        finally:
            del self._step_constants

    def update_step(self, gradient, variable):
        if (isinstance(gradient, tf.IndexedSlices) or self.amsgrad or getattr(self, "adaptive_epsilon", False)
                or gradient.dtype != variable.dtype or not hasattr(self, "_step_constants")):
            return super().update_step(gradient, variable)
        dtype = variable.dtype
        # Shared only within one graph: with XLA (on a GPU) Keras traces each weight's update apart.
        key = (dtype, tf.compat.v1.get_default_graph())
        if key not in self._step_constants:
            step = tf.cast(self.iterations + 1, dtype)
            beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
            self._step_constants[key] = dict(
                beta1_power=tf.pow(beta_1, step), beta2_power=tf.pow(beta_2, step), beta1=beta_1, beta2=beta_2,
                lr=tf.cast(self.learning_rate, dtype), epsilon=tf.cast(self.epsilon, dtype))
        moments = self._index_dict[self._var_key(variable)]
        return tf.raw_ops.ResourceApplyAdam(
            var=variable.handle, m=self._momentums[moments].handle, v=self._velocities[moments].handle,
            grad=gradient, **self._step_constants[key])
