"""How the image encoder adapts in training, as names and checks both model families and the
command line share (no Keras here).

- "decoder": the encoder stays frozen (its embeddings can be cached); the mask decoder learns.
- "lora": low-rank updates of the encoder's linear layers (Hu et al. 2021, "LoRA: Low-Rank
  Adaptation of Large Language Models"; SAMed puts them on the attention's qkv at rank 4).
- "adapter": bottleneck MLPs inside each encoder block (Wu et al. 2023, "Medical SAM Adapter",
  after AdaptFormer, Chen et al. 2022).
- "full": every weight of the encoder learns.
"""

ADAPT_METHODS = ("decoder", "lora", "adapter", "full")
DEFAULT_ADAPT = "decoder"
DEFAULT_LORA_RANK = 4  # SAMed's rank
LORA_TARGETS = ("qkv", "proj", "mlp")
"""Linear layers of each encoder block LoRA can update: the attention's fused query/key/value
projection, its output projection, and the MLP's two layers."""
DEFAULT_LORA_TARGETS = ("qkv",)
DEFAULT_ADAPTER_RATIO = 0.25  # Medical SAM Adapter's bottleneck: a quarter of the width


def check_rank(rank):
    """`rank` as a positive int.

    Raises:
        ValueError: rank is not a whole number of at least 1.
    """
    if isinstance(rank, bool) or not isinstance(rank, int) or rank <= 0:
        raise ValueError(f"LoRA rank must be a whole number of at least 1 (4 is SAMed's); got {rank!r}")
    return rank


def check_targets(targets):
    """`targets` as a tuple of LoRA target names, checked.

    Raises:
        ValueError: an unknown name, with the list of valid ones; or no target at all.
    """
    targets = (targets,) if isinstance(targets, str) else tuple(targets or ())
    unknown = [name for name in targets if name not in LORA_TARGETS]
    if unknown:
        raise ValueError(f"unknown LoRA target {', '.join(map(repr, unknown))}; valid targets are "
                         f"{', '.join(LORA_TARGETS)}")
    if not targets:
        raise ValueError(f"LoRA needs at least one target among {', '.join(LORA_TARGETS)}")
    return tuple(dict.fromkeys(targets))


def check_method(method):
    """`method` checked against ADAPT_METHODS."""
    if method not in ADAPT_METHODS:
        raise ValueError(f"unknown adaptation {method!r}; choose one of {', '.join(ADAPT_METHODS)}")
    return method
