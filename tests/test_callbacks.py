import glob
import io
import os
import socket
import subprocess
import sys
import time
import urllib.request

import json
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras
from PIL import Image

from conftest import tiny_segmenter
from keras_sam import processor_for_config, tiny_sam_config
from keras_sam.tfkeras.callbacks import LearningRateLogger, MaskOverlayCallback
from keras_sam.data import PromptOptions, build_dataset, find_records, read_lesions

EPOCHS = 3


def read_events(folder):
    """{tag: [(step, value proto)]} from every event file in `folder`."""
    found = {}
    for path in sorted(glob.glob(os.path.join(folder, "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                found.setdefault(value.tag, []).append((event.step, value))
    return found


def decode_image(value):
    encoded = tf.make_ndarray(value.tensor)[2]
    return np.asarray(Image.open(io.BytesIO(encoded)))


@pytest.fixture(scope="module")
def fitted_run(phantom_dir, tmp_path_factory):
    """A tiny model fitted for 3 epochs with TensorBoard and the overlay callback."""
    config = tiny_sam_config()
    processor = processor_for_config(config)
    lesions = read_lesions(find_records(phantom_dir)).lesions
    train = build_dataset(lesions[:8], processor, batch_size=4)
    val = build_dataset(lesions[8:12], processor, batch_size=4, training=False,
                        prompts=PromptOptions("box+points"))
    log_dir = str(tmp_path_factory.mktemp("run") / "logs")
    png_dir = os.path.join(os.path.dirname(log_dir), "overlays")
    overlay = MaskOverlayCallback(val, log_dir, max_samples=3, display_size=128, png_dir=png_dir)
    model = tiny_segmenter()
    model.compile(optimizer=keras.optimizers.legacy.Adam(1e-3))
    model.fit(train.map(lambda x, y: ({**x, "input_points": x["input_boxes"][:, None, :2],
                                        "input_labels": tf.ones_like(x["input_boxes"][:, :1], tf.int32)}, y)),
              validation_data=val, epochs=EPOCHS, verbose=0,
              callbacks=[LearningRateLogger(), keras.callbacks.TensorBoard(log_dir), overlay])
    return log_dir, png_dir, overlay, model


def test_overlays_are_written_once_per_epoch_beside_the_validation_scalars(fitted_run):
    log_dir, _, overlay, _ = fitted_run
    events = read_events(os.path.join(log_dir, "validation"))
    tags = {"overlays/sample_0", "overlays/sample_1", "overlays/sample_2", "overlays/all"}
    assert tags <= set(events)
    assert {"epoch_dice", "epoch_iou", "epoch_loss"} <= set(events)
    for tag in tags:
        assert [step for step, _ in events[tag]] == list(range(EPOCHS))
    assert decode_image(events["overlays/sample_0"][0][1]).shape == (128, 128, 3)
    assert decode_image(events["overlays/all"][0][1]).shape == (128, 3 * 128, 3)


def test_train_run_has_metrics_and_the_learning_rate(fitted_run):
    log_dir, _, _, _ = fitted_run
    events = read_events(os.path.join(log_dir, "train"))
    assert {"epoch_dice", "epoch_iou", "epoch_learning_rate"} <= set(events)
    rate = tf.make_ndarray(events["epoch_learning_rate"][0][1].tensor)
    assert float(rate) == pytest.approx(1e-3)


class LeftHalfModel:
    """Stands in for a model: predicts the left half of the 64x64 grid for every input."""

    freeze = ()

    def __call__(self, inputs):
        rows = len(inputs["input_boxes"])
        logits = np.full((rows, 1, 64, 64), -5.0, np.float32)
        logits[..., :32] = 5.0
        return {"mask_logits": logits, "iou_scores": np.full((rows, 1), 0.75, np.float32)}


def test_overlays_tint_the_predicted_mask_and_draw_the_box_where_they_are():
    image = np.full((256, 256, 3), 100, np.uint8)
    truth = np.zeros((64, 64), np.float32)
    truth[:, :16] = 1
    x = {"image_embeddings": np.zeros((32, 16, 16), np.float32),
         "input_boxes": np.array([160, 160, 240, 240], np.float32)}  # model-input pixels
    overlay = MaskOverlayCallback([(x, truth)], images=[image], display_size=128)
    drawn = overlay.render(LeftHalfModel())[0]
    changed = np.any(drawn != 100, axis=-1)
    assert changed[20:, 40:60].all()  # inside the predicted left half (below the caption)
    assert not changed[20:70, 70:].any()  # right of the mask, above the box
    assert tuple(drawn[80, 100]) == (0, 255, 0)  # the box's top edge, at half the model's scale
    assert tuple(drawn[100, 31]) == (255, 215, 0) or tuple(drawn[100, 32]) == (255, 215, 0)  # truth


def test_png_overlays_are_saved_per_epoch(fitted_run):
    _, png_dir, _, _ = fitted_run
    assert sorted(os.listdir(png_dir)) == [f"epoch_{k:03d}.png" for k in range(1, EPOCHS + 1)]


def test_embedding_samples_need_images():
    x = {"image_embeddings": np.zeros((32, 16, 16), np.float32), "input_boxes": np.zeros(4, np.float32)}
    with pytest.raises(ValueError, match="pass images="):
        MaskOverlayCallback([(x, np.zeros((64, 64)))])
    with pytest.raises(ValueError, match="every_n_epochs must be at least 1; got 0"):
        MaskOverlayCallback([(x, np.zeros((64, 64)))], images=[np.zeros((8, 8, 3))], every_n_epochs=0)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_a_running_tensorboard_serves_the_overlays(fitted_run):
    log_dir, _, _, _ = fitted_run
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", log_dir, "--host", "127.0.0.1",
         "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        tags = None
        for _ in range(60):
            try:
                tags = json.load(urllib.request.urlopen(f"{base}/data/plugin/images/tags", timeout=5))
                if "overlays/all" in tags.get("validation", {}):
                    break
            except OSError:
                pass
            time.sleep(1)
        assert tags and "overlays/all" in tags["validation"], tags
        entries = json.load(urllib.request.urlopen(
            f"{base}/data/plugin/images/images?run=validation&tag=overlays/all", timeout=10))
        assert [entry["step"] for entry in entries] == list(range(EPOCHS))
        png = urllib.request.urlopen(
            f"{base}/data/plugin/images/individualImage?{entries[-1]['query']}", timeout=10).read()
        assert Image.open(io.BytesIO(png)).size == (3 * 128, 128)
    finally:
        server.terminate()
        server.wait(timeout=30)
