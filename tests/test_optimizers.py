"""FusedAdam: Keras's Adam, one kernel per weight's update."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from keras_sam import FusedAdam

SHAPES = [(16, 8), (8,), (32, 32)]


def train(optimizer, steps=30, seed=0):
    """Weights after `steps` updates from seeded random gradients, and how many ops a step ran."""
    rng = np.random.default_rng(seed)
    weights = [tf.Variable(rng.normal(size=shape).astype(np.float32)) for shape in SHAPES]

    @tf.function
    def step(gradients):
        optimizer.apply_gradients(zip(gradients, weights))

    for _ in range(steps):
        step([tf.constant(rng.normal(size=shape).astype(np.float32)) for shape in SHAPES])
    ops = len(step.get_concrete_function([tf.TensorSpec(shape) for shape in SHAPES]).graph.get_operations())
    return [weight.numpy() for weight in weights], ops


@pytest.mark.parametrize("learning_rate", [1e-2, "schedule"])
def test_fused_adam_trains_as_keras_adam_does_with_fewer_ops(learning_rate):
    def rate():
        if learning_rate == "schedule":
            return keras.optimizers.schedules.ExponentialDecay(1e-2, decay_steps=10, decay_rate=0.5)
        return learning_rate

    options = dict(beta_1=0.8, beta_2=0.99, epsilon=1e-6, jit_compile=False)
    keras_weights, keras_ops = train(keras.optimizers.Adam(rate(), **options))
    fused_weights, fused_ops = train(FusedAdam(rate(), **options))
    moved = max(float(np.abs(a - b).max()) for a, b in zip(keras_weights, train(FusedAdam(rate()), steps=0)[0]))
    assert moved > 0.05  # the weights really moved: agreement below is not two untouched copies
    for expected, actual in zip(keras_weights, fused_weights):
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)
    assert keras_ops - fused_ops > 20 * len(SHAPES)  # Keras makes some 40 ops a weight, FusedAdam 7-10


def test_where_the_kernel_does_not_apply_the_update_is_keras_own():
    keras_weights, _ = train(keras.optimizers.Adam(1e-2, amsgrad=True, jit_compile=False))
    fused_weights, _ = train(FusedAdam(1e-2, amsgrad=True, jit_compile=False))
    for expected, actual in zip(keras_weights, fused_weights):
        np.testing.assert_array_equal(actual, expected)

    embeddings = {name: tf.Variable(np.ones((5, 3), np.float32)) for name in ("keras", "fused")}
    sparse = tf.IndexedSlices(tf.ones((2, 3)), tf.constant([1, 3]))
    keras.optimizers.Adam(0.1).apply_gradients([(sparse, embeddings["keras"])])
    FusedAdam(0.1).apply_gradients([(sparse, embeddings["fused"])])
    np.testing.assert_array_equal(embeddings["fused"].numpy(), embeddings["keras"].numpy())
    assert embeddings["fused"].numpy()[0, 0] == 1.0 and embeddings["fused"].numpy()[1, 0] < 1.0


def test_fused_adam_round_trips_through_keras_serialization():
    optimizer = FusedAdam(3e-4, beta_1=0.85, jit_compile=False)
    revived = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert type(revived) is FusedAdam
    assert revived.get_config() == optimizer.get_config()


def test_fused_adam_under_loss_scaling_trains_as_keras_adam_does():
    # mixed_float16 wraps the optimizer in a LossScaleOptimizer, which calls apply_gradients with
    # Keras's own keyword arguments.
    weights = {}
    for name, adam in (("keras", keras.optimizers.Adam), ("fused", FusedAdam)):
        optimizer = keras.mixed_precision.LossScaleOptimizer(adam(1e-2, jit_compile=False))
        weights[name], _ = train(optimizer, steps=10)
    for expected, actual in zip(weights["keras"], weights["fused"]):
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6)
