"""Resuming a killed run: the model, the optimizer and the epoch count, saved after every epoch.

Like Keras's BackupAndRestore, but the run knows which epoch it resumes from before `fit` starts,
so the data pipeline can replay exactly the shuffling and prompts of the epochs still to come.
The checkpoint index is rewritten atomically by tf.train.CheckpointManager: a kill at any moment
leaves the previous epoch's state intact.
"""

import tensorflow as tf
import tf_keras as keras


class EpochBackup(keras.callbacks.Callback):
    """Saves the training state at the end of every epoch; `restore()` returns where to go on.

    Args:
        directory: where the state is kept.
        model: the model being trained (compiled, so its optimizer exists).
    """

    def __init__(self, directory, model):
        super().__init__()
        self._epochs_done = tf.Variable(0, dtype=tf.int64, trainable=False)
        self._checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer,
                                               epochs_done=self._epochs_done)
        self._manager = tf.train.CheckpointManager(self._checkpoint, directory, max_to_keep=1)

    def restore(self):
        """Loads the last saved state, if any; returns the number of epochs already done."""
        if self._manager.latest_checkpoint:
            self._checkpoint.restore(self._manager.latest_checkpoint)
        return int(self._epochs_done.numpy())

    def on_epoch_end(self, epoch, logs=None):
        self._epochs_done.assign(epoch + 1)
        self._manager.save(checkpoint_number=epoch + 1)
