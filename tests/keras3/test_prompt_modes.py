"""The Keras 3 family trains without a prompt (`PromptOptions(kind="none")`) and with corrective
clicks (`PromptOptions(kind="clicks")`, the clicks drawn by keras_sam.common.clicks, the
arithmetic the tf-keras family shares), on the shared tf.data pipeline, in fit()."""

import keras
import numpy as np
import pytest

from keras_sam.configs import processor_for_config, tiny_sam_config
from keras_sam.data import (PromptOptions, build_dataset, cache_embeddings, find_records, image_samples,
                            normal_samples, read_lesions, write_busi_phantoms)
from keras_sam.embeddings import EmbeddingCache
from keras_sam.keras3 import DiceLoss, SamSegmenter

PROCESSOR = processor_for_config(tiny_sam_config())


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    root = write_busi_phantoms(str(tmp_path_factory.mktemp("busi") / "busi"),
                               counts={"benign": 3, "malignant": 1, "normal": 1}, seed=0)
    return read_lesions(find_records(root), progress=False)


@pytest.fixture(scope="module")
def model_and_cache(phantoms):
    """A tiny model and every phantom's image embedding (the decoder trains from them, as fast
    fine-tuning does)."""
    keras.utils.set_random_seed(0)
    model = SamSegmenter.from_sam_config(tiny_sam_config())
    cache = EmbeddingCache(model)
    cache_embeddings(phantoms.lesions + normal_samples(phantoms), PROCESSOR, cache, progress=False)
    return model, cache


def decoder_weights(model):
    return [np.array(keras.ops.convert_to_numpy(weight)) for weight in model.mask_decoder.trainable_weights]


def fitted(model, dataset):
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=DiceLoss())
    before = decoder_weights(model)
    history = model.fit(dataset, epochs=1, verbose=0)
    moved = any(not np.array_equal(a, b) for a, b in zip(before, decoder_weights(model)))
    return model, history.history, moved


def test_no_prompt_trains_on_whole_images_and_images_without_a_lesion(phantoms, model_and_cache):
    model, cache = model_and_cache
    samples = image_samples(phantoms.lesions)[:2] + normal_samples(phantoms)
    dataset = build_dataset(samples, PROCESSOR, batch_size=3, prompts=PromptOptions("none"), epochs=(0, 1),
                            embeddings=cache)
    assert set(dataset.element_spec[0]) == {"image_embeddings"}
    model, history, moved = fitted(model, dataset)
    assert moved and np.isfinite(history["loss"][0])


def test_corrective_clicks_train_in_fit(phantoms, model_and_cache):
    model, cache = model_and_cache
    prompts = PromptOptions("clicks", click_rounds=2)
    dataset = build_dataset(phantoms.lesions[:4], PROCESSOR, batch_size=2, prompts=prompts, epochs=(0, 1),
                            embeddings=cache)
    model, history, moved = fitted(model, dataset)
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
    with pytest.raises(ValueError, match="drawn from the targets"):
        model(x)
