"""Writing the four functions of a `SamExportModule` in each format.

    savedmodel/   one SavedModel, signatures segment, embed, decode, decode_points (serving_default = segment)
    onnx/         segment.onnx, embed.onnx, decode.onnx, decode_points.onnx
    litert/       segment.tflite, embed.tflite, decode.tflite, decode_points.tflite

Every file takes any image size: LiteRT's inputs have dynamic dimensions, which its interpreter's
signature runner resizes to each call's inputs (a plain `Interpreter` needs `resize_tensor_input`
and `allocate_tensors` first, see the README).
"""

import os
import shutil
import tempfile

import tensorflow as tf

from keras_sam.export.graph import SIGNATURES

ONNX_OPSET = 17


def write_savedmodel(module, folder):
    """One SavedModel with the four signatures; `serving_default` is `segment`.

    Returns:
        The files written, relative to `folder`'s parent.
    """
    functions = module.concrete_functions()
    tf.saved_model.save(module, folder, signatures={**functions, "serving_default": functions["segment"]})
    return [os.path.basename(folder)]


def write_onnx(module, folder, quantize="none", functions=SIGNATURES):
    """One .onnx file per function, converted by tf2onnx.

    Args:
        module: a SamExportModule whose model computes GELU with erf (ONNX has no erfc).
        folder: where to write them.
        quantize: "none"; "float16" (weights and arithmetic in float16, inputs and outputs as in
            the contract); "int8" (dynamic quantisation of the matmul weights).
        functions: which of the four to write (all of them for an export; fewer for a benchmark).

    Returns:
        The file names written.
    """
    os.makedirs(folder, exist_ok=True)
    names = []
    for name in functions:
        save_onnx(onnx_proto(module, name), os.path.join(folder, f"{name}.onnx"), quantize)
        names.append(f"{name}.onnx")
    return names


def onnx_proto(module, name):
    """The ONNX model of one of `module`'s functions (by name), as tf2onnx converts it."""
    import tf2onnx

    function = getattr(module, name)
    model_proto, _ = tf2onnx.convert.from_function(function, input_signature=function.input_signature,
                                                   opset=ONNX_OPSET)
    return model_proto


def save_onnx(model_proto, path, quantize="none"):
    """Writes an ONNX model to `path`, quantised as `write_onnx` says ("float16" may convert
    `model_proto` in place: save that one last)."""
    import onnx

    if quantize == "float16":
        from onnxruntime.transformers.float16 import convert_float_to_float16
        # Ops whose float16 kernels onnxruntime's CPU provider lacks or where float16 is too coarse
        # (the mask geometry) stay float32.
        model_proto = convert_float_to_float16(model_proto, keep_io_types=True,
                                               op_block_list=["Resize", "Range", "Erf", "Sin", "Cos"])
    onnx.save(model_proto, path)
    if quantize == "int8":
        from onnxruntime.quantization import QuantType, quantize_dynamic
        quantize_dynamic(path, path, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"])


def write_litert(module, folder, quantize="none", functions=SIGNATURES):
    """One .tflite file per function, from a SavedModel of `module` staged beside `folder` (see
    `convert_to_litert`; an export that writes the SavedModel anyway converts from that one).

    Args:
        module: a SamExportModule.
        folder, quantize, functions: as `convert_to_litert`.

    Returns:
        The file names written.
    """
    staging = tempfile.mkdtemp(prefix=".savedmodel-", dir=os.path.dirname(os.path.abspath(folder)))
    try:
        write_savedmodel(module, staging)
        return convert_to_litert(staging, folder, quantize, functions)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def convert_to_litert(saved_model, folder, quantize="none", functions=SIGNATURES):
    """One .tflite file per function of a SavedModel `write_savedmodel` wrote, LiteRT builtin ops
    only, its signature named after it (converted from a SavedModel for that: from a concrete
    function it would be "serving_default").

    Args:
        saved_model: the SavedModel folder.
        folder: where to write them.
        quantize: "none"; "float16" (float16 weights); "int8" (dynamic-range int8 weights).
        functions: which of the four to write (all of them for an export; fewer for a benchmark).

    Returns:
        The file names written.
    """
    os.makedirs(folder, exist_ok=True)
    names = []
    for name in functions:
        converter = tf.lite.TFLiteConverter.from_saved_model(saved_model, signature_keys=[name])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantize in ("float16", "int8"):
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        with open(os.path.join(folder, f"{name}.tflite"), "wb") as handle:
            handle.write(converter.convert())
        names.append(f"{name}.tflite")
    return names
