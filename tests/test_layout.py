"""The package layout holds: keras_sam/common imports no Keras, the Keras 3 family runs without
TensorFlow or tf_keras, the tf-keras family never imports Keras 3, and both families name their
modules alike (issue 30)."""

import ast
import os
import subprocess
import sys

import pytest

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "keras_sam")
SAME_ROLES = ("__init__", "segmenter", "losses", "metrics", "callbacks", "adaptation")


def module_imports(path):
    """The modules a file imports at module level (not inside functions, where an import waits
    until the function runs)."""
    tree = ast.parse(open(path).read(), filename=path)
    names = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def files_of(package):
    folder = os.path.join(PACKAGE, package)
    return sorted(os.path.join(folder, name) for name in os.listdir(folder) if name.endswith(".py"))


def offending(package, refused):
    return {os.path.basename(path): name for path in files_of(package) for name in module_imports(path)
            if any(name == prefix or name.startswith(prefix + ".") for prefix in refused)}


def test_the_shared_code_imports_neither_keras_nor_a_family():
    assert offending("common", ("keras", "tf_keras", "keras_sam.tfkeras", "keras_sam.keras3")) == {}


def test_the_keras3_family_imports_neither_tensorflow_nor_tf_keras_nor_the_tf_keras_family():
    assert offending("keras3", ("tensorflow", "tf_keras", "keras_sam.tfkeras", "transformers.models")) == {}


def test_the_tf_keras_family_imports_tf_keras_and_never_keras3():
    assert offending("tfkeras", ("keras", "keras_sam.keras3")) == {}
    uses_keras = [path for path in files_of("tfkeras") if "tf_keras" in module_imports(path)]
    assert len(uses_keras) >= 8


def test_both_families_name_the_modules_of_the_same_roles_alike():
    for package in ("tfkeras", "keras3"):
        names = {os.path.basename(path)[:-3] for path in files_of(package)}
        assert set(SAME_ROLES) <= names, package


REFUSING_PROCESS = """
import importlib.abc, sys
sys.modules["tensorflow"] = sys.modules["tf_keras"] = None  # `import tensorflow` raises ImportError
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if "modeling_tf" in name:
            raise ImportError(f"refused: {name}")
sys.meta_path.insert(0, Refuse())
import keras_sam.keras3, keras_sam.keras3.convert
import keras_sam.common.configs, keras_sam.common.hub, keras_sam.common.inference, keras_sam.common.evaluation
import keras_sam.common.overlays, keras_sam.common.model_files, keras_sam.common.training_objective
import keras_sam.data.readers, keras_sam.data.splits
def refused(name):
    return name.split(".")[0] in ("tensorflow", "tf_keras") or "modeling_tf" in name
print("loaded:", sorted(m for m, module in sys.modules.items() if module is not None and refused(m)))
"""


@pytest.mark.skipif(sys.version_info < (3, 11), reason="the Keras 3 family needs Python 3.11")
def test_the_keras3_family_imports_on_jax_in_a_process_that_refuses_tensorflow():
    pytest.importorskip("jax")
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": os.path.dirname(PACKAGE)}
    env.pop("TF_USE_LEGACY_KERAS", None)
    run = subprocess.run([sys.executable, "-c", REFUSING_PROCESS], env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "loaded: []" in run.stdout
