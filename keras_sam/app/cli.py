"""The `keras-sam` command line: finetune, evaluate and predict.

    keras-sam finetune --demo
    keras-sam finetune --data Dataset_BUSI_with_GT --model facebook/sam-vit-base --output run
    keras-sam evaluate --model run/model --data Dataset_BUSI_with_GT --output eval
    keras-sam predict --model run/model --image case.png --box 40,60,200,180 --output pred
    keras-sam convert run/model run-model.keras          # to keras_sam.keras3 (Keras 3), and back
    keras-sam export --model run/model --output exported  # SavedModel, ONNX, LiteRT, each checked
"""

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out of the way

import transformers  # noqa: E402

from keras_sam.app.commands import run_convert, run_evaluate, run_predict  # noqa: E402
from keras_sam.app.errors import TrainingStopped, UsageError  # noqa: E402
from keras_sam.app.export_command import add_export_parser, run_export  # noqa: E402
from keras_sam.app.finetune import run_finetune  # noqa: E402
from keras_sam.app.settings import DEFAULT_JITTER, DEFAULT_PRESET, DEMO, MODEL_PRESETS  # noqa: E402
from keras_sam.app.speed import MIN_STEPS_TO_PROBE  # noqa: E402
from keras_sam.components import COMPONENTS  # noqa: E402
from keras_sam.data import LAYOUTS, PROMPT_KINDS, DataError  # noqa: E402
from keras_sam.hub import ModelLoadError  # noqa: E402
from keras_sam.losses import LOSSES  # noqa: E402

EXIT_USAGE = 2
COMMANDS = {"finetune": run_finetune, "evaluate": run_evaluate, "predict": run_predict, "convert": run_convert,
            "export": run_export}


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


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-sam",
        description="Fine-tune Segment Anything (SAM) on medical images with tf-keras.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    finetune = commands.add_parser("finetune", help="fine-tune SAM's mask decoder on a folder of images")
    finetune.add_argument("--demo", action="store_true",
                          help=f"generated breast-ultrasound phantoms and the {DEMO.model} model, "
                               "fully offline")
    finetune.add_argument("--data", help="data folder (BUSI as downloaded, images/+labels/, or images/+masks/)")
    finetune.add_argument("--model", default=None,
                          help="hub id (e.g. facebook/sam-vit-base), a saved model directory, or "
                               f"one of: {', '.join(MODEL_PRESETS)}")
    finetune.add_argument("--output", default=None, help=f"run directory (default: {DEMO.output} for --demo)")
    finetune.add_argument("--layout", default="auto", choices=["auto", *LAYOUTS])
    finetune.add_argument("--mask-suffix", default="", help="mask file stem suffix for --layout folders, e.g. _mask")
    finetune.add_argument("--epochs", type=_positive_int("--epochs"), default=None)
    finetune.add_argument("--batch-size", type=_positive_int("--batch-size"), default=4)
    finetune.add_argument("--lr", type=_positive_float("--lr"), default=None,
                          help=f"learning rate (default {DEFAULT_PRESET.learning_rate}; " + ", ".join(
                              f"{preset.learning_rate} for {name}" for name, preset in MODEL_PRESETS.items())
                          + ")")
    finetune.add_argument("--freeze", default="vision_encoder,prompt_encoder",
                          help=f"comma-separated components to keep fixed, among {', '.join(COMPONENTS)}")
    finetune.add_argument("--prompt", default="box", choices=PROMPT_KINDS)
    finetune.add_argument("--val-split", type=_fraction("--val-split"), default=0.15)
    finetune.add_argument("--test-split", type=_fraction("--test-split"), default=0.15)
    finetune.add_argument("--seed", type=int, default=0)
    finetune.add_argument("--loss", default="dice", choices=list(LOSSES))
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
    finetune.add_argument("--overwrite", action="store_true", help="replace a different run in --output")
    finetune.add_argument("--strategy", default="default", choices=["default", "mirrored", "multiworker"],
                          help="tf.distribute strategy: mirrored (all local devices) or multiworker "
                               "(machines listed in TF_CONFIG; the chief, worker 0, writes --output)")

    evaluate = commands.add_parser("evaluate", help="score a saved model on a data folder")
    evaluate.add_argument("--model", required=True)
    evaluate.add_argument("--data", required=True)
    evaluate.add_argument("--output", required=True)
    evaluate.add_argument("--layout", default="auto", choices=["auto", *LAYOUTS])
    evaluate.add_argument("--mask-suffix", default="")
    evaluate.add_argument("--manifest", help="a split manifest; only its test split is evaluated")
    evaluate.add_argument("--batch-size", type=_positive_int("--batch-size"), default=4)
    evaluate.add_argument("--seed", type=int, default=None,
                          help="prompt seed (default: the run's, read beside --manifest; else 0)")
    evaluate.add_argument("--jitter", type=float, default=None,
                          help="box jitter in image pixels (default: the run's, read beside --manifest; "
                               f"else {DEFAULT_JITTER:g})")
    evaluate.add_argument("--skip-bad-files", action="store_true")

    predict = commands.add_parser("predict", help="segment one image from boxes and/or points")
    predict.add_argument("--model", required=True)
    predict.add_argument("--image", required=True)
    predict.add_argument("--output", required=True)
    predict.add_argument("--box", action="append", type=parse_box, default=[],
                         help="x0,y0,x1,y1 in image pixels; repeat for several objects")
    predict.add_argument("--point", action="append", type=parse_point, default=[],
                         help="x,y[,label] in image pixels; with boxes, added to each box's prompt")
    convert = commands.add_parser(
        "convert", help="a transformers SAM checkpoint to a Keras 3 model (.keras), or back")
    convert.add_argument("source", help="a checkpoint folder (tf_model.h5 or model.safetensors), a "
                                        "shipped model's name, or a .keras file of keras_sam.keras3")
    convert.add_argument("target", help="a .keras file, or a folder for a transformers checkpoint")
    export = add_export_parser(commands)
    for command in (parser, finetune, evaluate, predict, convert, export):
        command.error = _fail  # one line, exit status 2
    return parser


def main(argv=None):
    """Entry point of the `keras-sam` console script."""
    args = build_parser().parse_args(argv)
    transformers.logging.set_verbosity_error()
    try:
        return COMMANDS[args.command](args)
    except (UsageError, DataError, ModelLoadError) as error:
        _fail(str(error))
    except TrainingStopped as error:
        print(f"keras-sam: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("keras-sam: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


def _fail(message):
    print(f"keras-sam: error: {message}", file=sys.stderr)
    sys.exit(EXIT_USAGE)


if __name__ == "__main__":
    sys.exit(main())
