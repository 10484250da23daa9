"""Synthetic breast-ultrasound phantoms written in BUSI's layout, with BUSI's file-format quirks.

Speckled background with layered tissue, dark hypoechoic lesions with irregular outlines, posterior
acoustic shadowing under some, a few images with two lesions (two mask files) and a few with none
(the normal class, all-zero masks). Masks come as 1-bit, grey 0/1, RGB 0/255 and RGBA files; names
have spaces and parentheses; every image has its own size. Deterministic by seed.
"""

import os

import numpy as np
from PIL import Image

MASK_FORMATS = ("1", "L01", "RGB", "RGBA")


def _lesion_mask(shape, rng, centre, radius):
    """An irregular blob: a circle whose radius wobbles with a few random harmonics."""
    height, width = shape
    yy, xx = np.mgrid[:height, :width]
    angle = np.arctan2(yy - centre[1], xx - centre[0])
    wobble = np.ones_like(angle)
    for harmonic in range(2, 6):
        wobble += rng.uniform(0.02, 0.12) * np.sin(harmonic * angle + rng.uniform(0, 2 * np.pi))
    aspect = rng.uniform(0.6, 1.0)
    distance = np.hypot((xx - centre[0]) * aspect, yy - centre[1])
    return distance < radius * wobble


def _background(shape, rng):
    height, width = shape
    depth = np.linspace(0, 1, height)[:, None]
    tissue = 0.55 + 0.15 * np.sin(depth * rng.uniform(6, 14) + rng.uniform(0, 6)) - 0.25 * depth
    return np.broadcast_to(tissue, shape).copy()


def phantom(shape, rng, num_lesions):
    """One grey ultrasound-like image (uint8, H x W x 3) and a list of its lesion masks."""
    height, width = shape
    echo = _background(shape, rng)
    masks = []
    for _ in range(num_lesions):
        for _attempt in range(20):
            radius = rng.uniform(0.08, 0.18) * min(shape)
            centre = (rng.uniform(radius + 2, width - radius - 2),
                      rng.uniform(radius + 2, height * 0.7))
            mask = _lesion_mask(shape, rng, centre, radius)
            if not any((mask & other).any() for other in masks):
                break
        echo[mask] = rng.uniform(0.08, 0.2)
        if rng.random() < 0.5:  # posterior acoustic shadowing below the lesion
            columns = np.flatnonzero(mask.any(axis=0))
            bottom = np.flatnonzero(mask.any(axis=1))[-1]
            echo[bottom:, columns[0]:columns[-1] + 1] *= 0.55
        masks.append(mask)
    speckle = rng.rayleigh(scale=0.8, size=shape)
    image = np.clip(echo * speckle * 255 / 1.0, 0, 255).astype(np.uint8)
    return np.repeat(image[..., None], 3, axis=-1), masks


def _save_mask(mask, path, mask_format):
    if mask_format == "1":
        Image.fromarray(mask).convert("1").save(path)
    elif mask_format == "L01":
        Image.fromarray(mask.astype(np.uint8)).save(path)
    else:
        grey = mask.astype(np.uint8) * 255
        channels = [grey] * 3 + ([np.full_like(grey, 255)] if mask_format == "RGBA" else [])
        Image.fromarray(np.stack(channels, axis=-1), mode=mask_format).save(path)


def write_busi_phantoms(root, counts=None, seed=0, size_range=(190, 420), two_lesion_every=6,
                        duplicates=1):
    """Writes a BUSI-layout folder of phantoms.

    Args:
        root: folder to create (`benign/`, `malignant/`, `normal/` under it).
        counts: images per class, default {"benign": 24, "malignant": 12, "normal": 4}.
        seed: the same seed writes the same files.
        size_range: range of image sides in pixels; each image draws its own width and height.
        two_lesion_every: every n-th lesion image gets a second lesion (a `_mask_1` file).
        duplicates: how many benign images are also saved under a second name (same pixels),
            as in the real BUSI set.

    Returns:
        The root path.
    """
    counts = counts or {"benign": 24, "malignant": 12, "normal": 4}
    rng = np.random.default_rng(seed)
    made = 0
    for label, count in counts.items():
        folder = os.path.join(root, label)
        os.makedirs(folder, exist_ok=True)
        for number in range(1, count + 1):
            shape = (int(rng.integers(*size_range)), int(rng.integers(*size_range)))
            if label == "normal":
                num_lesions = 0
            else:
                made += 1
                num_lesions = 2 if two_lesion_every and made % two_lesion_every == 0 else 1
            image, masks = phantom(shape, rng, num_lesions)
            stem = f"{label} ({number})"
            Image.fromarray(image).save(os.path.join(folder, f"{stem}.png"))
            mask_format = MASK_FORMATS[(made + number) % len(MASK_FORMATS)]
            for index, mask in enumerate(masks or [np.zeros(shape, bool)]):
                suffix = "_mask" if index == 0 else f"_mask_{index}"
                _save_mask(mask, os.path.join(folder, f"{stem}{suffix}.png"), mask_format)
    for copy in range(duplicates):
        source = os.path.join(root, "benign", f"benign ({copy + 1})")
        target = os.path.join(root, "benign", f"benign ({counts.get('benign', 0) + copy + 1})")
        for suffix in ("", "_mask"):
            with open(f"{source}{suffix}.png", "rb") as src, open(f"{target}{suffix}.png", "wb") as dst:
                dst.write(src.read())
    return root
