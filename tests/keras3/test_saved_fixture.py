"""The Keras 3 model saved before the package layout changed (tests/fixtures/keras3_model.keras,
written on jax by tests/fixtures/make_fixtures.py) loads on this backend and predicts the same."""

import os

import keras
import numpy as np

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures")


def test_the_saved_keras3_model_loads_and_predicts_the_same():
    import keras_sam.keras3  # registers the classes load_model needs

    model = keras.models.load_model(os.path.join(FIXTURES, "keras3_model.keras"))
    assert isinstance(model, keras_sam.keras3.SamSegmenter) and model.multimask_output
    with np.load(os.path.join(FIXTURES, "inputs_and_outputs.npz")) as saved:
        x = {key[len("input_"):]: saved[key] for key in saved.files if key.startswith("input_")}
        predicted = model.predict(x, verbose=0)
        for key in ("mask_logits", "iou_scores"):
            np.testing.assert_allclose(keras.ops.convert_to_numpy(predicted[key]), saved[f"keras3_{key}"],
                                       atol=1e-5, rtol=0, err_msg=key)
