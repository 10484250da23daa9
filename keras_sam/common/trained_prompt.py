"""Which kind of prompt a model was fine-tuned with, kept in its SAM config so loading knows.

SAM prompted with nothing at all (no point, box or mask) outlines whatever it finds most salient;
only a model fine-tuned with `--prompt none` (keras_sam.data.PromptOptions(kind="none")) has
learnt what to outline then. `keras-sam finetune` records the run's prompt kind in the model's
config (`config.json` of a save_pretrained folder, the config of a .keras file), under
CONFIG_KEY; inference reads it back and warns before segmenting with no prompt a model that was
not trained for it. Shared by both model families: no Keras here.
"""

import warnings

CONFIG_KEY = "keras_sam_trained_prompt"
"""The SamConfig attribute (a key of config.json) holding the prompt kind a model was fine-tuned with."""


def trained_prompt_of(config):
    """The prompt kind recorded in a transformers SamConfig (or a config dict), or None."""
    if isinstance(config, dict):
        return config.get(CONFIG_KEY)
    return getattr(config, CONFIG_KEY, None)


def record_trained_prompt(config, kind):
    """Records `kind` ("box", "points", "box+points", "none", ...) in a SamConfig; returns it."""
    setattr(config, CONFIG_KEY, None if kind is None else str(kind))
    return config


def warn_if_not_trained_for_no_prompt(kind, stacklevel=3):
    """Warns that a model whose recorded prompt kind is `kind` (None: not recorded) is being used
    with no prompt, which only a `--prompt none` model was trained for."""
    if kind == "none":
        return
    trained = f"was fine-tuned with {kind} prompts" if kind else "records no fine-tuning without a prompt"
    warnings.warn(f"segmenting with no prompt, but this model {trained}: expect a poor mask. Give a box or "
                  "clicks, or fine-tune with --prompt none (PromptOptions(kind='none')).",
                  UserWarning, stacklevel=stacklevel)
