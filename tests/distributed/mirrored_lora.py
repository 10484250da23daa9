"""Run in its own process: one LoRA fit on 1 device vs MirroredStrategy over 2 logical CPUs."""

import json
import sys

from two_cpus import split_the_cpu_in_two

split_the_cpu_in_two()

import tensorflow as tf  # noqa: E402

import numpy as np  # noqa: E402
import tf_keras as keras  # noqa: E402
from transformers import TFSamModel  # noqa: E402

sys.path.insert(0, sys.argv[1])
from conftest import disks  # noqa: E402
from keras_sam import SamSegmenter, tiny_sam_config  # noqa: E402


def fit(strategy):
    x, y = disks(8, seed=5)
    with strategy.scope():
        keras.utils.set_random_seed(0)
        model = SamSegmenter(TFSamModel(tiny_sam_config())).adapt("lora", rank=2)
        model.compile(optimizer=keras.optimizers.legacy.SGD(0.5))
    encoder = [v.numpy() for v in model.sam.vision_encoder.weights]
    history = model.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(8), epochs=2, verbose=0)
    unchanged = all(np.array_equal(a, v.numpy()) for a, v in zip(encoder, model.sam.vision_encoder.weights))
    lora_b = [float(np.abs(w.numpy()).sum()) for w in model.adaptation.weights if "lora_b" in w.name]
    return {"loss": history.history["loss"], "encoder_unchanged": unchanged, "lora_b": lora_b}


one = fit(tf.distribute.OneDeviceStrategy("/cpu:0"))
two_strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
two = fit(two_strategy)
print(json.dumps({"replicas": two_strategy.num_replicas_in_sync, "one": one, "two": two}))
