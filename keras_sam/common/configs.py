"""SAM configurations: a tiny one for tests and demos, and the processor that matches any config."""

from transformers import (
    SamConfig,
    SamImageProcessor,
    SamMaskDecoderConfig,
    SamProcessor,
    SamPromptEncoderConfig,
    SamVisionConfig,
)


def tiny_sam_config(image_size=256):
    """A SAM configuration small enough to train in milliseconds a step on a CPU.

    Its weights are random when built; it is for tests, demos and benchmarks of the machinery,
    not for segmenting anything real. Low-resolution masks are `image_size // 4` pixels square.

    Args:
        image_size: side of the square model input, a multiple of 64.

    Returns:
        A transformers `SamConfig`.

    Example:
        >>> from transformers import TFSamModel
        >>> sam = TFSamModel(tiny_sam_config())
    """
    if image_size % 64:
        raise ValueError(f"image_size must be a multiple of 64; got {image_size}")
    vision = SamVisionConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        mlp_dim=64,
        output_channels=32,
        image_size=image_size,
        patch_size=16,
        global_attn_indexes=[1],
        window_size=4,
        num_pos_feats=16,
    )
    prompt = SamPromptEncoderConfig(
        hidden_size=32, image_size=image_size, patch_size=16, mask_input_channels=4
    )
    decoder = SamMaskDecoderConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        mlp_dim=64,
        iou_head_hidden_dim=32,
    )
    return SamConfig(
        vision_config=vision.to_dict(),
        prompt_encoder_config=prompt.to_dict(),
        mask_decoder_config=decoder.to_dict(),
    )


def sam_vit_base_config():
    """The shapes of facebook/sam-vit-base (transformers' default SamConfig), for benchmarks."""
    return SamConfig()


def image_size_of(config):
    """Side of the square, padded model input (1024 for the released SAM models)."""
    return config.vision_config.image_size


def mask_grid_of(config):
    """Side of the low-resolution mask logits grid: four times the image embedding's side."""
    return 4 * config.prompt_encoder_config.image_embedding_size


def processor_for_config(config):
    """The SamProcessor whose resizing and padding match `config` (image size, mask grid).

    Args:
        config: a transformers `SamConfig`.

    Returns:
        A `SamProcessor`: images resized so the longest side is the model's input size and padded
        to a square; segmentation maps resized and padded the same way onto the logits grid.
    """
    return processor_for_sizes(image_size_of(config), mask_grid_of(config))


def processor_for_sizes(size, grid):
    """The SamProcessor for a model with a `size`-pixel square input and a `grid`-pixel logits grid."""
    return SamProcessor(
        SamImageProcessor(
            size={"longest_edge": size},
            pad_size={"height": size, "width": size},
            mask_size={"longest_edge": grid},
            mask_pad_size={"height": grid, "width": grid},
        )
    )
