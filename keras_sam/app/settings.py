"""A fine-tuning run's settings: one frozen object, filled from the command line and the presets.

The settings are what makes a run what it is: the same settings on the same `--output` resume
the run, different ones are refused. Where the command line leaves a value out, the model's
preset (or the demo's, in `keras_sam.app.defaults`) supplies it.
"""

import dataclasses
import os

from keras_sam.common.adaptation_options import DEFAULT_ADAPT, DEFAULT_LORA_RANK, DEFAULT_LORA_TARGETS, check_targets
from keras_sam.app.defaults import DEFAULT_EPOCHS, DEFAULT_JITTER, DEMO, preset_of
from keras_sam.app.errors import UsageError
from keras_sam.common.training_options import COMPONENTS
from keras_sam.data.prompt_options import DEFAULT_CLICK_ROUNDS
from keras_sam.common.surface_metrics import DEFAULT_NSD_TOLERANCE


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
    # Added with encoder adaptation (keras_sam.common.adaptation_options); defaults as runs before it trained.
    adapt: str = DEFAULT_ADAPT  # "decoder", "lora", "adapter" or "full"
    lora_rank: int = DEFAULT_LORA_RANK
    lora_targets: str = ",".join(DEFAULT_LORA_TARGETS)  # comma-separated, as on the command line
    recompute: bool = False  # gradient checkpointing of the encoder's blocks when it learns
    # Added with corrective clicks (prompt "clicks"): the most rounds a training sample gets.
    click_rounds: int = DEFAULT_CLICK_ROUNDS
    # Added with no-prompt training: images without a lesion as negatives (--prompt none only).
    include_normal: bool = False

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
        """The frozen vision encoder runs once per image, not once per step (not with LoRA or
        adapters, which change its output as they learn)."""
        return self.embedding_cache and "vision_encoder" in self.freeze and self.adapt not in ("lora", "adapter")


def parse_freeze(text):
    """'vision_encoder,prompt_encoder' -> ('vision_encoder', 'prompt_encoder'), checked."""
    names = tuple(name for name in text.split(",") if name)
    unknown = [name for name in names if name not in COMPONENTS]
    if unknown:
        raise UsageError(f"--freeze {','.join(unknown)} is not a component; choose from {', '.join(COMPONENTS)}")
    return names


def _freeze_for(args):
    """--freeze, checked against --adapt; left out, what --adapt implies."""
    if args.freeze is None:
        # Corrective clicks feed the previous mask back through the prompt encoder's mask
        # embedding, which a model trained with boxes (the shipped one) never learned: it trains.
        learns_prompts = args.prompt == "clicks"
        if args.adapt == "full":
            return () if learns_prompts else ("prompt_encoder",)
        return ("vision_encoder",) if learns_prompts else ("vision_encoder", "prompt_encoder")
    frozen = parse_freeze(args.freeze)
    if args.adapt in ("lora", "adapter", "full") and "vision_encoder" in frozen:
        raise UsageError(f"--adapt {args.adapt} trains the image encoder, which --freeze {args.freeze} keeps "
                         "fixed; drop vision_encoder from --freeze (or use --adapt decoder)")
    return frozen


def _lora_targets(text):
    """'qkv,mlp' checked against keras_sam.common.adaptation_options.LORA_TARGETS; returned as given, normalised."""
    try:
        return ",".join(check_targets(tuple(name for name in text.split(",") if name)))
    except ValueError as error:
        raise UsageError(f"--lora-targets {text}: {error}") from None


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
        freeze=_freeze_for(args), prompt=args.prompt, val_split=args.val_split,
        test_split=args.test_split, seed=args.seed, loss=args.loss, jitter=jitter,
        embedding_cache=not args.no_embedding_cache,
        precision=(preset.precision or "auto") if args.precision == "auto" else args.precision,
        jit_compile=preset.jit_compile if args.jit_compile is None else args.jit_compile,
        skip_bad_files=args.skip_bad_files,
        nsd_tolerance=args.nsd_tolerance,
        units=args.units,
        adapt=args.adapt, lora_rank=args.lora_rank, lora_targets=_lora_targets(args.lora_targets),
        recompute=args.recompute,
        click_rounds=DEFAULT_CLICK_ROUNDS if args.click_rounds is None else args.click_rounds,
        include_normal=args.include_normal,
    )
    if args.click_rounds is not None and settings.prompt != "clicks":
        raise UsageError(f"--click-rounds {args.click_rounds} sets the corrective rounds of --prompt clicks; "
                         f"this run's prompt is {settings.prompt}: add --prompt clicks or drop --click-rounds")
    _check(settings)
    return settings, output


def _check(settings):
    if settings.jitter < 0:
        raise UsageError(f"--jitter must be >= 0 pixels; got {settings.jitter}")
    if settings.val_split + settings.test_split >= 1:
        raise UsageError(
            f"--val-split {settings.val_split} and --test-split {settings.test_split} sum to "
            "1 or more: nothing is left to train on")
    if settings.recompute and settings.uses_embedding_cache:
        raise UsageError("--recompute saves memory when the image encoder learns; with the frozen, cached "
                         "encoder (--adapt decoder) there is nothing to recompute: drop --recompute")
    if settings.prompt == "none" and "mask_decoder" in settings.freeze:
        raise UsageError(f"--prompt none trains the mask decoder to segment with no prompt, which --freeze "
                         f"{','.join(settings.freeze)} keeps fixed; drop mask_decoder from --freeze")
    if settings.include_normal and settings.prompt != "none":
        raise UsageError(f"--include-normal adds images without a lesion, which have no {settings.prompt} "
                         "prompt to give: use it with --prompt none")
    if settings.val_split == 0:
        raise UsageError("--val-split 0 leaves no validation lesions to choose the best checkpoint on")
    if settings.prompt == "clicks" and "prompt_encoder" in settings.freeze:
        print("warning: --prompt clicks with the prompt encoder frozen: the mask fed back each round goes "
              "through its mask embedding, which then cannot learn (clicks then score lower, see the README's "
              "Corrective clicks); leave prompt_encoder out of --freeze unless you mean it")


def speed_setting_sources(args):
    """Why the run's precision and XLA settings are what they are, in words for the log:
    {"precision": ..., "jit_compile": ...}; None where the machine that runs decides."""
    model = args.model or (DEMO.model if args.demo else None)
    preset = preset_of(model)
    precision = jit = None
    if args.precision != "auto":
        precision = f"set by --precision {args.precision}"
    elif preset.precision is not None:
        precision = f"the {model} preset's"
    if args.jit_compile is not None:
        jit = f"set by {'--jit-compile' if args.jit_compile else '--no-jit-compile'}"
    elif preset.jit_compile is not None:
        jit = f"the {model} preset's: its steps are too short to repay compiling"
    return {"precision": precision, "jit_compile": jit}
