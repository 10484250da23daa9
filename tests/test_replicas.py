"""The training objective on 2 replicas equals it on one, in both model families.

Each family trains one SGD step (learning rate 1, so a weight's change is minus its gradient) on
the same 8-sample batch with 3 masks per prompt, the IoU head trained and per-pixel weights, once
without distribution and once on 2 replicas: tf.distribute.MirroredStrategy over 2 logical CPUs
for tf-keras and for Keras 3 on TensorFlow, keras.distribution.DataParallel over 2 host devices
for Keras 3 on JAX. Each case runs in its own process (devices are set up per process); the three
run at once.
"""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(__file__)
CASES = {
    "tf_keras": ["replica_objective_tf_keras.py"],
    "keras3-tensorflow": ["replica_objective_keras3.py", "tensorflow"],
    "keras3-jax": ["replica_objective_keras3.py", "jax"],
}


def _available(case):
    if case == "tf_keras":
        return True
    return importlib.util.find_spec("keras_hub") is not None and (
        case != "keras3-jax" or importlib.util.find_spec("jax") is not None)


@pytest.fixture(scope="module")
def reports():
    """Each case's report (or its error output), its processes started together."""
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    processes = {
        case: subprocess.Popen([sys.executable, os.path.join(HERE, "distributed", script), HERE, *args],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment)
        for case, (script, *args) in CASES.items() if _available(case)}
    results = {}
    for case, process in processes.items():
        out, err = process.communicate(timeout=900)
        results[case] = json.loads(out.strip().splitlines()[-1]) if process.returncode == 0 else err[-3000:]
    return results


def _report(reports, case):
    if case not in reports:
        pytest.skip(f"{case} needs keras-hub (and jax)")
    report = reports[case]
    assert isinstance(report, dict), f"{case} failed:\n{report}"
    assert report["replicas"] == 2
    return report


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_two_replicas_take_the_step_one_replica_takes_on_the_global_batch(reports, case):
    report = _report(reports, case)
    assert report["changed_weights"] > 50  # the mask decoder and the IoU head moved
    assert report["largest_change"] > 0.1
    # Changes of order 1 agree to float32 rounding; a wrong share across replicas is off by the
    # largest change itself (2 replicas summing twice the gradient).
    assert report["change_error"] < 1e-5 * max(1.0, report["largest_change"])


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_the_logged_loss_is_the_optimised_loss_on_any_number_of_replicas(reports, case):
    report = _report(reports, case)
    # direct_loss: what compute_loss hands the optimizer, computed outside fit on the global batch.
    assert report["loss_one"] == pytest.approx(report["direct_loss"], rel=1e-5)
    assert report["loss_two"] == pytest.approx(report["direct_loss"], rel=1e-5)
