"""Loading a saved TFSamModel: each weight created from its checkpoint entry (no random draw, no
second copy), and a checkpoint that does not match the model left to transformers, which
initialises what it lacks."""

import h5py
import numpy as np
import pytest
import tensorflow as tf
from conftest import tiny_segmenter

from keras_sam.common.hub import ModelLoadError, load_tf_sam, require_tf_sam


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    model = tiny_segmenter(seed=3)
    model.sam.save_pretrained(folder)
    return folder, _weights(model.sam)


def _weights(sam):
    """By name below the model's own (a second model in a process is "tf_sam_model_1")."""
    return {weight.name.split("/", 1)[1]: weight.numpy() for weight in sam.weights}


def _count_transformers_loads(monkeypatch):
    tf_sam_model = require_tf_sam()
    loads = []
    original = tf_sam_model.from_pretrained.__func__
    monkeypatch.setattr(tf_sam_model, "from_pretrained",
                        classmethod(lambda cls, *args, **kwargs: loads.append(args) or original(cls, *args, **kwargs)))
    return loads


def test_each_weight_is_created_from_its_checkpoint_entry(saved, monkeypatch):
    folder, expected = saved
    loads = _count_transformers_loads(monkeypatch)
    initial_values = {}

    def record(next_creator, **kwargs):  # outside keras-sam's creator: sees what it hands on
        initial = kwargs["initial_value"]
        value = tf.convert_to_tensor(initial() if callable(initial) else initial, kwargs.get("dtype"))
        if value.dtype.is_floating:
            initial_values[f"{tf.get_current_name_scope()}/{kwargs['name']}:0".split("/", 1)[1]] = value.numpy()
            kwargs["initial_value"] = value
        return next_creator(**kwargs)

    with tf.variable_creator_scope(record):
        sam = load_tf_sam(folder)
    assert loads == []  # transformers' loader (initializers, then a copy of the file) not used
    loaded = _weights(sam)
    assert loaded.keys() == expected.keys() == initial_values.keys()
    for name, value in expected.items():
        np.testing.assert_array_equal(initial_values[name], value, err_msg=name)
        np.testing.assert_array_equal(loaded[name], value, err_msg=name)


def test_a_weight_missing_from_the_checkpoint_is_initialised_as_transformers_does(saved, tmp_path, monkeypatch):
    folder, expected = saved
    for name in ("config.json", "tf_model.h5"):
        (tmp_path / name).write_bytes((folder / name).read_bytes())
    bias = "mask_decoder/iou_prediction_head/proj_out/bias:0"
    with h5py.File(tmp_path / "tf_model.h5", "r+") as checkpoint:
        group = checkpoint["mask_decoder"]  # weights under "<model name>/mask_decoder/..."
        names = list(group.attrs["weight_names"])
        dropped = next(name for name in names if name.split("/", 1)[1] == bias)
        del group[dropped]
        group.attrs["weight_names"] = [name for name in names if name != dropped]
    loads = _count_transformers_loads(monkeypatch)

    loaded = _weights(load_tf_sam(tmp_path))
    assert len(loads) == 1  # the checkpoint does not match the model: transformers loads it
    np.testing.assert_array_equal(loaded[bias], np.zeros_like(expected[bias]))  # a Dense bias starts at 0
    for name, value in expected.items():
        if name != bias:
            np.testing.assert_array_equal(loaded[name], value, err_msg=name)


def test_an_unreadable_checkpoint_is_an_error_naming_its_folder(saved, tmp_path):
    folder, _ = saved
    (tmp_path / "config.json").write_bytes((folder / "config.json").read_bytes())
    (tmp_path / "tf_model.h5").write_text("not an HDF5 file")
    with pytest.raises(ModelLoadError, match=f"could not load the SAM model in {tmp_path}"):
        load_tf_sam(tmp_path)
