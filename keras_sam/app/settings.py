"""A fine-tuning run's settings: one frozen object, filled from the command line and the presets.

The settings are what makes a run what it is: the same settings on the same `--output` resume
the run, different ones are refused. Where the command line leaves a value out, the model's
preset (or the demo's) supplies it: this table is the only place that knows what differs
between the models keras-sam can start from.
"""

import dataclasses
import os

from keras_sam.app.errors import UsageError
from keras_sam.configs import tiny_sam_config
from keras_sam.hub import require_tf_sam
from keras_sam.components import COMPONENTS
from keras_sam.segmenter import SamSegmenter
from keras_sam.surface_metrics import DEFAULT_NSD_TOLERANCE


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
                        random_config=tiny_sam_config),
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


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """Everything that defines a fine-tuning run (not where it is written, nor on which devices)."""

    demo: bool
    data: str
    model: str
    layout: str
    mask_suffix: str
    epochs: int
    batch_size: int
    learning_rate: float
    freeze: tuple
    prompt: str
    val_split: float
    test_split: float
    seed: int
    loss: str
    jitter: float
    embedding_cache: bool
    precision: str  # "auto", "float32" or "mixed_bfloat16"
    jit_compile: object  # True, False, or None: measured on the machine that runs
    skip_bad_files: bool
    # Added with the surface metrics; defaults let run.json files written before them load.
    nsd_tolerance: float = DEFAULT_NSD_TOLERANCE  # mm, or px when the data has no spacing
    units: str = "auto"  # surface metrics in: "auto" (mm where known), "mm" or "px"

    def to_json(self):
        """A JSON-ready dict (what run.json holds)."""
        payload = dataclasses.asdict(self)
        payload["freeze"] = list(self.freeze)
        return payload

    @classmethod
    def from_json(cls, payload):
        """The settings back from `to_json`; None if `payload` is not a complete settings dict."""
        names = {field.name for field in dataclasses.fields(cls)}
        required = {field.name for field in dataclasses.fields(cls)
                    if field.default is dataclasses.MISSING}
        if not isinstance(payload, dict) or not required <= set(payload) <= names:
            return None
        return cls(**{**payload, "freeze": tuple(payload["freeze"])})

    @property
    def uses_embedding_cache(self):
        """The frozen vision encoder runs once per image, not once per step."""
        return self.embedding_cache and "vision_encoder" in self.freeze


def parse_freeze(text):
    """'vision_encoder,prompt_encoder' -> ('vision_encoder', 'prompt_encoder'), checked."""
    names = tuple(name for name in text.split(",") if name)
    unknown = [name for name in names if name not in COMPONENTS]
    if unknown:
        raise UsageError(f"--freeze {','.join(unknown)} is not a component; choose from {', '.join(COMPONENTS)}")
    return names


def resolve(args):
    """The run's settings and output folder from parsed arguments: presets fill what is left out.

    Raises:
        UsageError: a missing or contradictory value, named.
    """
    if args.demo:
        if args.data:
            raise UsageError("--demo generates its own data; drop --data (or drop --demo)")
        model, data, output = args.model or DEMO.model, None, args.output or DEMO.output
        epochs, jitter = args.epochs or DEMO.epochs, DEMO.jitter if args.jitter is None else args.jitter
    else:
        missing = [flag for flag, value in (("--data", args.data), ("--model", args.model),
                                            ("--output", args.output)) if not value]
        if missing:
            raise UsageError(f"finetune needs {', '.join(missing)} (or --demo for an offline demo)")
        if not os.path.isdir(args.data):
            raise UsageError(f"--data {args.data} is not a folder")
        if not os.listdir(args.data):
            raise UsageError(f"--data {args.data} is empty")
        model, data, output = args.model, os.path.abspath(args.data), args.output
        epochs, jitter = args.epochs or DEFAULT_EPOCHS, DEFAULT_JITTER if args.jitter is None else args.jitter
    preset = preset_of(model)
    settings = RunSettings(
        demo=args.demo, data=data, model=model, layout=args.layout, mask_suffix=args.mask_suffix,
        epochs=epochs, batch_size=args.batch_size,
        learning_rate=preset.learning_rate if args.lr is None else args.lr,
        freeze=parse_freeze(args.freeze), prompt=args.prompt, val_split=args.val_split,
        test_split=args.test_split, seed=args.seed, loss=args.loss, jitter=jitter,
        embedding_cache=not args.no_embedding_cache,
        precision=(preset.precision or "auto") if args.precision == "auto" else args.precision,
        jit_compile=preset.jit_compile if args.jit_compile is None else args.jit_compile,
        skip_bad_files=args.skip_bad_files,
        nsd_tolerance=getattr(args, "nsd_tolerance", DEFAULT_NSD_TOLERANCE),
        units=getattr(args, "units", "auto"),
    )
    _check(settings)
    return settings, output


def _check(settings):
    if settings.jitter < 0:
        raise UsageError(f"--jitter must be >= 0 pixels; got {settings.jitter}")
    if settings.val_split + settings.test_split >= 1:
        raise UsageError(
            f"--val-split {settings.val_split} and --test-split {settings.test_split} sum to "
            "1 or more: nothing is left to train on")
    if settings.val_split == 0:
        raise UsageError("--val-split 0 leaves no validation lesions to choose the best checkpoint on")


def load_segmenter(model, freeze=("vision_encoder", "prompt_encoder")):
    """A SamSegmenter from a --model value: a preset built with random weights (seed them first
    with keras.utils.set_random_seed), a saved directory, or a hub id."""
    preset = preset_of(model)
    if preset.random_config is not None:
        return SamSegmenter(require_tf_sam()(preset.random_config()), freeze=freeze)
    return SamSegmenter.from_pretrained(model, freeze=freeze)
