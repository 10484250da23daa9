"""keras-sam's TFSamModel must embed box prompts correctly at any batch size (TensorFlow 2.19-2.21
corrupt memory in the rank-4 matmul TFSamModel uses; batch 16+ crashed, batch 12 was wrong), and
its faster mask decoder must compute what transformers' code computes."""

import numpy as np
import pytest
import tf_keras as keras

from conftest import tiny_segmenter
from keras_sam import DiceLoss


@pytest.fixture(scope="module")
def model():
    return tiny_segmenter()


def reference_box_embeddings(sam, boxes):
    """NumPy version of TFSamPromptEncoder._embed_boxes for (B, 4) boxes."""
    size = sam.config.prompt_encoder_config.image_size
    gaussian = sam.shared_image_embedding.positional_embedding.numpy()
    corners = (boxes.astype(np.float64) + 0.5).reshape(len(boxes), 1, 2, 2) / size
    projected = 2 * np.pi * ((2 * corners - 1) @ gaussian)
    embedding = np.concatenate([np.sin(projected), np.cos(projected)], axis=-1)
    embedding[:, :, 0] += sam.prompt_encoder.point_embed[2].numpy()[0]
    embedding[:, :, 1] += sam.prompt_encoder.point_embed[3].numpy()[0]
    return embedding


@pytest.mark.parametrize("batch", [1, 12, 32, 64])
def test_box_prompt_embeddings_match_numpy(model, batch):
    rng = np.random.default_rng(batch)
    corner = rng.uniform(0, 200, size=(batch, 2))
    boxes = np.concatenate([corner, corner + rng.uniform(5, 50, size=(batch, 2))], axis=1)
    sparse, _ = model.sam.prompt_encoder(
        batch_size=batch,
        input_points=None,
        input_labels=None,
        input_boxes=boxes[:, None].astype(np.float32),
        input_masks=None,
    )
    np.testing.assert_allclose(sparse.numpy(), reference_box_embeddings(model.sam, boxes), atol=2e-4)


def test_fit_runs_at_batch_32(toy_data):
    model = tiny_segmenter()
    model.compile(optimizer=keras.optimizers.legacy.Adam(1e-3))
    x, y = toy_data
    history = model.fit(x, y, batch_size=32, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def decoder_outputs_and_gradients(sam, inputs, multimask_output):
    """Masks, IoU scores and the gradient of a loss on both for every mask-decoder weight."""
    import tensorflow as tf

    with tf.GradientTape() as tape:
        out = sam(pixel_values=None, **inputs, multimask_output=multimask_output, training=True)
        loss = tf.reduce_mean(tf.square(out.pred_masks)) + tf.reduce_mean(out.iou_scores)
    weights = sam.mask_decoder.trainable_variables
    gradients = tape.gradient(loss, weights)
    return out.pred_masks.numpy(), out.iou_scores.numpy(), {
        weight.name: gradient.numpy() for weight, gradient in zip(weights, gradients) if gradient is not None}


@pytest.mark.parametrize("multimask_output, prompt_sets", [(True, 1), (False, 2)])
def test_the_decoder_rewrites_compute_what_transformers_computes(multimask_output, prompt_sets):
    # Layer norms with a written-out gradient, GELU in float32, block-diagonal attention and the
    # upscaling on pixel rows: the same masks (in image order), scores and gradients as
    # transformers' own code, to float32 rounding.
    from transformers import TFSamModel

    from keras_sam import tiny_sam_config
    from keras_sam.tfkeras.tf_sam_patches import gelu_in_float32, patch_tf_sam

    keras.utils.set_random_seed(3)
    sam = TFSamModel(tiny_sam_config())
    inputs = _decoder_inputs(sam, prompt_sets)
    expected = decoder_outputs_and_gradients(sam, inputs, multimask_output)
    patch_tf_sam(sam)
    assert sam.mask_decoder.activation is gelu_in_float32
    assert_same_decoder(decoder_outputs_and_gradients(sam, inputs, multimask_output), expected)


def assert_same_decoder(patched, expected):
    """Masks, scores and gradients (decoder_outputs_and_gradients) equal to float32 rounding."""
    (patched_masks, patched_scores, patched_gradients), (masks, scores, gradients) = patched, expected
    np.testing.assert_allclose(patched_masks, masks, atol=1e-5 * np.abs(masks).max())
    np.testing.assert_allclose(patched_scores, scores, atol=1e-5)
    assert patched_gradients.keys() == gradients.keys() and len(gradients) > 50
    scale = max(np.abs(gradient).max() for gradient in gradients.values())
    for name, gradient in gradients.items():
        np.testing.assert_allclose(patched_gradients[name], gradient, atol=1e-4 * scale, err_msg=name)


def test_the_training_step_runs_the_decoders_dense_layers_as_plain_matmuls(toy_data):
    # Keras's tensordot (a Dense layer on rank 3 or more) is some 24 graph ops to trace and
    # optimize; the decoder's MLPs and heads run on 2-D rows instead (same values: above).
    import tensorflow as tf

    model = tiny_segmenter()
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=DiceLoss())
    x, y = toy_data
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(2)
    model.trace_train_step(dataset)
    graph = model.train_function.get_concrete_function(tf.data.IteratorSpec(dataset.element_spec)).graph
    decoder = [op.name for op in graph.get_operations() if "mask_decoder" in op.name]
    assert decoder and not [name for name in decoder if "Tensordot" in name]


@pytest.mark.parametrize("axis", [-1, 1])  # 1: not the last axis, left to Keras's own call
def test_a_patched_layer_norm_matches_keras_in_value_and_gradient(axis):
    import tensorflow as tf

    from keras_sam.tfkeras.tf_sam_patches import patch_layer_norm

    x = tf.constant(np.random.default_rng(0).normal(2.0, 3.0, size=(2, 5, 16)), tf.float32)
    upstream = tf.constant(np.random.default_rng(1).normal(size=(2, 5, 16)), tf.float32)
    results = []
    for patch in (False, True):
        keras.utils.set_random_seed(0)
        layer = keras.layers.LayerNormalization(axis=axis, epsilon=1e-6,
                                                gamma_initializer="random_normal", beta_initializer="random_normal")
        if patch:
            patch_layer_norm(layer)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(y * upstream)
        results.append([y.numpy(), *(g.numpy() for g in tape.gradient(loss, [x, layer.gamma, layer.beta]))])
    for keras_value, patched_value in zip(*results):
        np.testing.assert_allclose(patched_value, keras_value, rtol=1e-4, atol=1e-5)


def image_embeddings_with_random_positions(precision="float32", patch=None):
    """Image embeddings of a tiny TFSamModel whose relative positions are random (they start at 0)."""
    import tensorflow as tf
    from transformers import TFSamModel
    from transformers.models.sam.modeling_tf_sam import TFSamVisionAttention

    from keras_sam import tiny_sam_config
    from keras_sam.app.speed import precision_policy

    keras.utils.set_random_seed(5)
    with precision_policy(precision):
        sam = TFSamModel(tiny_sam_config())
    size = sam.config.vision_config.image_size
    pixels = tf.constant(np.random.default_rng(5).normal(size=(2, 3, size, size)), sam.vision_encoder.compute_dtype)
    sam.get_image_embeddings(pixels)  # builds the weights
    rng = np.random.default_rng(6)
    attentions = [layer for layer in sam.vision_encoder.submodules if isinstance(layer, TFSamVisionAttention)]
    for layer in attentions:
        layer.rel_pos_h.assign(rng.normal(0.0, 2.0, size=layer.rel_pos_h.shape))
        layer.rel_pos_w.assign(rng.normal(0.0, 2.0, size=layer.rel_pos_w.shape))
    if patch:
        patch(sam)
    return tf.cast(sam.get_image_embeddings(pixels), tf.float32).numpy()


@pytest.mark.parametrize("scores_per_pass", ["default", 1])  # 1: a single head a pass
def test_the_image_encoder_rewrites_compute_what_transformers_computes(monkeypatch, scores_per_pass):
    # The relative positions inside the score matmul (used at 16-bit precision) and the 2-D MLPs,
    # forced onto a float32 model: the same embeddings as transformers' code, to float32 rounding.
    import types

    from transformers.models.sam.modeling_tf_sam import TFSamVisionAttention

    from keras_sam.tfkeras import tf_sam_patches
    from keras_sam.tfkeras.tf_sam_patches import _attention_with_positions_in_matmul, patch_tf_sam

    if scores_per_pass != "default":
        monkeypatch.setattr(tf_sam_patches, "SCORES_PER_PASS", scores_per_pass)

    def patch_with_positions_in_matmul(sam):
        patch_tf_sam(sam)
        for layer in sam.vision_encoder.submodules:
            if isinstance(layer, TFSamVisionAttention):
                layer.call = types.MethodType(_attention_with_positions_in_matmul, layer)

    reference = image_embeddings_with_random_positions()
    for patch in (patch_tf_sam, patch_with_positions_in_matmul):
        np.testing.assert_allclose(image_embeddings_with_random_positions(patch=patch), reference,
                                   atol=1e-5 * np.abs(reference).max(), err_msg=patch.__name__)


def test_the_bfloat16_image_encoder_stays_within_bfloat16_rounding_of_float32():
    from keras_sam.tfkeras.tf_sam_patches import patch_tf_sam

    reference = image_embeddings_with_random_positions()
    patched = image_embeddings_with_random_positions("mixed_bfloat16", patch=patch_tf_sam)
    unpatched = image_embeddings_with_random_positions("mixed_bfloat16")
    scale = np.abs(reference).max()
    assert np.abs(patched - reference).max() < 0.05 * scale
    # The positions summed in the matmul's float32 accumulator round less than bfloat16 adds.
    assert np.abs(patched - reference).mean() <= np.abs(unpatched - reference).mean()


PEAK_MEMORY_OF_EMBEDDING = """
import json, sys
import numpy as np
import tensorflow as tf
import tf_keras as keras
from transformers import TFSamModel
from keras_sam import tiny_sam_config
from keras_sam.tfkeras import tf_sam_patches
from keras_sam.app.speed import precision_policy

keras.utils.set_random_seed(0)
with precision_policy("mixed_bfloat16"):
    sam = tf_sam_patches.patch_tf_sam(TFSamModel(tiny_sam_config(image_size=1024)))
pixels = tf.constant(np.random.default_rng(0).normal(size=(1, 3, 1024, 1024)), tf.bfloat16)
results = []
for scores_per_pass in json.loads(sys.argv[1]):
    tf_sam_patches.SCORES_PER_PASS = scores_per_pass
    embed = tf.function(sam.get_image_embeddings).get_concrete_function(pixels)  # traced with it
    embed(pixels)
    tf.config.experimental.reset_memory_stats("CPU:0")
    embedding = tf.cast(embed(pixels), tf.float32).numpy()
    results.append([tf.config.experimental.get_memory_info("CPU:0")["peak"], float(np.abs(embedding).sum())])
print(json.dumps(results))
"""


def test_the_bfloat16_image_encoder_holds_the_scores_of_few_heads_at_a_time():
    # 4096 image tokens, as sam-vit-base's global layers: 32 MiB of bfloat16 scores a head. One
    # head a pass must need less memory than both at once, for the same embeddings. In a process
    # of its own: tensors other tests leave alive (or still make) would blur the peak.
    import json
    import subprocess
    import sys

    head_bytes = 4096 * 4096 * 2
    run = subprocess.run([sys.executable, "-c", PEAK_MEMORY_OF_EMBEDDING, json.dumps([2 * head_bytes, head_bytes])],
                         capture_output=True, text=True, check=True)
    (both_peak, both_sum), (one_peak, one_sum) = json.loads(run.stdout.strip().splitlines()[-1])
    assert one_sum == both_sum
    assert one_peak <= both_peak - 0.9 * head_bytes, (one_peak, both_peak)


def _decoder_inputs(sam, prompt_sets=1):
    """Random image embeddings and box and point prompts for a tiny TFSamModel's decoder."""
    rng = np.random.default_rng(3)
    side = sam.config.vision_config.image_size // sam.config.vision_config.patch_size
    return {
        "image_embeddings": rng.normal(size=(2, sam.config.vision_config.output_channels, side, side)).astype(np.float32),
        "input_boxes": rng.uniform(10, 200, size=(2, prompt_sets, 4)).astype(np.float32),
        "input_points": rng.uniform(10, 200, size=(2, prompt_sets, 3, 2)).astype(np.float32),
        "input_labels": rng.integers(0, 2, size=(2, prompt_sets, 3)).astype(np.int32),
    }


@pytest.mark.parametrize("speed", [(), *[(name,) for name in
                                        ("decoder_layer_norms", "decoder_gelu", "block_attention",
                                         "upscaling_rows", "dense_rows")]], ids=lambda speed: speed[0] if speed else "none")
def test_each_speed_rewrite_alone_computes_what_transformers_computes(speed):
    # The correctness fixes alone, or with one speed rewrite: the same masks, scores and decoder
    # gradients as transformers' own code, to float32 rounding.
    from transformers import TFSamModel

    from keras_sam import tiny_sam_config
    from keras_sam.tfkeras.tf_sam_patches import patch_tf_sam

    keras.utils.set_random_seed(3)
    sam = TFSamModel(tiny_sam_config())
    inputs = _decoder_inputs(sam)
    expected = decoder_outputs_and_gradients(sam, inputs, True)
    patch_tf_sam(sam, speed=speed)
    assert_same_decoder(decoder_outputs_and_gradients(sam, inputs, True), expected)


@pytest.mark.parametrize("speed", [(), ("vision_attention",), ("dense_rows",)],
                         ids=lambda speed: speed[0] if speed else "none")
def test_each_image_encoder_rewrite_alone_computes_what_transformers_computes(speed):
    from keras_sam.tfkeras.tf_sam_patches import patch_tf_sam

    reference = image_embeddings_with_random_positions()
    patched = image_embeddings_with_random_positions(patch=lambda sam: patch_tf_sam(sam, speed=speed))
    np.testing.assert_allclose(patched, reference, atol=1e-5 * np.abs(reference).max())


def test_without_speed_rewrites_only_the_correctness_fixes_are_applied():
    from transformers import TFSamModel
    from transformers.models.sam.modeling_tf_sam import TFSamAttention, TFSamMaskDecoder

    from keras_sam import tiny_sam_config
    from keras_sam.tfkeras.tf_sam_patches import (_float32_attention_call, _rank2_positional_call, gelu_in_float32,
                                                  patch_tf_sam)

    sam = patch_tf_sam(TFSamModel(tiny_sam_config()), speed=())
    assert sam.shared_image_embedding.call.__func__ is _rank2_positional_call
    attentions = [layer for layer in sam.submodules if isinstance(layer, TFSamAttention)]
    assert attentions and all(layer.call.__func__ is _float32_attention_call for layer in attentions)
    assert sam.mask_decoder.call.__func__ is TFSamMaskDecoder.call
    assert sam.mask_decoder.activation is not gelu_in_float32


def test_an_unknown_speed_rewrite_is_refused_with_the_choices():
    from transformers import TFSamModel

    from keras_sam import tiny_sam_config
    from keras_sam.tfkeras.tf_sam_patches import patch_tf_sam

    with pytest.raises(ValueError, match="unknown speed rewrite.*'fast'.*decoder_layer_norms"):
        patch_tf_sam(TFSamModel(tiny_sam_config()), speed=("fast",))


@pytest.mark.parametrize("version, supported", [("4.39.3", False), ("4.40.0", True), ("4.57.6", True),
                                                ("5.0.0", False)])
def test_the_transformers_version_is_checked(version, supported):
    from keras_sam.tfkeras.tf_sam_patches import UnsupportedTransformersError, check_transformers_version

    if supported:
        check_transformers_version(version)
    else:
        with pytest.raises(UnsupportedTransformersError, match=rf"transformers {version} is installed.*>=4.40,<5"):
            check_transformers_version(version)


def test_patching_checks_the_installed_transformers(monkeypatch):
    import transformers
    from transformers import TFSamModel

    from keras_sam import tiny_sam_config
    from keras_sam.tfkeras.tf_sam_patches import UnsupportedTransformersError, patch_tf_sam

    sam = TFSamModel(tiny_sam_config())
    monkeypatch.setattr(transformers, "__version__", "4.30.0")
    with pytest.raises(UnsupportedTransformersError, match="4.30.0"):
        patch_tf_sam(sam)
