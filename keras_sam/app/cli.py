"""The `keras-sam` command line: finetune, evaluate and predict.

    keras-sam finetune --demo
    keras-sam finetune --data Dataset_BUSI_with_GT --model facebook/sam-vit-base --output run
    keras-sam evaluate --model run/model --data Dataset_BUSI_with_GT --output eval
    keras-sam predict --model run/model --image case.png --box 40,60,200,180 --output pred
    keras-sam convert run/model run-model.keras          # to keras_sam.keras3 (Keras 3), and back
    keras-sam export --model run/model --output exported  # SavedModel, ONNX, LiteRT, each checked
"""

import argparse
import importlib
import sys
import warnings

from keras_sam import __version__
from keras_sam.common.adaptation_options import (ADAPT_METHODS, DEFAULT_ADAPT, DEFAULT_LORA_RANK, DEFAULT_LORA_TARGETS,
                                                 LORA_TARGETS)
from keras_sam.app.defaults import (DEFAULT_BATCH_SIZE, DEFAULT_EPOCHS, DEFAULT_JITTER, DEFAULT_PRESET, DEMO,
                                    LOSS_NAMES, MIN_STEPS_TO_PROBE, MODEL_PRESETS)
from keras_sam.app.errors import UsageError
from keras_sam.app.export_command import add_export_parser
from keras_sam.common.training_options import COMPONENTS
from keras_sam.common.clicks import DEFAULT_MAX_CLICKS, MAX_CLICKS_LIMIT
from keras_sam.data.prompt_options import DEFAULT_CLICK_ROUNDS, PROMPT_KINDS
from keras_sam.data.readers import LAYOUTS
from keras_sam.common.surface_metrics import DEFAULT_NSD_TOLERANCE, UNITS

EXIT_USAGE = 2
# What each command runs, imported only once the arguments are parsed: those modules load
# TensorFlow, which takes seconds that --help, --version and a mistyped option should not cost.
COMMANDS = {"finetune": "keras_sam.app.finetune:run_finetune", "evaluate": "keras_sam.app.commands:run_evaluate",
            "predict": "keras_sam.app.commands:run_predict", "convert": "keras_sam.app.commands:run_convert",
            "export": "keras_sam.app.export_command:run_export"}


def _number(name, kind, valid, rule):
    """An argparse type: `kind` ("whole number" or "number") that must satisfy `valid`."""
    convert = int if kind == "whole number" else float

    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a {kind}; got {text!r}") from None
        if not valid(value):
            raise argparse.ArgumentTypeError(f"{name} must be {rule}; got {value}")
        return value
    return parse


def _positive_int(name):
    return _number(name, "whole number", lambda value: value >= 1, "at least 1")


def _fraction(name):
    return _number(name, "number", lambda value: 0 <= value < 1, "in [0, 1)")


def _positive_float(name):
    return _number(name, "number", lambda value: value > 0, "above 0")


def parse_box(text):
    """'x0,y0,x1,y1' in image pixels -> [x0, y0, x1, y1]."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 4 or values[2] <= values[0] or values[3] <= values[1]:
        raise argparse.ArgumentTypeError(
            f"--box must be x0,y0,x1,y1 with x1 > x0 and y1 > y0 (image pixels); got {text!r}")
    return values


def parse_point(text):
    """'x,y' or 'x,y,label' (label 1 inside, 0 outside) -> (x, y, label)."""
    parts = text.split(",")
    try:
        values = [float(v) for v in parts]
    except ValueError:
        values = []
    if len(values) not in (2, 3) or (len(values) == 3 and values[2] not in (0, 1)):
        raise argparse.ArgumentTypeError(
            f"--point must be x,y or x,y,label with label 1 (inside) or 0 (outside); got {text!r}")
    return (values[0], values[1], int(values[2]) if len(values) == 3 else 1)


class _HelpFormatter(argparse.HelpFormatter):
    """Shows each option's default after its help, where it has one worth showing."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (action.default not in (None, False, [], "", argparse.SUPPRESS) and "default" not in text
                and action.option_strings):
            text += " (default: %(default)s)"
        return text


def _add_model(parser, what):
    parser.add_argument(
        "--model", required=True, metavar="MODEL",
        help=f"the {what}: a run's folder or its model/, a folder written by save_pretrained, a .keras "
             f"file (keras-sam convert writes one), a hub id (facebook/sam-vit-base) or one of "
             f"{', '.join(MODEL_PRESETS)}")


def _add_data(parser):
    parser.add_argument("--data", required=True, help="the data folder (BUSI as downloaded, images/+labels/, "
                                                      "images/+masks/, or DICOM or NIfTI files in images/ or "
                                                      "imagesTr/)")
    parser.add_argument("--layout", default="auto", choices=["auto", *LAYOUTS],
                        help="how the folder is organised; auto recognises each layout")
    parser.add_argument("--mask-suffix", default="",
                        help="mask file stem suffix for --layout folders, e.g. _mask")


def _surface_options(command):
    command.add_argument("--nsd-tolerance", type=_number("--nsd-tolerance", "number", lambda v: v >= 0, ">= 0"),
                         default=DEFAULT_NSD_TOLERANCE,
                         help=f"NSD tolerance in the unit of the surface metrics (default {DEFAULT_NSD_TOLERANCE:g}: "
                              "mm, as MedSAM uses for most targets; pixels when the data has no spacing)")
    command.add_argument("--units", default="auto", choices=UNITS,
                         help="HD95 and NSD in mm (every file must carry its pixel spacing: DICOM, NIfTI), "
                              "in px, or auto: mm when every lesion's spacing is known, else px")


def build_parser():
    """The `keras-sam` argument parser (builds without loading TensorFlow)."""
    parser = argparse.ArgumentParser(
        prog="keras-sam", formatter_class=_HelpFormatter,
        description="Fine-tune Segment Anything (SAM) on medical images with tf-keras.",
    )
    parser.add_argument("--version", action="version", version=f"keras-sam {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name, text):
        return commands.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".",
                                   formatter_class=_HelpFormatter)

    finetune = command("finetune", "fine-tune SAM's mask decoder on a folder of images")
    finetune.add_argument("--demo", action="store_true",
                          help=f"generated breast-ultrasound phantoms and the {DEMO.model} model, "
                               f"{DEMO.epochs} epochs, fully offline")
    finetune.add_argument("--data", help="data folder (BUSI as downloaded, images/+labels/, images/+masks/, "
                                         "or DICOM or NIfTI files in images/ or imagesTr/)")
    finetune.add_argument("--model", default=None,
                          help="hub id (e.g. facebook/sam-vit-base), a saved model directory, or "
                               f"one of: {', '.join(MODEL_PRESETS)} (default: {DEMO.model} for --demo)")
    finetune.add_argument("--output", default=None, help=f"run directory (default: {DEMO.output} for --demo)")
    finetune.add_argument("--layout", default="auto", choices=["auto", *LAYOUTS],
                          help="how the data folder is organised; auto recognises each layout")
    finetune.add_argument("--mask-suffix", default="", help="mask file stem suffix for --layout folders, e.g. _mask")
    finetune.add_argument("--epochs", type=_positive_int("--epochs"), default=None,
                          help=f"passes over the training lesions (default: {DEFAULT_EPOCHS}; "
                               f"{DEMO.epochs} for --demo)")
    finetune.add_argument("--batch-size", type=_positive_int("--batch-size"), default=DEFAULT_BATCH_SIZE,
                          help="lesions per training step")
    finetune.add_argument("--lr", type=_positive_float("--lr"), default=None,
                          help=f"learning rate (default {DEFAULT_PRESET.learning_rate}; " + ", ".join(
                              f"{preset.learning_rate} for {name}" for name, preset in MODEL_PRESETS.items())
                          + ")")
    finetune.add_argument("--freeze", default=None,
                          help=f"comma-separated components to keep fixed, among {', '.join(COMPONENTS)} "
                               "(default: vision_encoder,prompt_encoder; prompt_encoder with --adapt full; with "
                               "--prompt clicks the prompt encoder learns, for the mask fed back)")
    finetune.add_argument("--adapt", default=DEFAULT_ADAPT, choices=list(ADAPT_METHODS),
                          help="how the image encoder learns: decoder (frozen, its embeddings cached), "
                               "lora (low-rank updates of its layers, SAMed's design), adapter (Medical SAM "
                               "Adapter's bottleneck MLPs in every block) or full (every weight); lora and "
                               "adapter train the encoder's additions only, without an embedding cache")
    finetune.add_argument("--lora-rank", type=_positive_int("--lora-rank"), default=DEFAULT_LORA_RANK,
                          help="rank of LoRA's updates (default %(default)s; SAMed uses 4)")
    finetune.add_argument("--lora-targets", default=",".join(DEFAULT_LORA_TARGETS),
                          help="comma-separated layers of each encoder block LoRA updates, among "
                               f"{', '.join(LORA_TARGETS)} (qkv: the attention's fused query/key/value "
                               "projection; proj: its output; mlp: both MLP layers); default %(default)s")
    finetune.add_argument("--recompute", action="store_true",
                          help="when the encoder learns (--adapt lora, adapter or full): recompute its "
                               "blocks' activations in the backward pass instead of keeping them (less "
                               "memory, a slower step; gradient checkpointing)")
    finetune.add_argument("--prompt", default="box", choices=PROMPT_KINDS,
                          help="what prompts the model during training and scoring: a jittered box "
                               "around the lesion, points inside and outside it, or both; clicks: one "
                               "click inside the lesion then corrective clicks on the model's errors "
                               "(scored by Dice after 1..20 simulated clicks and NoC@85/90); none: SAM's "
                               "empty prompt (the sample is the image, the target all its lesions)")
    finetune.add_argument("--click-rounds", default=None,
                          type=_number("--click-rounds", "whole number", lambda value: value >= 1,
                                       "at least 1 (each sample takes 1 to that many corrective clicks; "
                                       f"the default is {DEFAULT_CLICK_ROUNDS})"),
                          help="with --prompt clicks, the most corrective rounds a training sample gets "
                               f"(each draws 1 to this many anew each epoch); default {DEFAULT_CLICK_ROUNDS}")
    finetune.add_argument("--include-normal", action="store_true",
                          help="with --prompt none: also train and score on the images without a lesion "
                               "(BUSI's normal/ class), whose target is empty")
    finetune.add_argument("--val-split", type=_fraction("--val-split"), default=0.15,
                          help="share of the lesions kept to choose the best epoch")
    finetune.add_argument("--test-split", type=_fraction("--test-split"), default=0.15,
                          help="share of the lesions kept apart for the final scores")
    finetune.add_argument("--seed", type=int, default=0,
                          help="seeds the split, the shuffling, the prompts and the demo's phantoms")
    finetune.add_argument("--loss", default="dice", choices=list(LOSS_NAMES), help="the training loss")
    finetune.add_argument("--jitter", type=float, default=None,
                          help=f"largest move of each box side, in image pixels (default {DEFAULT_JITTER:g}; "
                               f"{DEMO.jitter:g} for the demo's phantoms, about half BUSI's image size)")
    finetune.add_argument("--no-embedding-cache", action="store_true",
                          help="recompute the frozen vision encoder every step (slow)")
    finetune.add_argument("--precision", default="auto", choices=["auto", "float32", "mixed_bfloat16"],
                          help="Keras's precision policy for the model (the cached embeddings and the "
                               "mask decoder's steps); auto: mixed_bfloat16 where the CPU has bfloat16 "
                               "instructions, float32 elsewhere (the shipped and tiny models: float32)")
    finetune.add_argument("--jit-compile", default=None, action=argparse.BooleanOptionalAction,
                          help="XLA for the decoder step from cached embeddings (default: timed each way "
                               f"on this machine at the start of a run of {MIN_STEPS_TO_PROBE} steps or more, the faster "
                               "kept; off in shorter runs and for "
                               + ", ".join(name for name, preset in MODEL_PRESETS.items()
                                           if preset.jit_compile is False)
                               + ", whose steps are too short to repay compiling)")
    finetune.add_argument("--skip-bad-files", action="store_true",
                          help="warn about and leave out unreadable or inconsistent files")
    _surface_options(finetune)
    finetune.add_argument("--overwrite", action="store_true", help="replace a different run in --output")
    finetune.add_argument("--strategy", default="default", choices=["default", "mirrored", "multiworker"],
                          help="tf.distribute strategy: mirrored (all local devices) or multiworker "
                               "(machines listed in TF_CONFIG; the chief, worker 0, writes --output)")

    evaluate = command("evaluate", "score a saved model on a data folder")
    _add_model(evaluate, "model to score")
    _add_data(evaluate)
    evaluate.add_argument("--output", required=True, help="folder for metrics.json, lesions.csv and best_worst.png")
    evaluate.add_argument("--manifest",
                          help="a run's split.json: only its test split is scored (default: the run's own, "
                               "when --model is a run's folder or its model/)")
    evaluate.add_argument("--all-lesions", action="store_true",
                          help="score every lesion in --data, even those the model was trained on")
    evaluate.add_argument("--prompt", default=None, choices=PROMPT_KINDS,
                          help="what prompts the model (default: the run's --prompt; else box); none scores "
                               "each image's lesions together, with no prompt")
    evaluate.add_argument("--include-normal", action="store_true", default=None,
                          help="with --prompt none: also score the images without a lesion (the share the "
                               "model leaves empty; default: as the run did)")
    evaluate.add_argument("--clicks", default=None,
                          type=_number("--clicks", "whole number", lambda value: 0 <= value <= MAX_CLICKS_LIMIT,
                                       f"between 0 (no click scoring) and {MAX_CLICKS_LIMIT}; the protocol "
                                       f"scores {DEFAULT_MAX_CLICKS}"),
                          help="simulate K corrective clicks per lesion and score Dice after each and "
                               f"NoC@85/90 (default: {DEFAULT_MAX_CLICKS} for a model trained with --prompt "
                               "clicks, else 0: none)")
    evaluate.add_argument("--batch-size", type=_positive_int("--batch-size"), default=DEFAULT_BATCH_SIZE,
                          help="lesions per model call")
    evaluate.add_argument("--seed", type=int, default=None,
                          help="prompt seed (default: the run's; else 0)")
    evaluate.add_argument("--jitter", type=float, default=None,
                          help=f"box jitter in image pixels (default: the run's; else {DEFAULT_JITTER:g})")
    evaluate.add_argument("--skip-bad-files", action="store_true",
                          help="warn about and leave out unreadable or inconsistent files")
    _surface_options(evaluate)

    predict = command("predict", "segment images from boxes, clicks and a previous mask, or no prompt")
    _add_model(predict, "model to segment with")
    predict.add_argument("--image", action="append", required=True, metavar="IMAGE",
                         help="an image file, a folder of images or a glob pattern (quote it); repeat "
                              "for several. Every image gets the same prompts")
    predict.add_argument("--output", required=True,
                         help="folder for the masks, overlays and predictions.json (a subfolder per "
                              "image when there are several)")
    predict.add_argument("--box", action="append", type=parse_box, default=[],
                         help="x0,y0,x1,y1 in image pixels; repeat for several objects")
    predict.add_argument("--point", action="append", type=parse_point, default=[],
                         help="x,y[,label] in image pixels, a click: label 1 (positive, inside the object; "
                              "default) or 0 (negative, outside); with boxes, added to each box's prompt")
    predict.add_argument("--mask-input", metavar="PNG",
                         help="a previous mask to refine (binary, the image's size; e.g. a mask_1.png this "
                              "command wrote), fed to SAM with the clicks and boxes given")
    predict.add_argument("--no-prompt", action="store_true",
                         help="segment with no box, point or mask: for a model fine-tuned with --prompt none "
                              "(any other is warned about)")
    predict.add_argument("--multimask", action="store_true",
                         help="also write SAM's 3 candidate masks per prompt, with their predicted IoU, and "
                              "each mask's probabilities as a grey PNG")
    convert = command("convert", "a transformers SAM checkpoint to a Keras 3 model (.keras), or back")
    convert.add_argument("source", help="a checkpoint folder (tf_model.h5 or model.safetensors), a "
                                        "shipped model's name, or a .keras file of keras_sam.keras3")
    convert.add_argument("target", help="a .keras file, or a folder for a transformers checkpoint")
    export = add_export_parser(commands)
    for each in (parser, finetune, evaluate, predict, convert, export):
        each.error = _fail  # one line, exit status 2
    return parser


def _run(command, args, native_logs_filtered):
    """Loads the command's module (and so TensorFlow, quietly) and runs it.

    The command line asks TensorFlow for its CPU allocator that keeps freed memory
    (`keras_sam.common.tf_allocator`; `keras-sam finetune` says which one it got); the library leaves
    that choice to the program that imports it.
    """
    from keras_sam.app.early_checks import check_before_loading
    from keras_sam.app.quiet import quiet_tensorflow
    from keras_sam.common.tf_allocator import prefer_reusing_allocator

    check_before_loading(command, args)
    prefer_reusing_allocator()
    quiet_tensorflow(native=native_logs_filtered)
    if native_logs_filtered:  # the console script (in-process calls keep the caller's warning handling)
        warnings.showwarning = _show_warning
    module, function = COMMANDS[command].split(":")
    return getattr(importlib.import_module(module), function)(args)


def main(argv=None):
    """Entry point of the `keras-sam` console script (`argv` given: run in-process, as tests do,
    with the process's standard error left as it is)."""
    args = build_parser().parse_args(argv)
    try:
        return _run(args.command, args, native_logs_filtered=argv is None)
    except KeyboardInterrupt:
        print("keras-sam: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as error:
        status = _status_of(error)
        if status is None:
            raise
        print(f"keras-sam: error: {error}", file=sys.stderr)
        return sys.exit(status) if status == EXIT_USAGE else status


def _show_warning(message, category, filename, lineno, file=None, line=None):
    """The library's warnings as the command line's own: one `warning: ...` line, no source line."""
    print(f"warning: {message}", file=sys.stdout if file is None else file)


def _status_of(error):
    """The exit status of one of keras-sam's one-line errors (None for anything else)."""
    from keras_sam.app.errors import TrainingStopped
    from keras_sam.data.readers import DataError

    if isinstance(error, (UsageError, DataError)):
        return EXIT_USAGE
    if isinstance(error, TrainingStopped):
        return 1
    hub = sys.modules.get("keras_sam.common.hub")  # loaded by any command that loads a model
    return EXIT_USAGE if hub is not None and isinstance(error, hub.ModelLoadError) else None


def _fail(message):
    print(f"keras-sam: error: {message}", file=sys.stderr)
    sys.exit(EXIT_USAGE)


if __name__ == "__main__":
    sys.exit(main())
