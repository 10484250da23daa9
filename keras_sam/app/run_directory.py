"""What a fine-tuning run's folder holds, and how a killed run resumes from it.

    run.json               the run's settings (the same command re-run resumes the run)
    split.json             the train / val / test manifest
    data/                  the generated phantoms (--demo only)
    embedding-cache/       image embeddings of the frozen vision encoder
    before.json            scores of the model before fine-tuning (computed once)
    speed.json             speed options chosen on the machine that runs, and why (kept on resume)
    logs/                  TensorBoard: scalars (train, validation) and mask overlays
    checkpoints/           the best weights so far, by validation Dice
    backup/                model, optimizer and epoch count after each epoch (for resuming)
    training.csv           one line per epoch
    model/                 the fine-tuned model (save_pretrained; TFSamModel.from_pretrained reads it)
    metrics.json           Dice and IoU: fine-tuned, before fine-tuning, and the prompt box itself
    test_lesions.csv, best_worst.png

A run is complete once metrics.json exists. Until then the same settings resume it: the epoch
backup says how many epochs are done (the data pipeline replays the rest exactly), before.json
spares scoring the starting model again, and training.csv holds the best validation Dice so far.
"""

import csv
import dataclasses
import json
import os
import shutil

import tensorflow as tf
import tf_keras as keras

from keras_sam.app.errors import UsageError
from keras_sam.app.settings import RunSettings
from keras_sam.app.speed import SpeedChoice
from keras_sam.common.storage import write_json

NEW, RESUME, COMPLETE = "new", "resume", "complete"


class RunDirectory:
    """The folder of one `keras-sam finetune` run.

    Args:
        path: the --output folder.
    """

    def __init__(self, path):
        self.path = os.path.abspath(os.fspath(path))
        inside = lambda *parts: os.path.join(self.path, *parts)  # noqa: E731
        self.settings_file = inside("run.json")
        self.manifest = inside("split.json")
        self.data = inside("data")
        self.embedding_cache = inside("embedding-cache")
        self.before = inside("before.json")
        self.speed = inside("speed.json")
        self.logs = inside("logs")
        self.best_weights = inside("checkpoints", "best")
        self.backup_dir = inside("backup")
        self.history = inside("training.csv")
        self.model = inside("model")
        self.metrics = inside("metrics.json")
        self.lesion_csv = inside("test_lesions.csv")
        self.grid = inside("best_worst.png")

    def settings(self):
        """The RunSettings in run.json; None if there is none (or not a keras-sam run's)."""
        if not os.path.exists(self.settings_file):
            return None
        with open(self.settings_file) as handle:
            return RunSettings.from_json(json.load(handle))

    def prepare(self, settings, overwrite=False):
        """Decides what the folder holds for `settings`: NEW, RESUME or COMPLETE.

        Raises:
            UsageError: the folder is a file, or holds something else (without `overwrite`).
        """
        if not os.path.exists(self.path) or (os.path.isdir(self.path) and not os.listdir(self.path)):
            return NEW
        if not os.path.isdir(self.path):
            raise UsageError(f"--output {self.path} is a file, not a folder")
        previous = self.settings()
        if previous == settings:
            return COMPLETE if os.path.exists(self.metrics) else RESUME
        if not overwrite:
            if previous is not None:
                what = f"a different keras-sam run ({differences(previous, settings)})"
            elif os.path.exists(self.settings_file):
                what = "a keras-sam run of another version"
            else:
                what = "other files"
            raise UsageError(f"--output {self.path} holds {what}; choose another folder or pass --overwrite")
        shutil.rmtree(self.path)
        return NEW

    def start(self, settings):
        """Creates the folder for a new run and records its settings."""
        os.makedirs(self.path, exist_ok=True)
        write_json(self.settings_file, settings.to_json())

    def scores_before(self, compute):
        """The starting model's scores: read from before.json, or computed once and saved there."""
        if os.path.exists(self.before):
            with open(self.before) as handle:
                return json.load(handle)
        scores = compute()
        write_json(self.before, scores)
        return scores

    def recorded_choice(self, name):
        """The speed option `name` (a SpeedChoice) an earlier sitting of this run chose, or None.

        Speed choices are kept beside the settings, not in them: a resumed run reuses what its
        first sitting measured, and the settings it compares stay the command's own.
        """
        return self._choices().get(name)

    def record_choice(self, name, choice):
        """Keeps a speed choice in speed.json."""
        choices = {key: value.to_json() for key, value in self._choices().items()}
        choices[name] = choice.to_json()
        write_json(self.speed, choices)

    def _choices(self):
        if not os.path.exists(self.speed):
            return {}
        with open(self.speed) as handle:
            return {name: SpeedChoice.from_json(payload) for name, payload in json.load(handle).items()}

    def best_score_so_far(self):
        """The best validation Dice an interrupted run already reached (None for a new run)."""
        if not os.path.exists(self.history):
            return None
        with open(self.history) as handle:
            scores = [float(row["val_dice"]) for row in csv.DictReader(handle) if row.get("val_dice")]
        return max(scores) if scores else None

    def best_epoch(self):
        """(epoch, validation Dice) of the best epoch so far, counted from 1; None before any."""
        if not os.path.exists(self.history):
            return None
        with open(self.history) as handle:
            rows = [row for row in csv.DictReader(handle) if row.get("val_dice")]
        if not rows:
            return None
        best = max(rows, key=lambda row: float(row["val_dice"]))
        return int(best["epoch"]) + 1, float(best["val_dice"])

    def backup(self, model):
        """The EpochBackup callback that saves `model`'s training state here after every epoch."""
        return EpochBackup(self.backup_dir, model)


_FLAGS = {"learning_rate": "--lr", "embedding_cache": "--no-embedding-cache", "data": "--data"}


def differences(before, now):
    """The settings in which `now` differs from `before`, as the options that set them:
    "--epochs 3 (the run in the folder has 2)"."""
    parts = []
    for field in dataclasses.fields(now):
        old, new = getattr(before, field.name), getattr(now, field.name)
        if old != new:
            flag = _FLAGS.get(field.name, "--" + field.name.replace("_", "-"))
            shown = lambda value: ",".join(value) if isinstance(value, tuple) else value  # noqa: E731
            parts.append(f"{flag} {shown(new)}, the run in the folder has {shown(old)}")
    return "; ".join(parts)


class EpochBackup(keras.callbacks.Callback):
    """Saves the training state at the end of every epoch; `restore()` returns where to go on.

    Like Keras's BackupAndRestore, but the run knows which epoch it resumes from before `fit`
    starts, so the data pipeline can replay exactly the shuffling and prompts of the epochs still
    to come. The checkpoint index is rewritten atomically by tf.train.CheckpointManager: a kill
    at any moment leaves the previous epoch's state intact.

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
