import numpy as np
import pytest
import tf_keras as keras

from conftest import tiny_segmenter
from keras_sam import processor_for_config, tiny_sam_config
from training import DataGenerator, build_dataset, find_records, read_lesions


@pytest.fixture(scope="module")
def setup(phantom_dir):
    config = tiny_sam_config()
    return read_lesions(find_records(phantom_dir)).lesions, processor_for_config(config), config


def test_generator_items_match_their_signature(setup):
    lesions, processor, config = setup
    generator = DataGenerator(lesions, processor)
    signature = generator.output_signature(config)
    item = generator[0]
    assert set(item) == set(signature)
    for key, spec in signature.items():
        assert tuple(item[key].shape) == tuple(spec.shape), key
    assert set(np.unique(item["labels"])) <= {0.0, 1.0} and item["labels"].sum() > 0
    # The box is the lesion's extent scaled to the model input: it surrounds the label on the grid.
    rows, cols = np.nonzero(item["labels"])
    grid_box = item["box"] * 64 / 256
    assert grid_box[0] - 1 <= cols.min() and cols.max() + 1 <= grid_box[2] + 1
    assert grid_box[1] - 1 <= rows.min() and rows.max() + 1 <= grid_box[3] + 1


def test_boxes_are_jittered_anew_every_epoch_but_fixed_for_evaluation(setup):
    lesions, processor, config = setup
    train = build_dataset(lesions[:4], processor, config, batch_size=4, shuffle=False, seed=1)
    first, second = [next(iter(train))[0]["input_boxes"].numpy() for _ in range(2)]
    assert not np.allclose(first, second)
    exact = np.stack([DataGenerator(lesions[:4], processor)[i]["box"] for i in range(4)])
    scale = np.stack([DataGenerator(lesions[:4], processor)[i]["scale"] for i in range(4)])
    assert np.all(np.abs(first - exact) <= 20 * np.tile(scale, 2) + 1e-4)
    evaluation = build_dataset(lesions[:4], processor, config, batch_size=4, shuffle=False,
                               fixed_prompts=True)
    a, b = [next(iter(evaluation))[0]["input_boxes"].numpy() for _ in range(2)]
    np.testing.assert_array_equal(a, b)
    same_seed = build_dataset(lesions[:4], processor, config, batch_size=4, shuffle=False, seed=1)
    np.testing.assert_array_equal(next(iter(same_seed))[0]["input_boxes"].numpy(), first)


def test_point_prompts_fall_inside_and_outside_the_lesion(setup):
    lesions, processor, config = setup
    dataset = build_dataset(lesions[:6], processor, config, batch_size=6, prompt="points",
                            num_positive=4, num_negative=2, shuffle=False)
    x, y = next(iter(dataset))
    assert set(x) == {"pixel_values", "input_points", "input_labels"}
    assert x["input_points"].shape == (6, 6, 2)
    grid_points = (x["input_points"].numpy() * 64 / 256).astype(int)
    labels = x["input_labels"].numpy()
    for sample in range(6):
        for (col, row), label in zip(grid_points[sample], labels[sample]):
            assert y.numpy()[sample, row, col] == label


def test_fit_trains_on_the_dataset_with_validation(setup):
    lesions, processor, config = setup
    train = build_dataset(lesions[:12], processor, config, batch_size=4, prompt="box+points")
    val = build_dataset(lesions[12:16], processor, config, batch_size=4, shuffle=False,
                        fixed_prompts=True, prompt="box+points")
    model = tiny_segmenter()
    model.compile(optimizer=keras.optimizers.legacy.Adam(1e-3))
    history = model.fit(train, validation_data=val, epochs=2, verbose=0)
    assert len(history.history["val_dice"]) == 2
    assert np.isfinite(history.history["loss"]).all()


@pytest.mark.parametrize(
    "kwargs, message",
    [({"prompt": "mask"}, "prompt must be one of box, points, box\\+points; got 'mask'"),
     ({"batch_size": 0}, "batch_size must be at least 1; got 0")],
)
def test_bad_pipeline_arguments(setup, kwargs, message):
    lesions, processor, config = setup
    with pytest.raises(ValueError, match=message):
        build_dataset(lesions, processor, config, **kwargs)
