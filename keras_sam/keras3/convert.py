"""Weights between transformers' SAM checkpoints and keras-sam's Keras 3 model, both ways.

A transformers checkpoint is a folder with `config.json` and the weights as `tf_model.h5` (what
`TFSamModel.save_pretrained` writes) or `model.safetensors` with PyTorch names (what
facebook/sam-vit-base ships). Both are read here with h5py and safetensors alone: no transformers
TensorFlow class and no tf_keras are imported. In between, weights are held under PyTorch's names
and layouts, the one both formats can be turned into:

    tf_model.h5 (TF names) ─┐                          ┌─► keras-hub parts (SamSegmenter, Keras 3)
    model.safetensors ──────┴─► {PyTorch name: array} ─┤
                                                       └─► model.safetensors (+ config.json)
"""

import os
import re

import h5py
import numpy as np
from safetensors.numpy import load_file, save_file
from transformers import SamConfig

from keras_sam.common.configs import processor_for_config
from keras_sam.common.hub import ModelLoadError, shipped_model_path
from keras_sam.common.storage import atomic_directory
from keras_sam.common.trained_prompt import record_trained_prompt

# Conv kernels: TensorFlow (kh, kw, in, out), or (kh, kw, out, in) for a transposed conv, against
# PyTorch (out, in, kh, kw), or (in, out, kh, kw): the same permutation either way.
_TF_CONV_TO_TORCH = (3, 2, 0, 1)
_TORCH_CONV_TO_KERAS = (2, 3, 1, 0)


# ------------------------------------------------------------------------------ transformers side
def read_checkpoint(name_or_path):
    """The SamConfig and the weights {PyTorch name: float32 array} of a transformers checkpoint.

    Args:
        name_or_path: a model shipped with keras-sam ("sam-small-shapes") or a folder holding
            config.json and model.safetensors or tf_model.h5.

    Raises:
        ModelLoadError: the folder is missing or holds no SAM checkpoint; names what to give.
    """
    folder = shipped_model_path(os.fspath(name_or_path)) or os.fspath(name_or_path)
    config_path = os.path.join(folder, "config.json")
    if not os.path.exists(config_path):
        raise ModelLoadError(f"{folder} is not a transformers SAM checkpoint: no config.json "
                             "(expected a folder written by save_pretrained or keras-sam convert)")
    config = SamConfig.from_pretrained(folder)
    if os.path.exists(os.path.join(folder, "model.safetensors")):
        weights = load_file(os.path.join(folder, "model.safetensors"))
    elif os.path.exists(os.path.join(folder, "tf_model.h5")):
        weights = _read_tf_h5(os.path.join(folder, "tf_model.h5"))
    else:
        raise ModelLoadError(f"{folder} holds no model.safetensors or tf_model.h5")
    return config, {name: np.asarray(value, np.float32) for name, value in weights.items()}


def _read_tf_h5(path):
    """tf_model.h5 as `TFSamModel.save_pretrained` writes it, under PyTorch's names and layouts."""
    weights = {}

    def visit(name, item):
        # "mask_decoder/tf_sam_model_3/mask_decoder/...:0": the model's scope is numbered when
        # several models were built in one process; what follows it is the weight's own name.
        parts = re.split(r"(?:^|/)tf_sam_model(?:_\d+)?/", name, maxsplit=1)
        if isinstance(item, h5py.Dataset) and len(parts) == 2:
            torch_name, value = _torch_name_and_value(parts[1], item[()])
            weights[torch_name] = value
    with h5py.File(path, "r") as handle:
        handle.visititems(visit)
    return weights


def _torch_name_and_value(tf_name, value):
    name = re.sub(r":0$", "", tf_name).replace("/", ".").replace("_._", ".")
    last = name.rsplit(".", 1)[-1]
    name = name[: -len(last)] + {"kernel": "weight", "gamma": "weight", "beta": "bias"}.get(last, last)
    if last == "kernel":
        value = value.T if value.ndim == 2 else np.transpose(value, _TF_CONV_TO_TORCH)
    return name, value


def write_safetensors(folder, config, weights):
    """A transformers checkpoint folder: config.json, model.safetensors (PyTorch names), processor."""
    with atomic_directory(folder) as staging:
        config.save_pretrained(staging)
        processor_for_config(config).save_pretrained(staging)
        save_file({name: np.ascontiguousarray(value) for name, value in weights.items()},
                  os.path.join(staging, "model.safetensors"), metadata={"format": "pt"})


# ------------------------------------------------------------------------------ keras-hub side
def _by_type(model, type_name):
    return [layer for layer in model.layers if type(layer).__name__ == type_name]


def _dense(layer, prefix):
    return [(layer.kernel, f"{prefix}.weight", "T"), (layer.bias, f"{prefix}.bias", None)]


def _norm(layer, prefix):
    return [(layer.gamma, f"{prefix}.weight", None), (layer.beta, f"{prefix}.bias", None)]


def _conv(layer, prefix, bias=True):
    pairs = [(layer.kernel, f"{prefix}.weight", "conv")]
    return pairs + ([(layer.bias, f"{prefix}.bias", None)] if bias else [])


def _mlp(sequential, prefixes):
    denses = [layer for layer in sequential.layers if type(layer).__name__ == "Dense"]
    return [pair for layer, prefix in zip(denses, prefixes) for pair in _dense(layer, prefix)]


def variable_map(image_encoder, prompt_encoder, mask_decoder):
    """[(keras variable, PyTorch name, layout change)] for every weight of the three parts."""
    pairs = []
    patching = _by_type(image_encoder, "ViTDetPatchingAndEmbedding")[0]
    pairs += _conv(patching.projection, "vision_encoder.patch_embed.projection")
    for layer in _by_type(image_encoder, "AddPositionalEmbedding"):
        pairs.append((layer.pos_embed, "vision_encoder.pos_embed", None))
    for index, block in enumerate(_by_type(image_encoder, "WindowedTransformerEncoder")):
        prefix = f"vision_encoder.layers.{index}"
        pairs += _norm(block.layer_norm1, f"{prefix}.layer_norm1") + _norm(block.layer_norm2, f"{prefix}.layer_norm2")
        pairs += _dense(block.attention.qkv, f"{prefix}.attn.qkv") + _dense(block.attention.projection, f"{prefix}.attn.proj")
        if block.attention.use_rel_pos:
            relative = block.attention.add_decomposed_relative_pe
            pairs += [(relative.rel_pos_h, f"{prefix}.attn.rel_pos_h", None),
                      (relative.rel_pos_w, f"{prefix}.attn.rel_pos_w", None)]
        pairs += _mlp(block.mlp_block.dense_net, [f"{prefix}.mlp.lin1", f"{prefix}.mlp.lin2"])
    neck = image_encoder.neck.layers
    pairs += _conv(neck[0], "vision_encoder.neck.conv1", bias=False) + _norm(neck[1], "vision_encoder.neck.layer_norm1")
    pairs += _conv(neck[2], "vision_encoder.neck.conv2", bias=False) + _norm(neck[3], "vision_encoder.neck.layer_norm2")

    embedding = prompt_encoder.positional_embedding_layer
    pairs.append((embedding.positional_encoding_gaussian_matrix, "shared_image_embedding.positional_embedding", None))
    for index, layer in enumerate((prompt_encoder.background_point_embed, prompt_encoder.foreground_point_embed,
                                   prompt_encoder.top_left_corner_embed, prompt_encoder.bottom_right_corner_embed)):
        pairs.append((layer.embeddings, f"prompt_encoder.point_embed.{index}.weight", None))
    pairs.append((prompt_encoder.not_a_point_embed.embeddings, "prompt_encoder.not_a_point_embed.weight", None))
    pairs.append((prompt_encoder.no_mask_embed.embeddings, "prompt_encoder.no_mask_embed.weight", None))
    downscaler = [layer for layer in prompt_encoder.mask_downscaler.layers if type(layer).__name__ != "Activation"]
    for layer, name in zip(downscaler, ("conv1", "layer_norm1", "conv2", "layer_norm2", "conv3")):
        prefix = f"prompt_encoder.mask_embed.{name}"
        pairs += _conv(layer, prefix) if name.startswith("conv") else _norm(layer, prefix)

    pairs += [(mask_decoder.iou_token.embeddings, "mask_decoder.iou_token.weight", None),
              (mask_decoder.mask_tokens.embeddings, "mask_decoder.mask_tokens.weight", None)]
    attentions = {"self_attention": "self_attn", "cross_attention_token_to_image": "cross_attn_token_to_image",
                  "cross_attention_image_to_token": "cross_attn_image_to_token"}
    for index, block in enumerate(mask_decoder.transformer.layers):
        prefix = f"mask_decoder.transformer.layers.{index}"
        for attribute, name in attentions.items():
            pairs += _attention(getattr(block, attribute), f"{prefix}.{name}")
        for number in (1, 2, 3, 4):
            pairs += _norm(getattr(block, f"layer_norm{number}"), f"{prefix}.layer_norm{number}")
        pairs += _mlp(block.mlp_block.mlp_block, [f"{prefix}.mlp.lin1", f"{prefix}.mlp.lin2"])
    pairs += _attention(mask_decoder.transformer.final_attention_token_to_image,
                        "mask_decoder.transformer.final_attn_token_to_image")
    pairs += _norm(mask_decoder.transformer.final_layer_norm, "mask_decoder.transformer.layer_norm_final_attn")
    upscaling = [layer for layer in mask_decoder.output_upscaling.layers if type(layer).__name__ != "Activation"]
    pairs += _conv(upscaling[0], "mask_decoder.upscale_conv1") + _norm(upscaling[1], "mask_decoder.upscale_layer_norm")
    pairs += _conv(upscaling[2], "mask_decoder.upscale_conv2")
    heads = [(mlp, f"mask_decoder.output_hypernetworks_mlps.{index}")
             for index, mlp in enumerate(mask_decoder.output_hypernetworks_mlps)]
    heads.append((mask_decoder.iou_prediction_head, "mask_decoder.iou_prediction_head"))
    for mlp, prefix in heads:
        hidden = [f"{prefix}.layers.{index}" for index in range(mlp.num_layers - 2)]
        pairs += _mlp(mlp.mlp_block, [f"{prefix}.proj_in", *hidden, f"{prefix}.proj_out"])
    return pairs


def _attention(layer, prefix):
    return [pair for dense, name in ((layer.query_proj, "q_proj"), (layer.key_proj, "k_proj"),
                                     (layer.value_proj, "v_proj"), (layer.out_proj, "out_proj"))
            for pair in _dense(dense, f"{prefix}.{name}")]


def _to_keras(value, change):
    if change == "T":
        return value.T
    if change == "conv":
        return np.transpose(value, _TORCH_CONV_TO_KERAS)
    return value


def _to_torch(value, change):
    if change == "T":
        return value.T
    if change == "conv":
        return np.transpose(value, np.argsort(_TORCH_CONV_TO_KERAS))
    return value


def assign_weights(parts, weights):
    """Copies {PyTorch name: array} into keras-hub's SAM parts; every weight must be there."""
    pairs = variable_map(*parts)
    missing = sorted({name for _, name, _ in pairs} - set(weights))
    if missing:
        raise ModelLoadError(f"the checkpoint lacks {len(missing)} of SAM's weights, e.g. {missing[0]}")
    for variable, name, change in pairs:
        value = _to_keras(weights[name], change)
        if tuple(variable.shape) != value.shape:
            raise ModelLoadError(f"{name} has shape {value.shape}; the model expects {tuple(variable.shape)}")
        variable.assign(value.astype(np.float32))


def export_weights(parts):
    """{PyTorch name: array} of keras-hub's SAM parts."""
    return {name: np.asarray(_to_torch(np.asarray(variable), change), np.float32)
            for variable, name, change in variable_map(*parts)}


def sam_config_of(model):
    """The transformers SamConfig matching a Keras 3 SamSegmenter's parts."""
    encoder, prompt, decoder = model.image_encoder, model.prompt_encoder, model.mask_decoder
    return SamConfig(
        vision_config=dict(
            hidden_size=encoder.hidden_size, num_hidden_layers=encoder.num_layers,
            num_attention_heads=encoder.num_heads, mlp_dim=encoder.intermediate_dim,
            output_channels=encoder.num_output_channels, image_size=encoder.image_shape[0],
            patch_size=encoder.patch_size, global_attn_indexes=list(encoder.global_attention_layer_indices),
            window_size=encoder.window_size, qkv_bias=encoder.use_bias, use_abs_pos=encoder.use_abs_pos,
            use_rel_pos=encoder.use_rel_pos, layer_norm_eps=encoder.layer_norm_epsilon,
            num_pos_feats=prompt.hidden_size // 2),
        prompt_encoder_config=dict(
            hidden_size=prompt.hidden_size, image_size=encoder.image_shape[0], patch_size=encoder.patch_size,
            mask_input_channels=prompt.mask_in_channels),
        mask_decoder_config=dict(
            hidden_size=decoder.hidden_size, num_hidden_layers=decoder.num_layers,
            num_attention_heads=decoder.num_heads, mlp_dim=decoder.intermediate_dim,
            num_multimask_outputs=decoder.num_multimask_outputs, iou_head_depth=decoder.iou_head_depth,
            iou_head_hidden_dim=decoder.iou_head_hidden_dim))


def save_pretrained(model, folder):
    """Writes a Keras 3 SamSegmenter as a transformers checkpoint (config.json, model.safetensors)."""
    config = record_trained_prompt(sam_config_of(model), model.trained_prompt)
    write_safetensors(folder, config, export_weights((model.image_encoder, model.prompt_encoder,
                                                      model.mask_decoder)))
    return config


def checkpoint_from_keras_file(path, folder):
    """Writes the Keras 3 SamSegmenter saved in `path` (a .keras file) as a transformers
    checkpoint in `folder`, which the tf-keras family loads (how the command line and export take
    the .keras files `keras-sam convert` writes). Returns the model's `multimask_output`.

    Raises:
        ModelLoadError: `path` cannot be read as a Keras 3 SamSegmenter.
    """
    import keras

    from keras_sam.keras3.segmenter import SamSegmenter  # registers the classes load_model needs

    try:
        model = keras.models.load_model(path)
    except Exception as error:  # Keras raises many kinds for a file it cannot read
        raise ModelLoadError(f"could not load {path} as a Keras 3 model ({type(error).__name__}: {error})") from error
    if not isinstance(model, SamSegmenter):
        raise ModelLoadError(f"{path} holds a {type(model).__name__}, not a keras-sam SamSegmenter")
    save_pretrained(model, folder)
    return model.multimask_output
