"""Where TFSamModel comes from: the transformers version check and loading by name or path."""

import os

import numpy as np
import tensorflow as tf
import transformers

_TRANSFORMERS_HINT = "pip install 'transformers>=4.40,<5'"
PRETRAINED_DIRECTORY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pretrained")
SHIPPED_MODELS = ("sam-small-shapes",)
"""Models that come with keras-sam: loaded by name from the package, with no hub lookup."""


def shipped_model_path(name):
    """The folder of a model shipped with keras-sam, or None if `name` is not one."""
    return os.path.join(PRETRAINED_DIRECTORY, name) if name in SHIPPED_MODELS else None


class ModelLoadError(OSError):
    """A SAM checkpoint could not be loaded; the message says which one and what to do."""


def require_tf_sam():
    """Returns transformers' TFSamModel class, or raises ImportError saying how to get it.

    transformers 5 removed every TensorFlow class, TFSamModel included.
    """
    major = int(transformers.__version__.split(".")[0])
    if major >= 5:
        raise ImportError(
            f"keras-sam needs transformers<5, which still has TFSamModel; transformers "
            f"{transformers.__version__} is installed. Run: {_TRANSFORMERS_HINT}"
        )
    try:
        from transformers import TFSamModel
    except ImportError as error:  # e.g. TensorFlow missing or a broken install
        raise ImportError(
            f"transformers {transformers.__version__} could not provide TFSamModel ({error}). "
            f"Run: {_TRANSFORMERS_HINT} tensorflow tf-keras"
        ) from error
    return TFSamModel


def load_tf_sam(name_or_path, **kwargs):
    """Loads a TFSamModel from a local directory or a Hugging Face hub id.

    Args:
        name_or_path: a model shipped with keras-sam ("sam-small-shapes"), a directory written
            by `save_pretrained`, or a hub id such as "facebook/sam-vit-base".
        **kwargs: passed on to `TFSamModel.from_pretrained`.

    Returns:
        The TFSamModel, built.

    Raises:
        ModelLoadError: the directory has no model, or the hub could not be reached.
    """
    tf_sam_model = require_tf_sam()
    name = shipped_model_path(os.fspath(name_or_path)) or os.fspath(name_or_path)
    if os.path.isdir(name):
        if not os.path.exists(os.path.join(name, "config.json")):
            raise ModelLoadError(
                f"{name} has no config.json: it is not a saved SAM model "
                "(expected a directory written by save_pretrained)."
            )
    elif name.startswith((".", os.path.sep, "~")) or name.count("/") > 1:
        raise ModelLoadError(f"model directory {name} does not exist.")
    # transformers 4.5x reads safetensors files for TensorFlow through an API safetensors 0.6
    # removed (transformers#40028): prefer tf_model.h5, and read a lone model.safetensors here.
    if _holds_only_safetensors(name) and not kwargs:
        return _from_pytorch_safetensors(tf_sam_model, name)
    kwargs.setdefault("use_safetensors", False)
    try:
        return _from_pretrained_without_initializers(tf_sam_model, name, **kwargs)
    except OSError as error:
        if os.path.isdir(name):
            raise ModelLoadError(f"could not load the SAM model in {name}: {error}") from error
        raise ModelLoadError(
            f"could not download {name!r} from the Hugging Face hub (no network or unknown id). "
            "Pass a local directory written by save_pretrained, or try the offline demo "
            "(keras-sam finetune --demo)."
        ) from error


def _from_pretrained_without_initializers(tf_sam_model, name, **kwargs):
    """`tf_sam_model.from_pretrained`, without first drawing random weights the checkpoint replaces.

    transformers builds the model with every initializer run, then reads the checkpoint over it:
    for sam-vit-base 90 million random numbers, about 0.2 s of a 1 s load on a 2-core CPU. Here
    every float weight starts as NaN instead (a fill costs next to nothing). transformers leaves a
    weight the checkpoint lacks at its initial value, and not always with a warning; if any
    weight is still NaN after the load, the model is loaded again the ordinary way, initializers
    included, so such a weight gets exactly the value it would have had.
    """
    with tf.variable_creator_scope(_nan_initial_value):
        model = tf_sam_model.from_pretrained(name, **kwargs)
    if any(np.isnan(weight.numpy()).any() for weight in model.weights if weight.dtype.is_floating):
        model = tf_sam_model.from_pretrained(name, **kwargs)
    return model


def _nan_initial_value(next_creator, **kwargs):
    """A variable creator: a float weight of known shape starts as NaN, not its initializer's draw."""
    dtype, shape = tf.as_dtype(kwargs.get("dtype") or tf.float32), kwargs.get("shape")
    if (callable(kwargs.get("initial_value")) and dtype.is_floating and shape is not None
            and tf.TensorShape(shape).is_fully_defined()):
        kwargs["initial_value"] = lambda: tf.fill(tf.TensorShape(shape).as_list(), tf.constant(np.nan, dtype))
    return next_creator(**kwargs)


def _holds_only_safetensors(folder):
    return (os.path.isdir(folder) and os.path.exists(os.path.join(folder, "model.safetensors"))
            and not os.path.exists(os.path.join(folder, "tf_model.h5")))


def _from_pytorch_safetensors(tf_sam_model, folder):
    """A TFSamModel from a folder holding model.safetensors under PyTorch's names only.

    transformers 4.5x iterates a lazily opened safetensors file, which safetensors 0.6 and newer
    no longer allow ("'builtins.safe_open' object is not iterable"); the same weights read into
    a dict load through transformers' own PyTorch-to-TensorFlow mapping.
    """
    from safetensors.numpy import load_file
    from transformers import SamConfig
    from transformers.modeling_tf_pytorch_utils import load_pytorch_state_dict_in_tf2_model

    model = tf_sam_model(SamConfig.from_pretrained(folder))
    model.build_in_name_scope()
    _, info = load_pytorch_state_dict_in_tf2_model(
        model, load_file(os.path.join(folder, "model.safetensors")), tf_inputs=False,
        allow_missing_keys=True, output_loading_info=True)
    if info["missing_keys"] or info["mismatched_keys"]:
        problems = info["missing_keys"] + [key for key, *_ in info["mismatched_keys"]]
        raise ModelLoadError(f"{folder}/model.safetensors does not fit its config.json: "
                             f"{len(problems)} weights missing or of another shape, e.g. {problems[0]}")
    return model
