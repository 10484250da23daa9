"""Every default the command line shows in `--help`, importable without TensorFlow.

`keras-sam --help`, `--version` and a mistyped option are answered before TensorFlow is loaded,
so what the parser lists (models, presets, loss names, the demo) lives here, apart from the code
that uses it. This table is the only place that knows what differs between the models keras-sam
can start from.
"""

import dataclasses


def _tiny_config():
    from keras_sam.common.configs import tiny_sam_config

    return tiny_sam_config()


@dataclasses.dataclass(frozen=True)
class ModelPreset:
    """Defaults that depend on the model a run starts from.

    Args:
        learning_rate: Adam's step size.
        jit_compile: XLA for the decoder step from cached embeddings: True, False, or None to
            time it each way on the machine that runs and keep the faster (keras_sam.app.speed).
            Models whose steps are short never probe: compiling would cost more than it saves.
        precision: "float32", "mixed_bfloat16", or None for bfloat16 where the CPU has bfloat16
            instructions.
        random_config: for a model built with random weights rather than loaded, the function
            that makes its SamConfig.
    """

    learning_rate: float
    jit_compile: object = None
    precision: object = None
    random_config: object = None


DEFAULT_PRESET = ModelPreset(learning_rate=1e-5)
MODEL_PRESETS = {
    # The model shipped with keras-sam: pretrained on procedural shapes, small, short steps.
    "sam-small-shapes": ModelPreset(learning_rate=3e-4, jit_compile=False, precision="float32"),
    # Random weights need far larger steps than pretrained ones; its steps are too short for XLA.
    "tiny": ModelPreset(learning_rate=3e-3, jit_compile=False, precision="float32",
                        random_config=_tiny_config),
}


def preset_of(model):
    """The ModelPreset for a --model value (DEFAULT_PRESET for hub ids and directories)."""
    return MODEL_PRESETS.get(model, DEFAULT_PRESET)


@dataclasses.dataclass(frozen=True)
class DemoPreset:
    """What `keras-sam finetune --demo` runs: generated phantoms and a model that trains in minutes."""

    model: str = "sam-small-shapes"
    epochs: int = 30
    jitter: float = 10.0  # the phantoms are about half BUSI's size
    output: str = "keras-sam-demo"
    phantoms: tuple = (("benign", 40), ("malignant", 20), ("normal", 6))
    note: str = ("The demo fine-tunes sam-small-shapes, the small SAM that comes with keras-sam "
                 "(pretrained on procedural shapes,\nnever on ultrasound), on synthetic breast-ultrasound "
                 "phantoms: its numbers show what fine-tuning does,\nnot a medical result.")


DEMO = DemoPreset()
DEFAULT_EPOCHS = 10
DEFAULT_JITTER = 20.0
DEFAULT_BATCH_SIZE = 4
LOSS_NAMES = ("dice", "dice+bce", "focal")
"""The names of keras_sam.tfkeras.losses.LOSSES, for the parser."""

MIN_STEPS_TO_PROBE = 400
"""Runs shorter than this keep XLA off unmeasured: the probe traces the step twice and compiles it
with XLA once (BENCHMARKS.md has its cost), which only a long run can repay."""
