"""Checks a `keras-sam export --format transformers` folder with PyTorch transformers 5.

Run it where torch and transformers>=5 are installed (not keras-sam, not TensorFlow):

    python -m venv /tmp/venv-hf5 && /tmp/venv-hf5/bin/pip install torch "transformers>=5" numpy
    /tmp/venv-hf5/bin/python scripts/check_transformers_export.py exported

It loads `exported/transformers` with `SamModel.from_pretrained` (reporting missing, unexpected
and mismatched weights) and `SamProcessor.from_pretrained`, runs the model on the inputs in
`exported/transformers-check.npz` (pixel values and boxes in model pixels, written by the export),
and compares the mask logits and IoU scores with keras-sam's, saved beside them. Exits 1 if any
weight is missing, unexpected or mismatched, or a logit differs by more than --tolerance.
"""

import argparse
import os
import sys

import numpy as np


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("exported", help="the folder keras-sam export wrote (holding transformers/)")
    parser.add_argument("--tolerance", type=float, default=1e-3, help="largest allowed mask logit difference")
    args = parser.parse_args(argv)

    import torch
    import transformers
    from transformers import SamModel, SamProcessor

    folder = os.path.join(args.exported, "transformers")
    model, info = SamModel.from_pretrained(folder, output_loading_info=True)
    SamProcessor.from_pretrained(folder)
    problems = {key: value for key, value in info.items() if value and key != "error_msgs"}
    expected = np.load(os.path.join(args.exported, "transformers-check.npz"))
    with torch.no_grad():
        output = model(pixel_values=torch.from_numpy(expected["pixel_values"]),
                       input_boxes=torch.from_numpy(expected["input_boxes"][:, None]),
                       multimask_output=False)
    logits = output.pred_masks[:, 0, 0].numpy()
    scores = output.iou_scores[:, 0, 0].numpy()
    logit_difference = float(np.abs(logits - expected["mask_logits"]).max())
    score_difference = float(np.abs(scores - expected["iou_scores"]).max())
    print(f"transformers {transformers.__version__}, torch {torch.__version__}: loaded {folder} "
          f"(missing/unexpected/mismatched weights: {problems or 'none'}); on {len(logits)} images with a box, "
          f"mask logits within {logit_difference:.2g} of keras-sam's, IoU scores within {score_difference:.2g}")
    return 0 if not problems and logit_difference <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
