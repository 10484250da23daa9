"""keras-sam's TFSamModel must embed box prompts correctly at any batch size (TensorFlow 2.19-2.21
corrupt memory in the rank-4 matmul TFSamModel uses; batch 16+ crashed, batch 12 was wrong)."""

import numpy as np
import pytest
import tf_keras as keras

from conftest import tiny_segmenter


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
