"""Add mask overlays to an existing Keras training script: one callback in callbacks=[...].

Your script already has a model and datasets of (inputs, masks); MaskOverlayCallback takes a few
validation samples and draws, every epoch, the predicted mask, the true outline and the prompt into
the TensorBoard run. Offline on sam-small-shapes (the small SAM that comes with keras-sam) and
generated disks.

    python examples/add_overlay_callback.py --output example-overlays
    tensorboard --logdir example-overlays/logs
"""

import argparse
import os

import numpy as np
import tensorflow as tf
import tf_keras as keras

from keras_sam import SamSegmenter
from keras_sam.callbacks import MaskOverlayCallback


def disks(count, seed):
    """Your data: bright disks, their boxes and masks (inputs for a 256x256 model, 64x64 masks)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:64, :64]
    x, y = {"pixel_values": [], "input_boxes": []}, []
    for _ in range(count):
        cx, cy, r = rng.uniform(16, 48), rng.uniform(16, 48), rng.uniform(6, 14)
        mask = ((xx - cx) ** 2 + (yy - cy) ** 2 < r * r).astype(np.float32)
        x["pixel_values"].append(np.repeat(np.kron(mask * 2 - 1, np.ones((4, 4)))[None], 3, 0))
        x["input_boxes"].append(np.array([cx - r, cy - r, cx + r, cy + r]) * 4)
        y.append(mask)
    x = {key: np.asarray(value, np.float32) for key, value in x.items()}
    return tf.data.Dataset.from_tensor_slices((x, np.asarray(y))).batch(8)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="example-overlays")
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    train, val = disks(64, seed=0), disks(16, seed=1)
    model = SamSegmenter.from_pretrained("sam-small-shapes")
    model.compile(optimizer=keras.optimizers.Adam(3e-4))
    logs = os.path.join(args.output, "logs")
    model.fit(train, validation_data=val, epochs=args.epochs, callbacks=[
        keras.callbacks.TensorBoard(logs),
        MaskOverlayCallback(val, logs, max_samples=4, png_dir=os.path.join(args.output, "png")),  # the one line
    ])
    print(f"tensorboard --logdir {logs}   (IMAGES tab: overlays/all)")


if __name__ == "__main__":
    main()
