"""SamSegmenter under tf.distribute (each case in its own processes: device setup is per process)."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(__file__)
ENVIRONMENT = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


@pytest.mark.slow
def test_mirrored_over_two_devices_matches_one_device():
    result = subprocess.run([sys.executable, os.path.join(HERE, "distributed", "mirrored_losses.py"), HERE],
                            capture_output=True, text=True, env=ENVIRONMENT, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["replicas"] == 2
    assert np.isfinite(figures["one"][0]).all()
    np.testing.assert_allclose(figures["two"][0], figures["one"][0], atol=1e-5)
    for name, value in figures["one"][1].items():
        assert figures["two"][1][name] == pytest.approx(value, abs=1e-5), name
    # The logged learning rate is the optimizer's (SGD at 0.05) on any number of replicas.
    assert figures["one"][2] == figures["two"][2] == pytest.approx([0.05] * 3)


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


@pytest.mark.slow
def test_multiworker_fit_on_two_local_workers_ends_with_identical_weights(tmp_path):
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
    processes = []
    for index in range(2):
        config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        processes.append(subprocess.Popen(
            [sys.executable, os.path.join(HERE, "distributed", "multiworker_fit.py"), HERE,
             str(tmp_path / f"worker{index}.npz")],
            env={**ENVIRONMENT, "TF_CONFIG": json.dumps(config)},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for process in processes:
        _, err = process.communicate(timeout=600)
        assert process.returncode == 0, err[-3000:]
    first, second = (np.load(tmp_path / f"worker{index}.npz") for index in range(2))
    assert np.isfinite(first["loss"]).all()
    np.testing.assert_array_equal(first["loss"], second["loss"])
    for key in first.files:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)
