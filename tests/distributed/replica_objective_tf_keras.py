"""Run in its own process: one SGD step of the tf-keras SamSegmenter on one device and under
MirroredStrategy over 2 logical CPUs, on the same 8-sample batch (multimask, IoU head, per-pixel
weights). Prints one JSON line (see replica_batch.report). argv: the tests folder."""

import json
import sys

from two_cpus import split_the_cpu_in_two

split_the_cpu_in_two()

import tensorflow as tf  # noqa: E402

import tf_keras as keras  # noqa: E402
from transformers import TFSamModel  # noqa: E402

sys.path.insert(0, sys.argv[1])
from distributed.replica_batch import replica_batch, report  # noqa: E402
from keras_sam import DiceBCELoss, SamSegmenter, tiny_sam_config  # noqa: E402

x, y, weights = replica_batch()


def make(strategy, initial=None):
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = SamSegmenter(TFSamModel(tiny_sam_config()), multimask_output=True, iou_loss_weight=2.0)
        if initial is not None:
            model.set_weights(initial)
        model.compile(optimizer=keras.optimizers.legacy.SGD(1.0), loss=DiceBCELoss())
    return model


def step(strategy, initial=None):
    """(logged loss, trainable weights before, after) of one fit step on the global batch of 8."""
    model = make(strategy, initial)
    before = [w.numpy() for w in model.trainable_weights]
    dataset = tf.data.Dataset.from_tensor_slices((x, y, weights)).batch(8)
    history = model.fit(dataset, epochs=1, verbose=0)
    return history.history["loss"][0], before, [w.numpy() for w in model.trainable_weights]


reference_model = make(tf.distribute.get_strategy())
initial = reference_model.get_weights()
# The loss the optimizer is handed, computed outside fit on one device.
direct = float(reference_model.compute_loss(x, y, reference_model(x, training=True), weights))
one = step(tf.distribute.OneDeviceStrategy("/cpu:0"), initial)
two_strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
two = step(two_strategy, initial)
print(json.dumps(report(one, two, direct, two_strategy.num_replicas_in_sync)))
