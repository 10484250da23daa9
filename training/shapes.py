"""Procedural "segment anything" scenes for pretraining a small SAM from scratch.

Each scene is an image of its own size and aspect ratio holding one to several objects: ellipses,
rotated rectangles, star-shaped polygons and smooth blobs, some touching or crossing the border,
later ones hiding parts of earlier ones. Background and objects each get a texture (flat,
gradient, stripes, smooth noise, speckle) and a contrast from faint to strong; most scenes are
grey, some coloured. Every object comes with the mask of its visible part.

Nothing here is shared with the demo's breast-ultrasound phantoms (keras_sam.data.phantoms):
the pretrained model meets those only when the demo fine-tunes it.
"""

import numpy as np
from PIL import Image

SHAPES = ("ellipse", "rectangle", "polygon", "blob")
TEXTURES = ("flat", "gradient", "stripes", "smooth", "speckle")


def _smooth_noise(rng, height, width, cells):
    """Noise in [0, 1] varying over about `cells` cells along the longer side."""
    small = rng.random((max(2, cells * height // max(height, width)), max(2, cells * width // max(height, width))))
    picture = Image.fromarray((small * 255).astype(np.uint8)).resize((width, height), Image.BICUBIC)
    return np.asarray(picture, np.float32) / 255.0


def texture(rng, height, width):
    """A (H, W) float pattern around 0 with a random kind and amplitude."""
    kind = TEXTURES[rng.integers(len(TEXTURES))]
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    if kind == "flat":
        return np.zeros((height, width), np.float32)
    if kind == "gradient":
        angle = rng.uniform(0, 2 * np.pi)
        ramp = (np.cos(angle) * xx + np.sin(angle) * yy) / max(height, width)
        return rng.uniform(0.05, 0.3) * (ramp - ramp.mean())
    if kind == "stripes":
        angle, period = rng.uniform(0, np.pi), rng.uniform(4, 40)
        phase = (np.cos(angle) * xx + np.sin(angle) * yy) * 2 * np.pi / period
        return rng.uniform(0.03, 0.15) * np.sin(phase)
    if kind == "smooth":
        return rng.uniform(0.05, 0.3) * (_smooth_noise(rng, height, width, int(rng.integers(3, 12))) - 0.5)
    return rng.uniform(0.1, 0.4) * (rng.rayleigh(1.0, (height, width)).astype(np.float32) - 1.25)


def shape_mask(rng, height, width):
    """A random shape's (H, W) boolean mask; it may cross the image's border."""
    kind = SHAPES[rng.integers(len(SHAPES))]
    size = rng.uniform(0.06, 0.45) * min(height, width)
    # Centres anywhere in the image and a little beyond, so some shapes touch or cross the border.
    cy, cx = rng.uniform(-0.1, 1.1) * height, rng.uniform(-0.1, 1.1) * width
    yy, xx = np.mgrid[:height, :width].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    u = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
    v = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
    aspect = rng.uniform(0.35, 1.0)
    if kind == "ellipse":
        return (u / size) ** 2 + (v / (size * aspect)) ** 2 < 1
    if kind == "rectangle":
        return (np.abs(u) < size) & (np.abs(v) < size * aspect)
    theta = np.arctan2(v, u)
    radius = np.hypot(u, v)
    if kind == "polygon":  # star-shaped: the radius interpolated between random spokes
        spokes = int(rng.integers(3, 9))
        lengths = size * rng.uniform(0.5, 1.0, spokes)
        position = (theta % (2 * np.pi)) / (2 * np.pi) * spokes
        low = np.floor(position).astype(int) % spokes
        fraction = position - np.floor(position)
        return radius < lengths[low] * (1 - fraction) + lengths[(low + 1) % spokes] * fraction
    wobble = np.ones_like(theta)  # a blob: a circle whose radius wanders with a few harmonics
    for harmonic in range(1, 5):
        wobble += rng.uniform(0, 0.3 / harmonic) * np.sin(harmonic * theta + rng.uniform(0, 2 * np.pi))
    return radius < size * wobble


def scene(rng, height, width, max_objects=5, min_pixels=40):
    """One image and the visible masks of its objects.

    Args:
        rng: a numpy Generator.
        height, width: the image's size.
        max_objects: at most this many objects.
        min_pixels: objects hidden down to fewer visible pixels are dropped.

    Returns:
        (image, masks): (H, W, 3) uint8, and a list of (H, W) boolean masks, at least one.
    """
    while True:
        colour = rng.random() < 0.2
        level = rng.uniform(0.15, 0.85)
        tint = rng.uniform(0.6, 1.4, 3) if colour else np.ones(3)
        canvas = (level + texture(rng, height, width))[..., None] * tint
        masks = []
        for _ in range(int(rng.integers(1, max_objects + 1))):
            mask = shape_mask(rng, height, width)
            if not mask.any():
                continue
            contrast = rng.choice([-1, 1]) * rng.uniform(0.06, 0.6)
            fill = np.clip(level + contrast, 0.02, 0.98) + texture(rng, height, width)
            object_tint = rng.uniform(0.6, 1.4, 3) if colour else np.ones(3)
            canvas[mask] = (fill[..., None] * object_tint)[mask]
            masks = [earlier & ~mask for earlier in masks] + [mask]
        masks = [mask for mask in masks if mask.sum() >= min_pixels]
        if masks:
            break
    noise = rng.uniform(0.0, 0.08)
    canvas = canvas + noise * rng.standard_normal((height, width, 1)).astype(np.float32)
    if rng.random() < 0.3:  # a soft picture now and then
        picture = Image.fromarray((np.clip(canvas, 0, 1) * 255).astype(np.uint8))
        small = picture.resize((max(8, width // 2), max(8, height // 2)), Image.BILINEAR)
        canvas = np.asarray(small.resize((width, height), Image.BILINEAR), np.float32) / 255.0
    image = (np.clip(canvas, 0, 1) * 255).astype(np.uint8)
    return image, masks


def scene_size(rng, shortest=96, longest=400):
    """A random (height, width): every aspect ratio from tall to wide."""
    longer = int(rng.integers(shortest + 32, longest + 1))
    shorter = int(rng.integers(shortest, longer + 1))
    return (longer, shorter) if rng.random() < 0.5 else (shorter, longer)
