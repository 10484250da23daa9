import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from conftest import tiny_segmenter
from keras_sam import DiceLoss
from keras_sam.tfkeras.callbacks import NonFiniteLossError, StopOnNonFiniteLoss


def test_a_nan_loss_stops_fit_naming_epoch_and_step_and_keeps_the_last_good_checkpoint(toy_data, tmp_path):
    x, y = toy_data
    poison = tf.Variable(0.0, trainable=False)

    def poisoned_dice(y_true, y_pred):
        return DiceLoss()(y_true, y_pred) + tf.where(poison > 0, np.nan, 0.0)

    class PoisonAfterFirstEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            poison.assign(1.0)

    model = tiny_segmenter()
    model.compile(optimizer=keras.optimizers.legacy.Adam(1e-3), loss=poisoned_dice, metrics=[])
    checkpoint = str(tmp_path / "last-good")
    with pytest.raises(NonFiniteLossError, match="became nan at epoch 2, step 1"):
        model.fit(x, y, batch_size=8, epochs=3, verbose=0, callbacks=[
            StopOnNonFiniteLoss(),
            keras.callbacks.ModelCheckpoint(checkpoint, save_weights_only=True),
            PoisonAfterFirstEpoch(),
        ])
    good = tiny_segmenter()
    good.load_weights(checkpoint)
    assert all(np.isfinite(w.numpy()).all() for w in good.sam.mask_decoder.weights)
