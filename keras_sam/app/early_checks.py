"""Mistakes the command line can name before it loads TensorFlow: a --data, --image or --model that
names nothing, a predict without a prompt, a finetune missing an option. Each is one line, at
once, instead of after the seconds TensorFlow takes to start."""

import glob
import os

from keras_sam.app.defaults import MODEL_PRESETS
from keras_sam.app.errors import UsageError
from keras_sam.data.readers import IMAGE_EXTENSIONS, DataError, is_busi_mask

PRETRAINED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pretrained")


def check_before_loading(command, args):
    """Raises UsageError or DataError for what `args` gets wrong that needs no model or data read."""
    if command == "finetune":
        from keras_sam.app.settings import resolve

        resolve(args)
    if command in ("finetune", "evaluate") and args.data and not os.path.isdir(args.data):
        raise UsageError(f"--data {args.data} is not a folder")
    if command in ("evaluate", "predict", "export") or (command == "finetune" and args.model):
        check_model_value(args.model)
    if command == "predict":
        prompted = args.box or args.point or args.mask_input
        if not prompted and not args.no_prompt:
            raise UsageError("predict needs at least one --box x0,y0,x1,y1, --point x,y[,label] or --mask-input "
                             "PNG, or --no-prompt for a model fine-tuned with --prompt none")
        if prompted and args.no_prompt:
            raise UsageError("--no-prompt segments with no box, point or mask: drop it, or drop the prompts")
        if args.mask_input and not os.path.isfile(args.mask_input):
            raise UsageError(f"--mask-input {args.mask_input} is not a file: give a mask PNG of the image's size")
        image_paths(args.image)


def check_model_value(model):
    """A --model value that cannot name a model: a file that is not a .keras file, a path that does
    not exist, or a bare name that is neither a shipped model, a folder nor a hub id (org/name)."""
    if model in MODEL_PRESETS or os.path.isdir(model) or os.path.isdir(os.path.join(PRETRAINED, model)):
        return
    if os.path.isfile(model) and not model.endswith(".keras"):
        raise UsageError(f"--model {model} is a file, not a model: give a .keras file, a folder written by "
                         "save_pretrained (or a run's folder), a hub id or a shipped model's name")
    if not os.path.exists(model) and (model.endswith(".keras") or model.count("/") > 1
                                      or model.startswith((".", os.sep, "~"))):
        raise UsageError(f"--model {model} does not exist")
    if not os.path.exists(model) and "/" not in model:
        raise UsageError(f"--model {model}: no such folder or file, not a model that comes with keras-sam "
                         f"({', '.join(sorted(set(MODEL_PRESETS) | set(os.listdir(PRETRAINED))))}) and not "
                         "a hub id (organisation/name)")


def image_paths(entries):
    """--image values (files, folders, glob patterns) as the image files they name, in order; a
    folder's BUSI mask files (`X_mask.png`) are not images to segment.

    Raises:
        DataError: an entry names nothing, or a folder or pattern holds no image.
    """
    paths = []
    for entry in entries:
        if os.path.isdir(entry):  # its images, leaving out BUSI's mask files beside them
            found = [os.path.join(entry, name) for name in sorted(os.listdir(entry))
                     if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")
                     and not is_busi_mask(name)]
        elif os.path.exists(entry):
            found = [entry]
        elif glob.has_magic(entry):
            found = sorted(path for path in glob.glob(entry) if path.lower().endswith(IMAGE_EXTENSIONS))
        else:
            raise DataError(f"--image {entry} does not exist")
        if not found:
            raise DataError(f"--image {entry} holds no image ({', '.join(IMAGE_EXTENSIONS)})")
        paths.extend(path for path in found if path not in paths)
    return paths
