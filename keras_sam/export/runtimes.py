"""Each exported artefact loaded and run in its own runtime, behind one small interface.

`open_artefact(format, folder)` returns an object with `segment`, `embed`, `decode` and
`decode_points`, each taking and returning NumPy arrays under the contract's names. The check
after each export, the tests and the benchmarks all go through here. Nothing here imports Keras;
each runtime is imported only when its format is opened.
"""

import os

import numpy as np

from keras_sam.export.graph_names import SIGNATURES


class _Artefact:
    """Calls `self._run(name, inputs)` for each of the four functions."""

    def segment(self, image, boxes):
        return self._run("segment", {"image": _uint8(image), "boxes": _float32(boxes, (-1, 4))})

    def embed(self, image):
        return self._run("embed", {"image": _uint8(image)})

    def decode(self, image_embeddings, boxes, image_size):
        return self._run("decode", {"image_embeddings": _float32(image_embeddings),
                                    "boxes": _float32(boxes, (-1, 4)),
                                    "image_size": np.asarray(image_size, np.int32)})

    def decode_points(self, image_embeddings, points, labels, image_size):
        return self._run("decode_points", {"image_embeddings": _float32(image_embeddings),
                                           "points": _float32(points), "labels": np.asarray(labels, np.int32),
                                           "image_size": np.asarray(image_size, np.int32)})


def _uint8(image):
    return np.ascontiguousarray(image, np.uint8)


def _float32(values, shape=None):
    values = np.ascontiguousarray(values, np.float32)
    return values.reshape(shape) if shape else values


class SavedModelArtefact(_Artefact):
    """The SavedModel's signatures, run by TensorFlow."""

    def __init__(self, folder):
        import tensorflow as tf

        self._tf = tf
        self._loaded = tf.saved_model.load(folder)

    def _run(self, name, inputs):
        outputs = self._loaded.signatures[name](**{k: self._tf.constant(v) for k, v in inputs.items()})
        return {key: value.numpy() for key, value in outputs.items()}


class OnnxArtefact(_Artefact):
    """The four .onnx files (or those of `functions`), run by onnxruntime on the CPU."""

    def __init__(self, folder, functions=SIGNATURES):
        import onnxruntime

        self._sessions = {name: onnxruntime.InferenceSession(os.path.join(folder, f"{name}.onnx"),
                                                             providers=["CPUExecutionProvider"])
                          for name in functions}

    def _run(self, name, inputs):
        session = self._sessions[name]
        names = [output.name for output in session.get_outputs()]
        return dict(zip(names, session.run(names, inputs)))


class LiteRtArtefact(_Artefact):
    """The four .tflite files (or those of `functions`), run by ai-edge-litert's interpreter (its
    signature runner resizes the inputs to each call's shapes) on `num_threads` threads (None:
    the interpreter's default, one)."""

    def __init__(self, folder, functions=SIGNATURES, num_threads=None):
        from ai_edge_litert.interpreter import Interpreter

        self._runners = {}
        for name in functions:
            interpreter = Interpreter(model_path=os.path.join(folder, f"{name}.tflite"), num_threads=num_threads)
            self._runners[name] = interpreter.get_signature_runner(name)

    def _run(self, name, inputs):
        return dict(self._runners[name](**inputs))


ARTEFACTS = {"savedmodel": SavedModelArtefact, "onnx": OnnxArtefact, "litert": LiteRtArtefact}


def open_artefact(format_name, folder, **options):
    """The exported `format_name` in `folder` (e.g. "onnx", "exported/onnx"), ready to run.

    `options` go to its class: `functions` (onnx, litert: open only those), `num_threads` (litert).
    """
    return ARTEFACTS[format_name](folder, **options)
