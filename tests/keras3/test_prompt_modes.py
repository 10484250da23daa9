"""The Keras 3 family trains without a prompt (`PromptOptions(kind="none")`) and with corrective
clicks (`PromptOptions(kind="clicks")`, the clicks drawn by keras_sam.common.clicks, the
arithmetic the tf-keras family shares), on the shared tf.data pipeline, in fit()."""

import keras
import numpy as np
import pytest

from keras_sam.configs import processor_for_config, tiny_sam_config
from keras_sam.data import (PromptOptions, build_dataset, find_records, image_samples, normal_samples,
                            read_lesions, write_busi_phantoms)
from keras_sam.keras3 import DiceLoss, SamSegmenter


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    root = write_busi_phantoms(str(tmp_path_factory.mktemp("busi") / "busi"),
                               counts={"benign": 3, "malignant": 1, "normal": 1}, seed=0)
    return read_lesions(find_records(root), progress=False)


def decoder_weights(model):
    return [np.array(keras.ops.convert_to_numpy(weight)) for weight in model.mask_decoder.trainable_weights]


def fitted(dataset):
    keras.utils.set_random_seed(0)
    model = SamSegmenter.from_sam_config(tiny_sam_config())
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=DiceLoss())
    before = decoder_weights(model)
    history = model.fit(dataset, epochs=1, verbose=0)
    moved = any(not np.array_equal(a, b) for a, b in zip(before, decoder_weights(model)))
    return model, history.history, moved


def test_no_prompt_trains_on_whole_images_and_images_without_a_lesion(phantoms):
    samples = image_samples(phantoms.lesions)[:2] + normal_samples(phantoms)
    dataset = build_dataset(samples, processor_for_config(tiny_sam_config()), batch_size=3,
                            prompts=PromptOptions("none"), epochs=(0, 1))
    assert set(dataset.element_spec[0]) == {"pixel_values"}
    model, history, moved = fitted(dataset)
    assert moved and np.isfinite(history["loss"][0])
    image = np.zeros((60, 80, 3), np.uint8)
    with pytest.warns(UserWarning, match="no prompt"):
        model.segment(image)


def test_corrective_clicks_train_in_fit_and_score_in_evaluate(phantoms):
    processor = processor_for_config(tiny_sam_config())
    prompts = PromptOptions("clicks", click_rounds=2)
    dataset = build_dataset(phantoms.lesions[:4], processor, batch_size=2, prompts=prompts, epochs=(0, 1))
    model, history, moved = fitted(dataset)
    assert moved and np.isfinite(history["loss"][0])
    inputs, targets = next(iter(dataset))
    x = {key: np.asarray(value) for key, value in inputs.items()}
    first, last = model.click_prompts({**x, "click_targets": np.asarray(targets)})
    assert first["input_points"].shape == (2, 1, 2) and last["input_points"].shape == (2, 3, 2)
    assert tuple(last["input_masks"].shape) == (2, 64, 64)
    labels = keras.ops.convert_to_numpy(last["input_labels"])
    rounds = x["click_rounds"].sum(axis=1)
    assert (labels[:, 0] == 1).all()  # the first click is positive, inside the lesion
    for row, count in zip(labels, rounds):  # a click per round taken, "not a point" after
        assert set(row[1:1 + count]) <= {0, 1} and (row[1 + count:] == -1).all()
    validation = build_dataset(phantoms.lesions[:2], processor, batch_size=2, prompts=prompts, training=False)
    assert np.isfinite(model.evaluate(validation, verbose=0, return_dict=True)["dice"])
    with pytest.raises(ValueError, match="drawn from the targets"):
        model(x)
