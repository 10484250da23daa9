"""Every `keras_sam.<module>.<name>` the README, BENCHMARKS.md and the examples mention exists, and
every `keras-sam` command the README shows is one the command line takes."""

import importlib
import os
import re
import shlex

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


def readme_commands():
    """The README's indented `keras-sam` command lines, joined across backslashes (an elided "..."
    dropped: those lines show only the options they are about)."""
    with open(os.path.join(ROOT, "README.md")) as handle:
        text = handle.read().replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if re.match(r"\s{4,}keras-sam ", line)]


@pytest.mark.parametrize("line", readme_commands())
def test_every_readme_command_parses(line):
    from keras_sam.app.cli import build_parser

    argv = [word for word in shlex.split(line.split(" #")[0])[1:] if word != "..."]
    build_parser().parse_args(argv)  # exits with the parser's message on an unknown option or bad value
