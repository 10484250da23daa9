"""Each misuse of SamSegmenter gets an error that says what was wrong and what to do."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
import transformers

from conftest import disks, tiny_segmenter
from keras_sam import SamSegmenter
from keras_sam.common.hub import ModelLoadError, load_tf_sam, require_tf_sam


@pytest.fixture(scope="module")
def model():
    model = tiny_segmenter()
    model.compile()
    return model


@pytest.fixture(scope="module")
def data():
    return disks(2)


BOX = np.array([[10, 10, 90, 90], [20, 20, 60, 60]], np.float32)
PIXELS = np.zeros((2, 3, 256, 256), np.float32)


@pytest.mark.parametrize(
    "inputs, error, message",
    [
        ({"pixel_values": PIXELS, "input_box": BOX}, ValueError, "unknown input key.*'input_box'"),
        ({"input_boxes": BOX}, ValueError, "exactly one of pixel_values and image_embeddings"),
        ({"pixel_values": PIXELS, "image_embeddings": np.zeros((2, 32, 16, 16), np.float32),
          "input_boxes": BOX}, ValueError, "got pixel_values, image_embeddings"),
        ({"pixel_values": PIXELS, "input_boxes": BOX[:, :3]}, ValueError,
         r"input_boxes must have shape \(B, 4\) or \(B, 1, 4\); got \(2, 3\)"),
        ({"pixel_values": PIXELS, "input_boxes": BOX[None, None]}, ValueError, "input_boxes must have shape"),
        ({"pixel_values": PIXELS, "input_boxes": np.stack([BOX, BOX], axis=1)}, ValueError,
         "2 prompt sets per row"),
        ({"pixel_values": PIXELS, "input_points": np.zeros((2, 3), np.float32)}, ValueError,
         "input_points must have shape"),
        ({"pixel_values": PIXELS, "input_points": np.zeros((2, 1, 3), np.float32)}, ValueError,
         r"input_points must have shape \(B, N, 2\)"),
        ({"pixel_values": PIXELS, "input_boxes": BOX, "input_labels": np.ones((2, 1))}, ValueError,
         "input_labels given without input_points"),
        ({"pixel_values": PIXELS, "input_masks": np.zeros((2, 32, 32), np.float32)}, ValueError,
         r"64x64 logits grid; got \(2, 32, 32\)"),
        ({"pixel_values": PIXELS[:, :, :128]}, ValueError, r"pixel_values must have shape \(B, 3, 256, 256\)"),
        ([PIXELS, BOX], TypeError, "must be a dict"),
    ],
)
def test_bad_inputs(model, inputs, error, message):
    with pytest.raises(error, match=message):
        model(inputs)


def test_targets_off_the_logits_grid_name_the_expected_shape(model, data):
    x, y = data
    with pytest.raises(ValueError, match=r"logits grid .*segmentation_maps.*; got \(\w+, 256, 256\)"):
        model.fit(x, np.zeros((2, 256, 256), np.float32), verbose=0)
    with pytest.raises(ValueError, match=r"\(B, 64, 64\) or \(B, 1, 64, 64\) on .*; got \(\w+, 2, 64, 64\)"):
        model.evaluate(x, np.zeros((2, 2, 64, 64), np.float32), verbose=0)


def test_non_binary_targets_are_refused(model, data):
    x, y = data
    with pytest.raises(tf.errors.InvalidArgumentError, match="binary masks with values 0 and 1"):
        model.evaluate(x, y * 255, verbose=0)


def test_keras3_objects_are_refused_with_a_pointer_to_tf_keras(data):
    keras3 = pytest.importorskip("keras")
    if keras3.__version__.startswith("2."):
        pytest.skip("keras is Keras 2 here")
    model = tiny_segmenter()
    with pytest.raises(TypeError, match="Keras 3 object.*import tf_keras as keras"):
        model.compile(optimizer=keras3.optimizers.Adam())
    with pytest.raises(TypeError, match="metrics got a Keras 3 object"):
        model.compile(metrics=[keras3.metrics.MeanIoU(2)])
    model.compile()
    x, y = data
    with pytest.raises(TypeError, match="callbacks got a Keras 3 object"):
        model.fit(x, y, callbacks=[keras3.callbacks.EarlyStopping()], verbose=0)


def test_transformers_5_is_refused_with_the_install_command(monkeypatch):
    monkeypatch.setattr(transformers, "__version__", "5.0.0")
    with pytest.raises(ImportError, match=r"transformers 5.0.0 is installed.*transformers>=4.40,<5"):
        require_tf_sam()


def test_a_non_sam_model_is_refused():
    with pytest.raises(TypeError, match="must be a transformers TFSamModel; got Sequential"):
        SamSegmenter(tf_keras.Sequential())


def test_loading_errors_name_the_model_and_what_to_do(tmp_path, monkeypatch):
    with pytest.raises(ModelLoadError, match="no-such-dir does not exist"):
        load_tf_sam(str(tmp_path / "no-such-dir"))
    with pytest.raises(ModelLoadError, match="has no config.json"):
        load_tf_sam(tmp_path)

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files")

    monkeypatch.setattr(require_tf_sam(), "from_pretrained", offline)
    with pytest.raises(ModelLoadError, match="could not download 'example-org/sam-vit-base'.*--demo"):
        SamSegmenter.from_pretrained("example-org/sam-vit-base")
