"""The Keras 3 family's tests: ordinary pytest tests, each run under every backend in a process of
its own (KERAS_BACKEND is read when Keras is imported, and the rest of the suite has tf-keras
loaded).

In the suite's own run these files are not imported. Each test function becomes one item per
backend (`test_x[jax]`, `test_x[tensorflow]`); the first item of a file starts that file's pytest
run in one subprocess per backend, all at once, with KERAS_BACKEND set and every import of tf_keras
or of transformers' TensorFlow modelling code refused. Each item then reports its own test's
outcome from that run's JUnit report: a failure fails that test alone, with its message.

To run them directly under one backend (no subprocesses):

    KERAS_SAM_KERAS3_RUN=1 KERAS_BACKEND=jax python -m pytest tests/keras3 --confcutdir tests/keras3 \\
        -p no:xdist -o addopts=
"""

import ast
import importlib.abc
import importlib.util
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
INNER = bool(os.environ.get("KERAS_SAM_KERAS3_RUN"))
BACKENDS = ["jax", "tensorflow"] + (["torch"] if importlib.util.find_spec("torch") else [])


class BlockTensorFlowKeras(importlib.abc.MetaPathFinder):
    """Refuses tf_keras and transformers' TensorFlow SAM: the Keras 3 family must not need them."""

    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "tf_keras" or name.endswith(("modeling_tf_sam", "modeling_tf_utils")):
            raise ImportError(f"the Keras 3 family imported {name}")
        return None


if INNER:
    sys.meta_path.insert(0, BlockTensorFlowKeras())
    sys.path.insert(0, os.path.dirname(HERE))  # the shared helpers: toy.py, parity_harness.py
else:
    def pytest_pycollect_makemodule(module_path, parent):
        return BackendFile.from_parent(parent, path=module_path)


class BackendFile(pytest.File):
    """A Keras 3 test file, read (not imported) for its test functions: one item per backend."""

    def collect(self):
        tree = ast.parse(self.path.read_text(), filename=str(self.path))
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test"):
                for backend in BACKENDS:
                    yield BackendItem.from_parent(self, name=f"{node.name}[{backend}]", function_name=node.name,
                                                  backend=backend)


class BackendItem(pytest.Item):
    """One test function under one backend; its outcome is read from that backend's run."""

    def __init__(self, *, function_name, backend, **kwargs):
        super().__init__(**kwargs)
        # Not `function`: pytest's -k reads an item's `function` as the test's function object.
        self.function_name, self.backend = function_name, backend
        self.add_marker(pytest.mark.slow)

    def runtest(self):
        if importlib.util.find_spec("keras_hub") is None:
            pytest.skip("the Keras 3 family needs keras-hub (pip install 'keras-sam[keras3]')")
        cases, output = _results(self.path, self.backend)
        mine = {name: outcome for name, outcome in cases.items() if name.split("[")[0] == self.function_name}
        if not mine:
            pytest.fail(f"no result for {self.function_name} on {self.backend}; its run printed:\n{output[-3000:]}",
                        pytrace=False)
        failed = {name: text for name, (outcome, text) in mine.items() if outcome == "failed"}
        if failed:
            pytest.fail("\n\n".join(f"{name} on {self.backend}:\n{text}" for name, text in failed.items()),
                        pytrace=False)
        if all(outcome == "skipped" for outcome, _ in mine.values()):
            pytest.skip(next(iter(mine.values()))[1])

    def reportinfo(self):
        return self.path, None, f"{self.function_name}[{self.backend}]"


_RUNS = {}
_RESULTS = {}


def _start(path):
    """Starts `path`'s run under every backend (once), each in its own process."""
    if path not in _RUNS:
        folder = tempfile.mkdtemp(prefix="keras3-tests-")
        runs = {}
        for backend in BACKENDS:
            report = os.path.join(folder, f"{backend}.xml")
            environment = {**os.environ, "KERAS_BACKEND": backend, "KERAS_SAM_KERAS3_RUN": "1",
                           "TF_CPP_MIN_LOG_LEVEL": "3"}
            environment.pop("TF_USE_LEGACY_KERAS", None)
            command = [sys.executable, "-m", "pytest", str(path), "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                       "-o", "addopts=", "--confcutdir", HERE, f"--junitxml={report}"]
            runs[backend] = (subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                              text=True, env=environment), report)
        _RUNS[path] = runs
    return _RUNS[path]


def _results(path, backend):
    """({test name: (outcome, text)}, the run's output) of `path` under `backend`."""
    if (path, backend) not in _RESULTS:
        process, report = _start(path)[backend]
        output, _ = process.communicate(timeout=1800)
        _RESULTS[path, backend] = (_read_junit(report) if os.path.exists(report) else {}), output
    return _RESULTS[path, backend]


def _read_junit(report):
    cases = {}
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        outcome, text = "passed", ""
        for child in case:
            if child.tag in ("failure", "error"):
                outcome, text = "failed", f"{child.get('message', '')}\n{child.text or ''}"
                break
            if child.tag == "skipped":
                outcome, text = "skipped", child.get("message", "")
        cases[case.get("name")] = (outcome, text)
    return cases
