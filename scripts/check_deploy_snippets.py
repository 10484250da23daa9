"""Runs the README's Deploy snippet for one runtime, in whatever environment runs this script, and
compares its mask with a reference mask (e.g. `keras-sam predict`'s) by Dice.

Needs only NumPy and the runtime itself, so it runs in a fresh virtual environment holding just
that runtime:

    python scripts/check_deploy_snippets.py --runtime onnx --exported exported \
        --image case.npy --box 40,30,200,160 --reference predicted_mask.npy

`--image` is an (H, W, 3) uint8 .npy file, with a .png of the same name beside it for the
SavedModel snippet (TensorFlow decodes PNGs itself); `--reference` an (H, W) 0/1 .npy mask.
Prints one line with the Dice and exits 1 below `--min-dice`.
"""

import argparse
import os
import re
import sys

import numpy as np

README = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "README.md")
SNIPPET_BOX = "[[40, 30, 200, 160]]"


def snippet(runtime):
    """The README's Deploy snippet for `runtime` ("savedmodel", "onnx" or "litert")."""
    with open(README) as handle:
        text = handle.read()
    section = text[text.index("## Deploy"):]
    for code, name in re.findall(r"```python\n(# runtime: (\w+)\n.*?)```", section, flags=re.S):
        if name == runtime:
            return code
    raise SystemExit(f"README.md has no Deploy snippet for {runtime}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", required=True, choices=["savedmodel", "onnx", "litert"])
    parser.add_argument("--exported", required=True, help="the folder keras-sam export wrote")
    parser.add_argument("--image", required=True, help="(H, W, 3) uint8 .npy, a .png of the same stem beside it")
    parser.add_argument("--box", required=True, help="x0,y0,x1,y1 in image pixels")
    parser.add_argument("--reference", required=True, help="(H, W) 0/1 mask .npy to compare with")
    parser.add_argument("--min-dice", type=float, default=0.99)
    args = parser.parse_args(argv)
    box = [float(value) for value in args.box.split(",")]
    stem = os.path.splitext(os.path.abspath(args.image))[0]
    code = (snippet(args.runtime)
            .replace('"exported/', f'"{os.path.abspath(args.exported)}/')
            .replace('"case.npy"', f'"{stem}.npy"').replace('"case.png"', f'"{stem}.png"')
            .replace(SNIPPET_BOX, repr([box])))
    namespace = {}
    exec(compile(code, f"README.md ({args.runtime} snippet)", "exec"), namespace)
    mask, reference = np.asarray(namespace["mask"], bool), np.load(args.reference).astype(bool)
    total = mask.sum() + reference.sum()
    dice = 1.0 if total == 0 else 2 * np.logical_and(mask, reference).sum() / total
    print(f"{args.runtime}: mask {mask.shape}, {int(mask.sum())} pixels, score {namespace['score']:.4f}; "
          f"Dice against the reference {dice:.4f} (needs {args.min_dice})")
    return 0 if dice >= args.min_dice else 1


if __name__ == "__main__":
    sys.exit(main())
