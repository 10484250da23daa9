"""Which prompts a sample gets and how they are drawn: a description only, with no TensorFlow, so
the command line can list the choices without loading the pipeline that draws them."""

import dataclasses

PROMPT_KINDS = ("box", "points", "box+points", "none")


@dataclasses.dataclass(frozen=True)
class PromptOptions:
    """How prompts are drawn from each lesion's mask, anew every epoch.

    Args:
        kind: "box" (the lesion's box, jittered), "points" (points inside and outside the lesion),
            "box+points", or "none": SAM's empty prompt (no point, box or mask), for samples that
            are whole images (keras_sam.data.image_samples) whose target is all their lesions.
        jitter: largest move of each box side, in the image's own pixels.
        num_positive: points inside the lesion (label 1) for point prompts.
        num_negative: points outside it (label 0).
    """

    kind: str = "box"
    jitter: float = 20.0
    num_positive: int = 3
    num_negative: int = 1

    def __post_init__(self):
        if self.kind not in PROMPT_KINDS:
            raise ValueError(f"prompt kind must be one of {', '.join(PROMPT_KINDS)}; got {self.kind!r}")
        if self.jitter < 0:
            raise ValueError(f"jitter must be >= 0 pixels; got {self.jitter}")
        if self.num_positive < 0 or self.num_negative < 0:
            raise ValueError(f"point counts must be >= 0; got num_positive={self.num_positive}, "
                             f"num_negative={self.num_negative}")

    @property
    def boxes(self):
        return self.kind in ("box", "box+points")

    @property
    def points(self):
        return self.kind in ("points", "box+points")

    @property
    def none(self):
        """No prompt at all: the sample is the image."""
        return self.kind == "none"
