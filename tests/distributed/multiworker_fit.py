"""Run in its own process as one worker of a MultiWorkerMirroredStrategy cluster (TF_CONFIG set by
the test): a short fit, then the decoder's weights saved to argv[2]."""

import sys

import numpy as np
import tensorflow as tf
import tf_keras as keras
from transformers import TFSamModel

sys.path.insert(0, sys.argv[1])
from conftest import disks  # noqa: E402
from keras_sam import SamSegmenter, tiny_sam_config  # noqa: E402

strategy = tf.distribute.MultiWorkerMirroredStrategy()
x, y = disks(16, seed=4)
with strategy.scope():
    keras.utils.set_random_seed(0)
    model = SamSegmenter(TFSamModel(tiny_sam_config()))
    model.compile(optimizer=keras.optimizers.legacy.Adam(1e-3))
options = tf.data.Options()
options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(8).with_options(options)
history = model.fit(dataset, epochs=2, verbose=0)
np.savez(sys.argv[2], loss=np.array(history.history["loss"]),
         **{f"w{i}": w.numpy() for i, w in enumerate(model.sam.mask_decoder.weights)})
