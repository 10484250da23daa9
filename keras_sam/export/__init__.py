"""Export: a fine-tuned SAM out of Python and TensorFlow, into SavedModel, ONNX, LiteRT and a
transformers 5 (PyTorch) checkpoint.

    from keras_sam.export import export_model
    report = export_model("keras-sam-demo/model", "exported")     # every installed format, checked

SavedModel, ONNX and LiteRT hold four functions with one contract (`keras_sam.export.graph`):
`segment`, `embed`, `decode` and `decode_points`. `keras_sam.export.runtimes.open_artefact` runs them.
TensorFlow is imported only when a model is exported or opened.
"""

from keras_sam.export.formats import FORMATS, QUANTIZATIONS, ExportCheckFailed, ExportError


def export_model(*args, **kwargs):
    """See `keras_sam.export.exporter.export_model`."""
    from keras_sam.export.exporter import export_model as export

    return export(*args, **kwargs)


__all__ = ["FORMATS", "QUANTIZATIONS", "ExportCheckFailed", "ExportError", "export_model"]
