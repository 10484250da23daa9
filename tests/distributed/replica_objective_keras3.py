"""Run in its own process: one SGD step of the Keras 3 SamSegmenter without distribution and on
2 replicas, on the same 8-sample batch (multimask, IoU head, per-pixel weights). Prints one JSON
line (see replica_batch.report).

argv: the tests folder, then "tensorflow" (tf.distribute.MirroredStrategy over 2 logical CPUs) or
"jax" (keras.distribution.DataParallel over 2 host devices).
"""

import json
import os
import sys

backend = sys.argv[2]
os.environ["KERAS_BACKEND"] = backend
os.environ.pop("TF_USE_LEGACY_KERAS", None)
if backend == "jax":
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
else:
    from two_cpus import split_the_cpu_in_two

    split_the_cpu_in_two()
    import tensorflow as tf

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, sys.argv[1])
from distributed.replica_batch import replica_batch, report  # noqa: E402
from keras_sam.common.configs import tiny_sam_config  # noqa: E402
from keras_sam.keras3 import DiceBCELoss, SamSegmenter  # noqa: E402

x, y, weights = replica_batch()


def make(initial=None):
    keras.utils.set_random_seed(0)
    model = SamSegmenter.from_sam_config(tiny_sam_config(), multimask_output=True, iou_loss_weight=2.0)
    if initial is not None:
        model.set_weights(initial)
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss=DiceBCELoss())
    return model


def step(model, data):
    """(logged loss, trainable weights before, after) of one fit step on the global batch of 8."""
    before = [np.array(keras.ops.convert_to_numpy(w)) for w in model.trainable_weights]
    history = model.fit(data, epochs=1, verbose=0) if backend == "tensorflow" else model.fit(
        x, y, sample_weight=weights, batch_size=8, epochs=1, verbose=0, shuffle=False)
    return history.history["loss"][0], before, [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]


reference_model = make()
initial = reference_model.get_weights()
# The loss the optimizer is handed, computed outside fit without distribution.
direct = float(keras.ops.convert_to_numpy(
    reference_model.compute_loss(x, y, reference_model(x, training=True), weights)))
dataset = None
if backend == "tensorflow":
    dataset = tf.data.Dataset.from_tensor_slices((x, y, weights)).batch(8)
one = step(make(initial), dataset)
if backend == "tensorflow":
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = make(initial)
    replicas = strategy.num_replicas_in_sync
else:
    devices = keras.distribution.list_devices("cpu")
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    model = make(initial)
    replicas = len(devices)
two = step(model, dataset)
print(json.dumps(report(one, two, direct, replicas)))
