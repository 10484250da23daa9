"""Every `keras_sam.<module>.<name>` the README, BENCHMARKS.md and the examples mention exists."""

import importlib
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCUMENTS = ["README.md", "BENCHMARKS.md"] + [os.path.join("examples", name)
                                              for name in sorted(os.listdir(os.path.join(ROOT, "examples")))
                                              if name.endswith(".py")]


def dotted_names():
    names = set()
    for document in DOCUMENTS:
        with open(os.path.join(ROOT, document)) as handle:
            # A trailing "_" or "*" is a family of names ("display_*"), not one name.
            names.update(name for name in re.findall(r"\bkeras_sam(?:\.\w+)+", handle.read())
                         if not name.endswith("_"))
    return sorted(names)


def resolve(dotted):
    """The object `dotted` names: the longest importable module prefix, then attributes."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        try:
            found = importlib.import_module(".".join(parts[:end]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[end:]:
            found = getattr(found, attribute)
        return found
    raise ModuleNotFoundError(dotted)


@pytest.mark.parametrize("dotted", dotted_names())
def test_each_documented_name_exists(dotted):
    try:
        resolve(dotted)
    except (ModuleNotFoundError, AttributeError) as error:
        pytest.fail(f"{dotted} is mentioned in the docs but does not exist ({error})")
