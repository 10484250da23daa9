"""SAM's components and which of them train: shared by both model families (no Keras here)."""

COMPONENTS = ("vision_encoder", "prompt_encoder", "mask_decoder", "iou_head")


def frozen_names(names):
    """`freeze=` as a checked tuple of component names.

    Raises:
        ValueError: a name that is not a component, with the list of those that are.
    """
    names = (names,) if isinstance(names, str) else tuple(names or ())
    unknown = [name for name in names if name not in COMPONENTS]
    if unknown:
        raise ValueError(f"cannot freeze {', '.join(map(repr, unknown))}: SAM's components are "
                         f"{', '.join(COMPONENTS)}")
    return names


def trainable_flags(frozen):
    """{component: trainable} for a tuple of frozen names (the IoU head is part of the decoder)."""
    flags = {name: name not in frozen for name in COMPONENTS}
    if "mask_decoder" in frozen and "iou_head" not in frozen:
        flags["iou_head"] = False
    return flags
