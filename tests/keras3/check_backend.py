"""Run in its own process with KERAS_BACKEND set: the Keras 3 family on one backend.

argv: tests folder, reference folder (a tiny TFSamModel checkpoint and its outputs, made with
tf-keras by the test), output folder, and the README's Keras 3 example saved as a file. Blocks every import of tf_keras and of transformers'
TensorFlow modelling code first: the Keras 3 family must never need them. Prints one JSON line.
"""

import contextlib
import importlib.abc
import io
import json
import os
import runpy
import sys


class BlockTensorFlowKeras(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "tf_keras" or name.endswith(("modeling_tf_sam", "modeling_tf_utils")):
            raise ImportError(f"the Keras 3 family imported {name}")
        return None


sys.meta_path.insert(0, BlockTensorFlowKeras())

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, sys.argv[1])
from toy import disks  # noqa: E402
from keras_sam.keras3 import DiceLoss, DiceScore, SamSegmenter  # noqa: E402

reference, output = sys.argv[2], sys.argv[3]
report = {"backend": keras.backend.backend(), "legacy_keras": os.environ.get("TF_USE_LEGACY_KERAS")}

# Converted from transformers' TFSamModel: the same masks and IoU scores for the same inputs.
expected = np.load(os.path.join(reference, "outputs.npz"))
model = SamSegmenter.from_pretrained(os.path.join(reference, "checkpoint"), multimask_output=True)
inputs = {key: expected[key] for key in ("pixel_values", "input_boxes", "input_points", "input_labels")}
converted = model.predict(inputs, verbose=0)
report["converted_mask_error"] = float(np.abs(converted["mask_logits"] - expected["mask_logits"]).max())
report["converted_iou_error"] = float(np.abs(converted["iou_scores"] - expected["iou_scores"]).max())

# compile() and fit() on the toy: the loss falls, the frozen encoders stay, the decoder moves.
keras.utils.set_random_seed(0)
model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=DiceLoss(), metrics=[DiceScore(), "accuracy"])
x, y = disks(16, seed=2)
frozen = [np.array(keras.ops.convert_to_numpy(w)) for w in model.image_encoder.weights]
decoder = [np.array(keras.ops.convert_to_numpy(w)) for w in model.mask_decoder.weights]
history = model.fit(x, y, batch_size=8, epochs=4, verbose=0)
report["losses"] = history.history["loss"]
report["encoder_unchanged"] = all(np.array_equal(a, keras.ops.convert_to_numpy(b))
                                  for a, b in zip(frozen, model.image_encoder.weights))
report["decoder_changed"] = any(not np.array_equal(a, keras.ops.convert_to_numpy(b))
                                for a, b in zip(decoder, model.mask_decoder.weights))
report["evaluate"] = model.evaluate(x, y, batch_size=8, verbose=0, return_dict=True)
predicted = model.predict(x, batch_size=8, verbose=0)
report["predict_shapes"] = {key: list(value.shape) for key, value in predicted.items()}

# The decoder alone from cached image embeddings predicts what it predicts from pixels.
embeddings = keras.ops.convert_to_numpy(model.image_embeddings(x["pixel_values"][:4]))
from_embeddings = model.predict({"image_embeddings": embeddings, "input_boxes": x["input_boxes"][:4]}, verbose=0)
report["embeddings_error"] = float(np.abs(from_embeddings["mask_logits"] - predicted["mask_logits"][:4]).max())

# Saving and loading round-trip; converted back, TFSamModel reads the fine-tuned weights.
model.save(os.path.join(output, "model.keras"))
loaded = keras.models.load_model(os.path.join(output, "model.keras"))
report["loaded_error"] = float(np.abs(loaded.predict(x, batch_size=8, verbose=0)["mask_logits"]
                                      - predicted["mask_logits"]).max())
report["loaded_freeze"] = list(loaded.freeze)
model.save_pretrained(os.path.join(output, "checkpoint"))
np.savez(os.path.join(output, "outputs.npz"), **inputs, **model.predict(inputs, verbose=0))

# keras-hub presets download from Kaggle: offline, one clear line.
import kagglehub  # noqa: E402


def offline(*args, **kwargs):
    raise ConnectionError("Failed to resolve 'www.kaggle.com'")


kagglehub.model_download = offline
try:
    SamSegmenter.from_preset("sam_base_sa1b")
    report["preset_error"] = None
except OSError as error:
    report["preset_error"] = str(error)

# The README's example, as a reader would run it (the backend is this process's).
printed = io.StringIO()
with contextlib.redirect_stdout(printed):
    runpy.run_path(sys.argv[4], run_name="__main__")
report["readme_printed"] = printed.getvalue().strip().splitlines()[-1]
print(json.dumps(report))
