"""The export formats, what each needs installed, and the errors export reports as one line.

No TensorFlow or Keras here: the command line asks which formats it can write before loading anything.
"""

import importlib.util

EXPORT_EXTRA = "pip install 'keras-sam[export]'"
QUANTIZATIONS = ("none", "float16", "int8")


class ExportError(ValueError):
    """A bad export request or a failed export; the message says what to do."""


class ExportCheckFailed(ExportError):
    """An artefact disagreed with keras-sam's own masks; nothing was written."""


# Format -> the Python modules it needs (to write it and to run it for the check).
REQUIREMENTS = {
    "savedmodel": ("tensorflow",),
    "onnx": ("tf2onnx", "onnx", "onnxruntime"),
    "litert": ("ai_edge_litert",),
    # Written through keras-sam's checkpoint conversion, which lives with the Keras 3 family.
    "transformers": ("safetensors", "keras", "keras_hub"),
}
# The pip extra that provides each format's packages.
EXTRAS = {"transformers": "pip install 'keras-sam[keras3]'"}
FORMATS = tuple(REQUIREMENTS)
PIP_NAMES = {"ai_edge_litert": "ai-edge-litert", "keras_hub": "keras-hub"}


def missing_modules(name):
    """The modules format `name` needs that are not installed."""
    return [module for module in REQUIREMENTS[name] if importlib.util.find_spec(module) is None]


def parse_formats(text):
    """A comma-separated --format value (None or "" for every installed format).

    Args:
        text: e.g. "onnx,litert".

    Returns:
        (formats, skipped): the formats to write, in FORMATS order, and {format: missing pip
        names} for the installed-by-default ones left out because a package is missing.

    Raises:
        ExportError: an unknown format, or a format asked for by name whose package is missing.
    """
    if not text:
        available = [name for name in FORMATS if not missing_modules(name)]
        skipped = {name: _pip_names(missing_modules(name)) for name in FORMATS if missing_modules(name)}
        return available, skipped
    asked = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [name for name in asked if name not in FORMATS]
    if unknown or not asked:
        raise ExportError(f"unknown --format {', '.join(unknown) or repr(text)}; valid formats: "
                          f"{', '.join(FORMATS)} (comma-separated)")
    for name in asked:
        missing = missing_modules(name)
        if missing:
            raise ExportError(f"format {name} needs {', '.join(_pip_names(missing))}, not installed: "
                              f"{EXTRAS.get(name, EXPORT_EXTRA)}")
    return [name for name in FORMATS if name in asked], {}


def _pip_names(modules):
    return [PIP_NAMES.get(module, module) for module in modules]


def check_quantize(value):
    """Returns `value` if it is a known quantisation, else raises ExportError listing them."""
    if value not in QUANTIZATIONS:
        raise ExportError(f"unknown --quantize {value!r}; choose one of {', '.join(QUANTIZATIONS)}")
    return value
