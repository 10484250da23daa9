"""Run in its own process: losses of one fit on 1 device vs MirroredStrategy over 2 logical CPUs."""

import json
import sys

from two_cpus import split_the_cpu_in_two

split_the_cpu_in_two()

import tensorflow as tf  # noqa: E402

import tf_keras as keras  # noqa: E402
from transformers import TFSamModel  # noqa: E402

sys.path.insert(0, sys.argv[1])
from conftest import disks  # noqa: E402
from keras_sam import SamSegmenter, tiny_sam_config  # noqa: E402
from keras_sam.tfkeras.callbacks import LearningRateLogger  # noqa: E402


def losses(strategy):
    x, y = disks(16, seed=4)
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = SamSegmenter(TFSamModel(tiny_sam_config()))
        model.compile(optimizer=keras.optimizers.legacy.SGD(0.05))
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    history = model.fit(dataset, epochs=3, verbose=0, callbacks=[LearningRateLogger()])
    return (history.history["loss"], model.evaluate(dataset, verbose=0, return_dict=True),
            history.history["learning_rate"])


one = losses(tf.distribute.OneDeviceStrategy("/cpu:0"))
two_strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
two = losses(two_strategy)
print(json.dumps({"replicas": two_strategy.num_replicas_in_sync, "one": one, "two": two}))
