"""`keras-sam export`: a model to SavedModel, ONNX and LiteRT, each checked in its runtime.

Only the parser is built at import; TensorFlow and the runtimes are imported when the command runs.
"""

import sys

from keras_sam.app.errors import UsageError


def add_export_parser(commands):
    """Adds the `export` subcommand to an argparse subparsers object and returns its parser."""
    from keras_sam.export.formats import FORMATS, QUANTIZATIONS

    export = commands.add_parser(
        "export", help="write a model as SavedModel, ONNX and LiteRT, each checked against keras-sam")
    export.add_argument("--model", required=True,
                        help="a run's model/ folder, a save_pretrained folder, sam-small-shapes, or a Keras 3 .keras file")
    export.add_argument("--output", required=True, help="folder to create (savedmodel/, onnx/, litert/, export.json)")
    export.add_argument("--format", default=None,
                        help=f"comma-separated, among {', '.join(FORMATS)} (default: every one whose packages "
                             "are installed)")
    export.add_argument("--quantize", default="none", choices=QUANTIZATIONS,
                        help="ONNX and LiteRT weights in float16 or int8 (the SavedModel stays float32)")
    export.add_argument("--overwrite", action="store_true", help="replace what --output holds")
    return export


def run_export(args):
    """Exports, checks and reports; exit status 1 when an artefact fails its check."""
    from keras_sam.export.formats import ExportCheckFailed, ExportError

    try:
        from keras_sam.export.exporter import export_model

        report = export_model(args.model, args.output, formats_to_write=args.format, quantize=args.quantize,
                              overwrite=args.overwrite)
    except ExportCheckFailed as error:
        print(f"keras-sam: error: {error}", file=sys.stderr)
        return 1
    except ExportError as error:
        raise UsageError(str(error)) from error
    print(f"Exported {', '.join(report['formats'])} to {args.output} (figures in export.json)")
    return 0
