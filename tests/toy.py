"""A learnable toy problem with no Keras in it (both model families' tests use it): bright disks
on a dark background, their box prompts and their masks on the logits grid."""

import numpy as np


def disks(n, seed=0, image_size=256, grid=64):
    """n images of a bright disk on a dark background, the disk's box and its mask on the grid."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:grid, :grid]
    scale = image_size // grid
    pixels, boxes, masks = [], [], []
    for _ in range(n):
        cx, cy = rng.uniform(grid * 0.25, grid * 0.75, size=2)
        radius = rng.uniform(grid * 0.1, grid * 0.22)
        mask = ((xx - cx) ** 2 + (yy - cy) ** 2 < radius**2).astype(np.float32)
        image = np.kron(mask * 2.0 - 1.0, np.ones((scale, scale)))
        pixels.append(np.repeat(image[None], 3, axis=0))
        boxes.append(np.array([cx - radius, cy - radius, cx + radius, cy + radius]) * scale)
        masks.append(mask)
    x = {
        "pixel_values": np.stack(pixels).astype(np.float32),
        "input_boxes": np.stack(boxes).astype(np.float32),
    }
    return x, np.stack(masks)
