"""Where TFSamModel comes from: the transformers version check and loading by name or path."""

import os
import socket
import urllib.parse

import h5py
import transformers

_TRANSFORMERS_HINT = "pip install 'transformers>=4.40,<5'"
PRETRAINED_DIRECTORY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pretrained")
HUB_CONNECT_TIMEOUT = 5.0
"""Seconds to wait for the hub before saying it cannot be reached."""
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
            raise ModelLoadError(f"{name} has no config.json: it is not a saved SAM model "
                                 f"(expected a directory written by save_pretrained){_saved_models_in(name)}.")
    elif name.startswith((".", os.path.sep, "~")) or name.count("/") > 1 or name.endswith(".keras"):
        raise ModelLoadError(f"model directory {name} does not exist.")
    else:
        _check_hub_reachable(name)
    # transformers 4.5x reads safetensors files for TensorFlow through an API safetensors 0.6
    # removed (transformers#40028): prefer tf_model.h5, and read a lone model.safetensors here.
    if _holds_only_safetensors(name) and not kwargs:
        return _from_pytorch_safetensors(tf_sam_model, name)
    try:
        if not kwargs and os.path.isfile(os.path.join(name, "tf_model.h5")):
            model = _built_from_checkpoint(tf_sam_model, name)
            if model is not None:
                return model
        return tf_sam_model.from_pretrained(name, **{"use_safetensors": False, **kwargs})
    except OSError as error:
        if os.path.isdir(name):
            raise ModelLoadError(f"could not load the SAM model in {name}: {error}") from error
        raise ModelLoadError(
            f"could not download {name!r} from the Hugging Face hub (no network or unknown id). "
            "Pass a local directory written by save_pretrained, or try the offline demo "
            "(keras-sam finetune --demo)."
        ) from error


def _saved_models_in(folder):
    """"; did you mean ...?" naming the saved models one level down (a run's model/), or ""."""
    found = sorted(os.path.join(folder, entry) for entry in os.listdir(folder)
                   if os.path.isfile(os.path.join(folder, entry, "config.json")))
    return f"; did you mean {' or '.join(found)}?" if found else ""


def _check_hub_reachable(name):
    """Fails at once, in one line, when hub id `name` is neither cached nor reachable.

    Offline, transformers retries for about half a minute and logs a traceback for each try
    before its own error; a model found in the local cache loads without the network.
    """
    import huggingface_hub
    from huggingface_hub import constants

    cached = huggingface_hub.try_to_load_from_cache(name, "config.json")
    if isinstance(cached, str):
        return
    host = urllib.parse.urlparse(constants.ENDPOINT).hostname
    if constants.HF_HUB_OFFLINE:
        why = "HF_HUB_OFFLINE is set"
    else:
        try:
            socket.create_connection((host, 443), timeout=HUB_CONNECT_TIMEOUT).close()
            return
        except OSError as error:
            why = f"{host} cannot be reached: {error.strerror or error}"
    raise ModelLoadError(
        f"could not download {name!r} from the Hugging Face hub ({why}), and it is not in the local "
        "cache. Pass a local directory written by save_pretrained, or try the offline demo "
        "(keras-sam finetune --demo).")


def _built_from_checkpoint(tf_sam_model, folder):
    """The model in a `save_pretrained` folder, each weight created from its tf_model.h5 entry; None
    unless the checkpoint holds exactly the model's weights (names and shapes).

    transformers' `from_pretrained` runs every initializer, then reads the whole checkpoint into
    memory and copies it over the weights: every weight drawn at random only to be overwritten,
    and the checkpoint held in fresh memory twice (BENCHMARKS.md has what it costs). A
    checkpoint that lacks a weight, holds one more or another shape is left to transformers,
    which initialises what is missing and warns.
    """
    import tensorflow as tf  # here, not above: the Keras 3 family uses this module without TensorFlow
    from transformers import SamConfig

    with h5py.File(os.path.join(folder, "tf_model.h5"), "r") as checkpoint:
        entries = {}  # by weight name below the saved model's own name
        for layer in checkpoint.attrs.get("layer_names", []):
            group = checkpoint[_text(layer)]
            for name in group.attrs.get("weight_names", []):
                entries[_text(name).split("/", 1)[-1]] = group[_text(name)]
        created = set()

        def from_checkpoint(next_creator, **kwargs):
            name = f"{tf.get_current_name_scope()}/{kwargs.get('name')}:0".split("/", 1)[-1]
            entry, shape = entries.get(name), kwargs.get("shape")
            if (entry is not None and callable(kwargs.get("initial_value")) and shape is not None
                    and tuple(entry.shape) == tuple(tf.TensorShape(shape).as_list())):
                dtype = tf.as_dtype(kwargs.get("dtype") or tf.float32)
                kwargs["initial_value"] = lambda: tf.convert_to_tensor(entry[()].astype(dtype.as_numpy_dtype))
                created.add(name)
            return next_creator(**kwargs)

        config = SamConfig.from_pretrained(folder)
        config.name_or_path = folder  # as transformers' from_pretrained records it
        with tf.variable_creator_scope(from_checkpoint):
            model = tf_sam_model(config)
            model.build_in_name_scope()
    weights = {weight.name.split("/", 1)[-1] for weight in model.weights}
    return model if created == set(entries) == weights else None


def _text(name):
    return name.decode() if isinstance(name, bytes) else name


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
