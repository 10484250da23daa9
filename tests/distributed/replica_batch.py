"""The batch both families' replica checks train on (no Keras): 8 disks with box prompts and
per-pixel weights that differ between samples, so that a wrong share across replicas shows."""

import numpy as np

from toy import disks


def replica_batch():
    """(x, y, pixel weights (8, 64, 64)) for the tiny config."""
    x, y = disks(8, seed=4)
    rng = np.random.default_rng(7)
    weights = rng.uniform(0.2, 2.0, size=(8, 1, 1)) * rng.uniform(0.5, 1.5, size=y.shape)
    return x, y, weights.astype(np.float32)


def report(reference, distributed, direct_loss, replicas):
    """The JSON the tests read: the logged losses, the directly computed loss and how far the
    distributed step's weight changes are from the one-replica step's."""
    (loss_one, before, after_one), (loss_two, _, after_two) = reference, distributed
    deltas_one = [a - b for a, b in zip(after_one, before)]
    deltas_two = [a - b for a, b in zip(after_two, before)]
    return {
        "replicas": replicas,
        "loss_one": loss_one,
        "loss_two": loss_two,
        "direct_loss": direct_loss,
        "largest_change": max(float(np.abs(d).max()) for d in deltas_one),
        "change_error": max(float(np.abs(a - b).max()) for a, b in zip(deltas_one, deltas_two)),
        "changed_weights": sum(int(np.abs(d).max() > 0) for d in deltas_one),
    }
