"""No prompt at all (`--prompt none`): image samples whose target is all their lesions, images
without a lesion as empty targets, one traced training step from cached embeddings, the scores,
the one-line errors, and inference: clicks with a previous mask, and the warning for a model not
trained without a prompt."""

import warnings

import numpy as np
import pytest

from conftest import tiny_segmenter
from keras_sam import tiny_sam_config
from keras_sam.app.cli import build_parser
from keras_sam.app.errors import UsageError
from keras_sam.app.settings import resolve
from keras_sam.common.configs import processor_for_config
from keras_sam.data import (DataError, DataGenerator, PromptOptions, build_dataset, cache_embeddings,
                            find_records, image_samples, load_mask, normal_samples, read_lesions)
from keras_sam.common.embeddings import EmbeddingCache
from keras_sam.common.evaluation import evaluate_lesions, summarize_no_prompt
from keras_sam.common.inference import segment_image
from keras_sam.common.preprocessing import preprocess_mask
from keras_sam.tfkeras.segmenter import default_optimizer


@pytest.fixture(scope="module")
def phantoms(phantom_dir):
    return read_lesions(find_records(phantom_dir), progress=False)


@pytest.fixture(scope="module")
def processor():
    return processor_for_config(tiny_sam_config())


def test_an_image_sample_is_the_union_of_its_lesions(phantoms, processor):
    lesions = phantoms.lesions
    samples = image_samples(lesions)
    assert len(samples) == len({lesion.image_path for lesion in lesions})
    two = next(sample for sample in samples if len(sample.mask_paths) == 2)  # the phantoms have some
    target = DataGenerator([two], processor)[0]["labels"]
    masks = [preprocess_mask(load_mask(path, two.image_size), processor) for path in two.mask_paths]
    np.testing.assert_array_equal(target, np.maximum(*masks))
    assert 0 < masks[0].sum() < target.sum()  # each lesion alone is less than the target
    assert two.id == two.image_path


def test_normal_images_are_samples_with_an_empty_target(phantoms, processor):
    normal = normal_samples(phantoms)
    assert len(normal) == 3 and all(sample.label == "normal" and not sample.mask_paths for sample in normal)
    item = DataGenerator(normal[:1], processor)[0]
    assert item["labels"].shape == (64, 64) and item["labels"].sum() == 0


def test_include_normal_on_a_layout_without_a_normal_class_is_refused(tmp_path):
    from PIL import Image

    for folder in ("images", "labels"):
        (tmp_path / folder).mkdir()
    mask = np.zeros((40, 40), np.uint8)
    mask[10:20, 10:20] = 255
    Image.fromarray(np.full((40, 40, 3), 90, np.uint8)).save(tmp_path / "images" / "a.png")
    Image.fromarray(mask).save(tmp_path / "labels" / "a.png")
    found = read_lesions(find_records(str(tmp_path)), progress=False)
    with pytest.raises(DataError, match="--include-normal: .* has no normal class"):
        normal_samples(found, str(tmp_path))


@pytest.mark.parametrize("argv, message", [
    (["--prompt", "none", "--freeze", "vision_encoder,mask_decoder"], "drop mask_decoder from --freeze"),
    (["--include-normal"], "--include-normal adds images without a lesion, .* use it with --prompt none"),
])
def test_no_prompt_settings_that_cannot_work_are_refused(argv, message):
    args = build_parser().parse_args(["finetune", "--demo", "--output", "unused", *argv])
    with pytest.raises(UsageError, match=message):
        resolve(args)


def test_the_empty_prompt_trains_in_the_traced_step_from_cached_embeddings(phantoms, processor):
    model = tiny_segmenter(seed=0)
    samples = image_samples(phantoms.lesions)[:3] + normal_samples(phantoms)[:1]
    cache = EmbeddingCache(model)
    cache_embeddings(samples, processor, cache, progress=False)
    dataset = build_dataset(samples, processor, batch_size=2, prompts=PromptOptions("none"), embeddings=cache,
                            epochs=(0, 1))
    inputs, targets = dataset.element_spec
    assert set(inputs) == {"image_embeddings"}  # SAM's empty prompt: the image alone
    model.compile(optimizer=default_optimizer(1e-2))
    decoder = [w.numpy() for w in model.sam.mask_decoder.trainable_weights]
    model.fit(dataset, epochs=1, steps_per_epoch=1, verbose=0)
    assert model.train_function.experimental_get_tracing_count() == 1  # one traced step, no eager loop
    assert any(not np.array_equal(before, after.numpy())
               for before, after in zip(decoder, model.sam.mask_decoder.trainable_weights))


def test_no_prompt_scores_count_images_without_a_lesion_apart(phantoms):
    model = tiny_segmenter(seed=0)
    processor = model.processor
    samples = image_samples(phantoms.lesions)[:2] + normal_samples(phantoms)[:2]
    dataset = build_dataset(samples, processor, batch_size=2, prompts=PromptOptions("none"), training=False,
                            with_ids=True)
    rows, _ = evaluate_lesions(model, samples, dataset, processor, progress=False)
    assert [row["lesions"] for row in rows] == [len(s.mask_paths) for s in samples]
    summary = summarize_no_prompt(rows)
    assert summary["images"] == 2 and summary["normal_images"] == 2
    assert summary["dice"] == pytest.approx(np.mean([rows[0]["dice"], rows[1]["dice"]]))
    assert summary["normal_correct"] == np.mean([not row["predicts_lesion"] for row in rows[2:]])


def test_summary_of_hand_made_rows():
    rows = [{"dice": 0.8, "lesions": 1}, {"dice": 0.4, "lesions": 2},
            {"dice": 1.0, "lesions": 0, "predicts_lesion": False},
            {"dice": 0.0, "lesions": 0, "predicts_lesion": True},
            {"dice": 1.0, "lesions": 0, "predicts_lesion": False}]
    assert summarize_no_prompt(rows) == pytest.approx(
        {"dice": 0.6, "images": 2, "normal_correct": 2 / 3, "normal_images": 3})
    assert "normal_correct" not in summarize_no_prompt(rows[:2])


@pytest.fixture(scope="module")
def picture():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 60, (90, 120, 3)).astype(np.uint8)
    image[30:60, 40:80] = 220
    return image


def test_clicks_with_the_previous_mask_refine_it(picture):
    model = tiny_segmenter(seed=1)
    box = [[35, 25, 85, 65]]
    first = segment_image(model, picture, boxes=box)
    clicks = dict(points=[[60, 45], [20, 80]], labels=[1, 0])
    without = segment_image(model, picture, boxes=box, **clicks)
    refined = segment_image(model, picture, boxes=box, mask_input=first.logits[0], **clicks)
    assert refined.logits.shape == first.logits.shape == (1, 64, 64)
    assert np.abs(refined.logits - without.logits).max() > 1e-3  # the previous mask is fed back
    assert np.abs(refined.logits - first.logits).max() > 1e-3
    drawn = segment_image(model, picture, points=[[60, 45]], mask_input=first.masks[0])  # a mask PNG's kind
    assert drawn.masks[0].shape == picture.shape[:2]
    with pytest.raises(ValueError, match="previous mask is 10x10"):
        segment_image(model, picture, mask_input=np.zeros((10, 10), bool))


def test_no_prompt_warns_unless_the_model_was_trained_for_it(picture, tmp_path):
    model = tiny_segmenter(seed=1)
    with pytest.warns(UserWarning, match="no prompt, but this model records no fine-tuning without"):
        unprompted = segment_image(model, picture)
    assert unprompted.masks[0].shape == picture.shape[:2]
    model.trained_prompt = "none"
    model.save_pretrained(str(tmp_path / "model"))
    loaded = type(model).from_pretrained(str(tmp_path / "model"))
    assert loaded.trained_prompt == "none"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = segment_image(loaded, picture)
    np.testing.assert_allclose(again.logits, unprompted.logits, atol=1e-5)
    loaded.trained_prompt = "box"
    with pytest.warns(UserWarning, match="was fine-tuned with box prompts"):
        loaded.segment(picture)


def test_overlays_show_the_clicks_and_the_mask_they_refine(tmp_path):
    from keras_sam.common.overlays import OverlayRenderer
    from keras_sam.common.visualization import NEGATIVE_COLOR, POSITIVE_COLOR, PREVIOUS_COLOR
    from toy import disks

    model = tiny_segmenter(seed=1)
    x, y = disks(1)
    previous = np.full((1, 64, 64), -10.0, np.float32)
    previous[0, 20:40, 20:40] = 10.0
    clicks = {"input_points": np.array([[[128.0, 128.0], [40.0, 200.0]]], np.float32),
              "input_labels": np.array([[1, 0]], np.int32)}
    refined = OverlayRenderer([({**x, **clicks, "input_masks": previous}, y)], display_size=256).render(model)[0]
    plain = OverlayRenderer([({**x, **clicks}, y)], display_size=256).render(model)[0]
    assert (refined == PREVIOUS_COLOR).all(axis=-1).sum() > 40  # the outline of the mask fed back
    assert not (plain == PREVIOUS_COLOR).all(axis=-1).any()
    assert tuple(refined[126, 125]) == POSITIVE_COLOR and tuple(refined[198, 38]) == NEGATIVE_COLOR  # discs
    assert (refined != plain).any(axis=-1).sum() > 40


def test_overlays_of_clicks_data_draw_the_simulated_clicks_and_the_mask_they_refine():
    from keras_sam.common.clicks import first_click
    from keras_sam.common.overlays import OverlayRenderer
    from keras_sam.common.visualization import POSITIVE_COLOR, PREVIOUS_COLOR
    from toy import disks

    model = tiny_segmenter(seed=1)
    x, y = disks(1)
    clicks = {"pixel_values": x["pixel_values"], "click_rounds": np.ones((1, 2), np.int32),
              "click_seed": np.array([[1, 2]], np.int32), "click_extent": np.array([[64.0, 64.0]], np.float32)}
    renderer = OverlayRenderer([(clicks, y)], display_size=256)
    overlay = renderer.render(model)[0]
    first = first_click(y[0] > 0.5)  # the protocol's first click, at the disk's interior-most pixel
    row, column = int(first.y * 4) - 2, int(first.x * 4) - 3  # inside its disc, off its plus
    assert tuple(overlay[row, column]) == POSITIVE_COLOR
    assert (overlay == PREVIOUS_COLOR).all(axis=-1).sum() > 20  # the mask the last click refined
