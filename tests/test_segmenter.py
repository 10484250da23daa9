import json

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras
from transformers import SamProcessor, TFSamModel

from conftest import tiny_segmenter
from toy import disks
from keras_sam import DiceLoss, DiceScore, SamSegmenter, best_mask_logits, tiny_sam_config
from keras_sam.app.speed import precision_policy
from keras_sam.common.inference import segment_image
from keras_sam.tfkeras.losses import FocalLoss
from keras_sam.tfkeras.tf_sam_patches import patch_tf_sam


def weights_of(layer):
    return [w.numpy().copy() for w in layer.weights]


def same_weights(before, layer):
    return all(np.array_equal(a, b.numpy()) for a, b in zip(before, layer.weights))


@pytest.fixture(scope="module")
def trained():
    """A tiny model fitted for a few epochs on disks with box prompts, and what it started from."""
    x, y = disks(32, seed=0)
    model = tiny_segmenter(seed=1)
    before = {name: weights_of(getattr(model.sam, name))
              for name in ("vision_encoder", "prompt_encoder", "mask_decoder")}
    model.compile(optimizer=keras.optimizers.legacy.Adam(3e-3))
    history = model.fit(x, y, batch_size=8, epochs=6, verbose=0, shuffle=False)
    return model, before, history, (x, y)


def test_fit_lowers_the_loss(trained):
    _, _, history, _ = trained
    losses = history.history["loss"]
    assert losses[-1] < losses[0] - 0.05, losses


def test_fit_adds_nothing_to_the_logs_the_user_did_not_ask_for(trained):
    _, _, history, _ = trained
    assert set(history.history) == {"loss", "dice", "iou", "iou_head_loss"}


def test_frozen_encoders_stay_bit_identical_and_the_decoder_changes(trained):
    model, before, _, _ = trained
    assert same_weights(before["vision_encoder"], model.sam.vision_encoder)
    assert same_weights(before["prompt_encoder"], model.sam.prompt_encoder)
    assert not same_weights(before["mask_decoder"], model.sam.mask_decoder)


def test_fit_and_evaluate_trace_their_step_once():
    # Optimizer slots and metric variables made inside the first trace would make TensorFlow
    # trace the step a second time (about a third of a first epoch on sam-vit-base).
    x, y = disks(8, seed=2)
    model = tiny_segmenter(seed=2)
    model.compile(metrics=["accuracy", keras.metrics.BinaryIoU(target_class_ids=[1])])
    model.evaluate(x, y, batch_size=4, verbose=0)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert model.test_function.experimental_get_tracing_count() == 1
    assert model.train_function.experimental_get_tracing_count() == 1


def test_trace_train_step_traces_what_fit_then_runs():
    x, y = disks(8, seed=3)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    model = tiny_segmenter(seed=3)
    with pytest.raises(RuntimeError, match="compile"):
        model.trace_train_step(dataset)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.trace_train_step(dataset)
    traced = model.train_function
    assert traced.experimental_get_tracing_count() == 1
    history = model.fit(dataset, epochs=2, verbose=0)
    assert model.train_function is traced and traced.experimental_get_tracing_count() == 1
    assert history.history["loss"][1] < history.history["loss"][0]


def test_evaluate_returns_loss_and_metrics(trained):
    model, _, _, (x, y) = trained
    result = model.evaluate(x, y, batch_size=8, verbose=0, return_dict=True)
    assert {"loss", "dice", "iou", "iou_head_loss"} <= set(result)
    assert 0.0 <= result["iou"] <= result["dice"] <= 1.0
    predicted = model.predict(x, batch_size=8, verbose=0)
    logits = predicted["mask_logits"]
    assert logits.shape == (32, 1, 64, 64) and predicted["iou_scores"].shape == (32, 1)
    manual = DiceScore()
    manual.update_state(y, logits[:, 0])
    assert result["dice"] == pytest.approx(float(manual.result()), abs=1e-5)


def test_save_pretrained_round_trips_through_plain_tfsammodel(trained, tmp_path):
    model, _, _, (x, _) = trained
    model.save_pretrained(tmp_path / "model")
    reloaded = TFSamModel.from_pretrained(tmp_path / "model")
    # The rank-2 positional-embedding fix changes float rounding (~1e-5); with it on both, the
    # predictions must be bit-identical, which they are only if every weight came back.
    patch_tf_sam(reloaded)
    ours = model.sam(pixel_values=x["pixel_values"][:4], input_boxes=x["input_boxes"][:4, None],
                     multimask_output=False).pred_masks.numpy()
    theirs = reloaded(pixel_values=x["pixel_values"][:4], input_boxes=x["input_boxes"][:4, None],
                      multimask_output=False).pred_masks.numpy()
    np.testing.assert_array_equal(ours, theirs)
    processor = SamProcessor.from_pretrained(tmp_path / "model")
    assert processor.image_processor.pad_size == {"height": 256, "width": 256}
    assert processor.image_processor.mask_pad_size == {"height": 64, "width": 64}
    again = SamSegmenter.from_pretrained(tmp_path / "model", multimask_output=True)
    assert again.multimask_output and again.freeze == ("vision_encoder", "prompt_encoder")


def test_a_model_built_inside_the_wrapper_keeps_its_weight_names(tmp_path, toy_data):
    sam = TFSamModel(tiny_sam_config())  # not built: the wrapper builds it
    model = SamSegmenter(sam)
    x, _ = toy_data
    model({"pixel_values": x["pixel_values"][:2], "input_boxes": x["input_boxes"][:2]})
    assert all(not w.name.startswith("sam_segmenter") for w in model.sam.weights)
    model.save_pretrained(tmp_path)
    reloaded = TFSamModel.from_pretrained(tmp_path)
    np.testing.assert_array_equal(reloaded.mask_decoder.weights[0].numpy(),
                                  model.sam.mask_decoder.weights[0].numpy())


@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16"])
def test_the_encoder_traced_ahead_is_the_graph_the_first_embedding_runs(toy_data, precision):
    with precision_policy(precision):
        model = tiny_segmenter()
    x, _ = toy_data
    model.trace_image_embeddings(3)
    assert model._encode.experimental_get_tracing_count() == 1
    model.image_embeddings(x["pixel_values"][:3])
    assert model._encode.experimental_get_tracing_count() == 1


def test_predictions_from_image_embeddings_equal_those_from_pixels(trained):
    model, _, _, (x, _) = trained
    embeddings = model.image_embeddings(x["pixel_values"][:4])
    from_pixels = model.predict({k: v[:4] for k, v in x.items()}, verbose=0)
    from_cache = model.predict({"image_embeddings": embeddings.numpy(),
                                "input_boxes": x["input_boxes"][:4]}, verbose=0)
    for key in ("mask_logits", "iou_scores"):
        np.testing.assert_allclose(from_cache[key], from_pixels[key], atol=1e-6)


def test_segment_takes_an_image_and_prompts_in_its_pixels(trained):
    model, _, _, _ = trained
    image = np.zeros((90, 120, 3), np.uint8)
    image[30:60, 40:80] = 255
    result = model.segment(image, boxes=[[35, 25, 85, 65], [0, 0, 50, 40]])
    expected = segment_image(model, image, boxes=[[35, 25, 85, 65], [0, 0, 50, 40]])
    assert len(result.masks) == 2 and result.masks[0].shape == (90, 120)
    np.testing.assert_array_equal(result.masks[1], expected.masks[1])
    np.testing.assert_array_equal(result.scores, expected.scores)


def test_segment_with_the_input_dict_still_works_but_is_deprecated_and_compile_has_defaults(trained):
    model, _, _, (x, _) = trained
    inputs = {k: v[:3] for k, v in x.items()}
    with pytest.warns(DeprecationWarning, match="segment\\(inputs\\) with the input dict is deprecated"):
        output = model.segment(inputs)
    assert output.mask_logits.shape == (3, 1, 64, 64)
    assert output.iou_scores.shape == (3, 1)
    called = model(inputs)
    np.testing.assert_array_equal(output.mask_logits, called["mask_logits"])
    np.testing.assert_array_equal(output.iou_scores, called["iou_scores"])
    fresh = tiny_segmenter()
    fresh.compile()
    assert isinstance(fresh.loss, DiceLoss)
    assert float(fresh.optimizer.learning_rate) == pytest.approx(1e-5)
    assert [m["config"]["name"] for m in fresh.get_compile_config()["metrics"]] == ["dice", "iou"]
    fresh.compile(optimizer=keras.optimizers.SGD(0.1))
    assert isinstance(fresh.loss, DiceLoss)


def test_fit_and_evaluate_use_what_a_subclass_call_returns(toy_data):
    class Shifted(SamSegmenter):  # a user's model whose masks are its logits plus 5
        def call(self, inputs, training=None):
            outputs = super().call(inputs, training=training)
            return {**outputs, "mask_logits": outputs["mask_logits"] + 5.0}

    x, y = toy_data
    keras.utils.set_random_seed(0)
    model = Shifted(TFSamModel(tiny_sam_config()), iou_loss_weight=0.0)
    model.compile()
    shifted = model.predict(x, batch_size=8, verbose=0)["mask_logits"][:, 0]
    unshifted = super(Shifted, model).call(x)["mask_logits"].numpy()[:, 0]
    np.testing.assert_allclose(shifted, unshifted + 5.0, atol=1e-4)
    loss = model.evaluate(x, y, batch_size=32, verbose=0, return_dict=True)["loss"]
    assert loss == pytest.approx(float(DiceLoss()(y, shifted)), abs=1e-5)
    assert abs(loss - float(DiceLoss()(y, unshifted))) > 0.01


def test_multimask_training_uses_the_best_mask_and_trains_the_iou_head(toy_data):
    x, y = toy_data
    model = tiny_segmenter(seed=3, multimask_output=True)
    model.compile(optimizer=keras.optimizers.legacy.Adam(1e-3), loss=FocalLoss())
    batch = ({k: v[:8] for k, v in x.items()}, y[:8])
    output = model(batch[0])
    assert output["mask_logits"].shape == (8, 3, 64, 64)
    per_mask = np.stack([FocalLoss(reduction="none")(y[:8], output["mask_logits"][:, m]).numpy()
                         for m in range(3)], axis=1)
    loss = model.compute_loss(batch[0], batch[1], output)
    # The mask loss is the mean of each sample's lowest loss, not of any single mask's.
    model.iou_loss_weight = 0.0
    mask_loss = float(model.compute_loss(batch[0], batch[1], output))
    assert mask_loss == pytest.approx(per_mask.min(axis=1).mean(), rel=1e-5)
    assert mask_loss < per_mask.mean(axis=0).min()
    assert float(loss) > mask_loss  # the IoU head's error is added when its weight is non-zero
    model.iou_loss_weight = 1.0
    head = model.sam.mask_decoder.iou_prediction_head
    head_before = weights_of(head)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert not same_weights(head_before, head)


def test_freeze_can_change_after_compile_and_rejects_unknown_names(toy_data):
    x, y = toy_data
    model = tiny_segmenter(freeze=())
    model.compile(optimizer=keras.optimizers.legacy.Adam(1e-3))
    model.freeze = ["vision_encoder", "prompt_encoder", "mask_decoder"]
    with pytest.raises(ValueError, match="vision_encoder, prompt_encoder, mask_decoder, iou_head"):
        model.freeze = ["decoder"]
    model.freeze = ["vision_encoder", "prompt_encoder", "iou_head"]
    head = model.sam.mask_decoder.iou_prediction_head
    encoder_before, head_before = weights_of(model.sam.vision_encoder), weights_of(head)
    decoder_before = weights_of(model.sam.mask_decoder.transformer)
    model.fit({k: v[:8] for k, v in x.items()}, y[:8], batch_size=8, epochs=1, verbose=0)
    assert same_weights(encoder_before, model.sam.vision_encoder)
    assert same_weights(head_before, head)
    assert not same_weights(decoder_before, model.sam.mask_decoder.transformer)


def test_get_config_round_trips_as_json():
    model = tiny_segmenter(freeze=["vision_encoder"], multimask_output=True, iou_loss_weight=0.5)
    config = json.loads(json.dumps(model.get_config()))
    clone = SamSegmenter.from_config(config)
    assert clone.freeze == ("vision_encoder",)
    assert clone.multimask_output and clone.iou_loss_weight == 0.5
    assert clone.sam.config.vision_config.hidden_size == 32


def test_best_mask_logits_picks_the_highest_predicted_iou():
    logits = tf.constant(np.arange(2 * 3 * 2 * 2, dtype=np.float32).reshape(2, 3, 2, 2))
    scores = tf.constant([[0.1, 0.9, 0.3], [0.8, 0.1, 0.2]])
    from keras_sam import SegmentationOutput
    chosen = best_mask_logits(SegmentationOutput(logits, scores)).numpy()
    np.testing.assert_array_equal(chosen, [logits[0, 1].numpy(), logits[1, 0].numpy()])
