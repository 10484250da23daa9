"""The check every export passes before it counts: its masks against keras-sam's own.

A few generated images of different sizes and channel counts, each with boxes (and one with
points), go through the artefact in its runtime (`segment`; `embed` then `decode`; `embed` then
`decode_points`) and through `keras_sam.common.inference.segment_image`. The figures are the Dice between
the two masks of each prompt (the lowest counts) and the largest difference in the scores.
"""

import numpy as np

# Dice an artefact's masks must reach against keras-sam's, for each prompt.
MIN_DICE = {"none": 0.99, "float16": 0.97, "int8": 0.97}


def sample_images(seed=0):
    """Check inputs: a list of (image, boxes, points, labels), images in sizes that exercise the
    resizing (landscape, portrait, tiny, odd sides) and as grey, RGB and RGBA.

    Each image holds two bright ellipses on a noisy background; the boxes are around them, the
    points inside the first (foreground) and off both (background).
    """
    rng = np.random.default_rng(seed)
    samples = []
    for height, width, channels in [(300, 420, 3), (257, 190, 1), (96, 160, 4)]:
        yy, xx = np.mgrid[:height, :width]
        picture = rng.normal(60, 15, (height, width))
        boxes = []
        for cx, cy, rx, ry in [(0.35, 0.4, 0.2, 0.25), (0.75, 0.7, 0.12, 0.15)]:
            cx, cy, rx, ry = cx * width, cy * height, rx * width, ry * height
            picture += 120 * ((((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2) < 1)
            boxes.append([cx - rx - 3, cy - ry - 3, cx + rx + 3, cy + ry + 3])
        grey = np.clip(picture, 0, 255).astype(np.uint8)
        image = {1: grey[..., None], 3: np.stack([grey] * 3, -1),
                 4: np.concatenate([np.stack([grey] * 3, -1), np.full_like(grey, 255)[..., None]], -1)}[channels]
        points = [[0.35 * width, 0.4 * height], [0.05 * width, 0.05 * height]]
        samples.append((image, np.array(boxes, np.float32), np.array([points], np.float32),
                        np.array([[1, 0]], np.int32)))
    return samples


def dice(a, b):
    """Dice of two boolean masks (1.0 when both are empty)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else float(2 * np.logical_and(a, b).sum() / total)


def reference_masks(model, samples):
    """keras-sam's masks and scores for each sample: for its boxes and for its points.

    Args:
        model: a tf-keras SamSegmenter.
        samples: as `sample_images` returns.

    Returns:
        A list of {"boxes": (masks (N, H, W) bool, scores (N,)), "points": (masks, scores)}.
    """
    from keras_sam.common.inference import segment_image

    references = []
    for image, boxes, points, labels in samples:
        rgb = _as_rgb(image)
        by_box = segment_image(model, rgb, boxes=boxes)
        by_points = segment_image(model, rgb, points=points[0], labels=labels[0])
        references.append({"boxes": (np.stack(by_box.masks), by_box.scores),
                           "points": (np.stack(by_points.masks), by_points.scores)})
    return references


def _as_rgb(image):
    """What the exported graph does to 1, 2 and 4 channels (keras_sam.export.image_ops.as_rgb)."""
    return image[..., :3] if image.shape[-1] >= 3 else np.repeat(image[..., :1], 3, axis=-1)


def agreement(artefact, samples, references):
    """How closely an artefact's masks follow keras-sam's.

    Args:
        artefact: an opened artefact (`keras_sam.export.runtimes.open_artefact`).
        samples, references: from `sample_images` and `reference_masks`.

    Returns:
        {"dice_min", "dice_mean", "score_max_difference", "prompts"}, over every prompt of every
        sample through `segment`, `embed`+`decode` and `embed`+`decode_points`.
    """
    dices, score_differences = [], []

    def compare(outputs, expected):
        masks, scores = expected
        got = np.asarray(outputs["masks"])
        if got.shape != masks.shape or got.dtype != np.uint8:
            raise ValueError(f"masks of shape {got.shape} and dtype {got.dtype}; expected {masks.shape} uint8")
        dices.extend(dice(g, m) for g, m in zip(got, masks))
        score_differences.append(float(np.max(np.abs(np.asarray(outputs["scores"]) - scores))))

    for (image, boxes, points, labels), expected in zip(samples, references):
        size = image.shape[:2]
        compare(artefact.segment(image, boxes), expected["boxes"])
        embeddings = artefact.embed(image)["image_embeddings"]
        compare(artefact.decode(embeddings, boxes, size), expected["boxes"])
        compare(artefact.decode_points(embeddings, points, labels, size), expected["points"])
    return {"dice_min": round(min(dices), 5), "dice_mean": round(float(np.mean(dices)), 5),
            "score_max_difference": float(f"{max(score_differences):.3g}"), "prompts": len(dices)}
