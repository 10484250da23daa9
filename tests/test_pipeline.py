import numpy as np
import pytest
import tf_keras as keras

from conftest import tiny_segmenter
from keras_sam import processor_for_config, tiny_sam_config
from keras_sam.data import DataGenerator, PromptOptions, build_dataset, find_records, read_lesions


@pytest.fixture(scope="module")
def setup(phantom_dir):
    return read_lesions(find_records(phantom_dir)).lesions, processor_for_config(tiny_sam_config())


def test_generator_items_match_their_signature(setup):
    lesions, processor = setup
    generator = DataGenerator(lesions, processor)
    signature = generator.output_signature()
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


def boxes_by_lesion(dataset):
    """{lesion id: box} over one pass of a dataset built with_ids."""
    found = {}
    for x, _ in dataset:
        for lesion_id, box in zip(x["lesion_id"].numpy(), x["input_boxes"].numpy()):
            found[lesion_id.decode()] = box
    return found


def test_boxes_are_jittered_anew_every_epoch_but_fixed_for_evaluation(setup):
    lesions, processor = setup
    train = build_dataset(lesions[:4], processor, batch_size=4, seed=1, with_ids=True)
    first, second = boxes_by_lesion(train), boxes_by_lesion(train)
    assert set(first) == {lesion.id for lesion in lesions[:4]}
    assert not np.allclose([first[k] for k in first], [second[k] for k in first])
    generator = DataGenerator(lesions[:4], processor)
    for index, lesion in enumerate(lesions[:4]):
        item = generator[index]
        assert np.all(np.abs(first[lesion.id] - item["box"]) <= 20 * np.tile(item["scale"], 2) + 1e-4)
    evaluation = build_dataset(lesions[:4], processor, batch_size=4, training=False, with_ids=True)
    a, b = boxes_by_lesion(evaluation), boxes_by_lesion(evaluation)
    assert list(a) == [lesion.id for lesion in lesions[:4]]  # the lesions' own order
    np.testing.assert_array_equal(np.stack(list(a.values())), np.stack(list(b.values())))
    same_seed = build_dataset(lesions[:4], processor, batch_size=4, seed=1, with_ids=True)
    assert {k: v.tolist() for k, v in boxes_by_lesion(same_seed).items()} == {
        k: v.tolist() for k, v in first.items()}


def test_an_epoch_stream_replays_the_epochs_of_a_longer_one(setup):
    lesions, processor = setup
    def epochs(first, last):
        dataset = build_dataset(lesions[:6], processor, batch_size=4, seed=2, epochs=(first, last),
                                with_ids=True)
        return [(x["lesion_id"].numpy().tolist(), x["input_boxes"].numpy().tolist()) for x, _ in dataset]
    whole, resumed = epochs(0, 3), epochs(1, 3)
    assert len(whole) == 3 * 2 and whole[2:] == resumed  # 6 lesions in batches of 4: 2 per epoch
    assert whole[0][0] != whole[2][0] or whole[1][0] != whole[3][0]  # each epoch its own order


@pytest.mark.parametrize("options, batches", [
    (dict(training=False), 2), (dict(), 2), (dict(epochs=(1, 4)), 6), (dict(batch_size=6), 1)])
def test_each_dataset_says_how_many_batches_it_holds(setup, options, batches):
    # Keras sizes epochs by it; without it, Keras 3 warns "Your input ran out of data" each epoch.
    lesions, processor = setup
    dataset = build_dataset(lesions[:6], processor, **{"batch_size": 4, **options})
    assert int(dataset.cardinality()) == batches == sum(1 for _ in dataset)


def test_point_prompts_fall_inside_and_outside_the_lesion(setup):
    lesions, processor = setup
    dataset = build_dataset(lesions[:6], processor, batch_size=6, training=False,
                            prompts=PromptOptions("points", num_positive=4, num_negative=2))
    x, y = next(iter(dataset))
    assert set(x) == {"pixel_values", "input_points", "input_labels"}
    assert x["input_points"].shape == (6, 6, 2)
    grid_points = (x["input_points"].numpy() * 64 / 256).astype(int)
    labels = x["input_labels"].numpy()
    for sample in range(6):
        for (col, row), label in zip(grid_points[sample], labels[sample]):
            assert y.numpy()[sample, row, col] == label


def test_fit_trains_on_the_dataset_with_validation(setup):
    lesions, processor = setup
    both = PromptOptions("box+points")
    train = build_dataset(lesions[:12], processor, batch_size=4, prompts=both)
    val = build_dataset(lesions[12:16], processor, batch_size=4, training=False, prompts=both)
    model = tiny_segmenter()
    model.compile(optimizer=keras.optimizers.legacy.Adam(1e-3))
    history = model.fit(train, validation_data=val, epochs=2, verbose=0)
    assert len(history.history["val_dice"]) == 2
    assert np.isfinite(history.history["loss"]).all()


@pytest.mark.parametrize(
    "make, message",
    [(lambda: PromptOptions("mask"), "prompt kind must be one of box, points, box\\+points, clicks, none; got 'mask'"),
     (lambda: PromptOptions(jitter=-1), "jitter must be >= 0 pixels; got -1"),
     (lambda: PromptOptions(num_negative=-2), "num_negative=-2"),
     (lambda: PromptOptions("clicks", click_rounds=0), "click_rounds must be at least 1 .*; got 0"),
     (lambda: build_dataset([], None), "no lesions"),
     ]
)
def test_bad_pipeline_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_a_batch_size_below_one_is_refused(setup):
    lesions, processor = setup
    with pytest.raises(ValueError, match="batch_size must be at least 1; got 0"):
        build_dataset(lesions, processor, batch_size=0)
