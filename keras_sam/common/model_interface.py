"""What keras-sam's machinery needs from a model, written down once (no Keras here).

The embedding cache (`embeddings.py`), inference (`inference.py`), evaluation and the overlays
(`overlays.py`, the families' `callbacks.py`) take any model that has these members; both model
families' `SamSegmenter` implement all of them, and `tests/test_model_interface.py` (and its
Keras 3 twin under `tests/keras3/`) check both. Code that takes a model uses the members directly:
a model that lacks one fails at once with an AttributeError naming it, not later with wrong
results.
"""

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class SegmenterModel(Protocol):
    """A SAM segmenter as keras-sam's cache, inference, evaluation and overlays use it.

    Calling it with the input dict (`pixel_values` (B, 3, S, S) or `image_embeddings`
    (B, C, E, E), and prompts: `input_boxes`, `input_points`/`input_labels`, `input_masks`)
    returns {"mask_logits": (B, M, G, G), "iou_scores": (B, M)}.
    """

    @property
    def processor(self) -> Any:
        """The transformers SamProcessor whose resizing and padding match the model."""

    @property
    def embedding_shape(self) -> tuple:
        """(C, E, E): one image embedding's shape."""

    @property
    def encoder_weights(self) -> list:
        """The image encoder's weights (anything `numpy.asarray` takes): what an embedding depends on."""

    @property
    def encoder_dtype(self) -> str:
        """The dtype name the image encoder computes in ("float32", "bfloat16", ...)."""

    @property
    def mask_grid(self) -> int:
        """G: the side of the low-resolution logits grid (masks and `input_masks`)."""

    @property
    def trained_prompt(self) -> Any:
        """The prompt kind the model was fine-tuned with ("box", "none", ...), None if unrecorded."""

    @property
    def freeze(self) -> tuple:
        """Names of the frozen components, among keras_sam.common.training_options.COMPONENTS."""

    def image_embeddings(self, pixel_values: Any) -> Any:
        """(B, 3, S, S) processor-normalised pixel values -> (B, C, E, E) float32 embeddings."""

    def trace_image_embeddings(self, batch_size: int) -> None:
        """Prepares `image_embeddings` for calls of `batch_size` images without running it."""

    def __call__(self, inputs: Any, training: bool = False) -> Any:
        """The input dict -> {"mask_logits": (B, M, G, G), "iou_scores": (B, M)}."""
