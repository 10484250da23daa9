"""Run in its own process (the precision policy is global): SamSegmenter under a Keras mixed
precision policy (argv[2]), at the attention layer and as a whole. Prints one JSON line."""

import json
import sys

import numpy as np
import tf_keras as keras
from transformers.models.sam.modeling_tf_sam import TFSamAttention

sys.path.insert(0, sys.argv[1])
from conftest import tiny_segmenter  # noqa: E402
from toy import disks  # noqa: E402
from keras_sam import SamSegmenter, tiny_sam_config  # noqa: E402
from keras_sam.common.losses_and_scores import dice_per_sample  # noqa: E402
from keras_sam.tfkeras.tf_sam_patches import patch_attention  # noqa: E402

policy = sys.argv[2]
report = {"policy": policy}

# The attention layer, patched, with the same weights in float32 and under the policy.
decoder_config = tiny_sam_config().mask_decoder_config
tokens = np.random.default_rng(0).normal(size=(2, 1, 7, 32)).astype(np.float32)
layers = {}
for name in ("float32", policy):
    keras.mixed_precision.set_global_policy(name)
    layer = TFSamAttention(decoder_config, name="attention")
    layer.build(None)
    layers[name] = layer
layers[policy].set_weights(layers["float32"].get_weights())
try:
    layers[policy](tokens, tokens, tokens)
    report["unpatched_fails"] = False
except TypeError as error:
    report["unpatched_fails"] = "must have the same dtype" in str(error)
outputs = {name: patch_attention(layer)(tokens, tokens, tokens) for name, layer in layers.items()}
report["attention_dtype"] = outputs[policy].dtype.name
report["attention_error"] = float(np.abs(outputs[policy].numpy().astype(np.float32) - outputs["float32"].numpy()).max())

# The same weights in float32 and under the policy: how close the masks are. The shipped model
# segments, so its masks are decided by more than rounding noise.
x, y = disks(8, seed=3)
keras.mixed_precision.set_global_policy("float32")
reference = SamSegmenter.from_pretrained("sam-small-shapes")
keras.mixed_precision.set_global_policy(policy)
shipped = SamSegmenter.from_pretrained("sam-small-shapes")
float32_logits = reference(x)["mask_logits"].numpy()
policy_logits = shipped(x)["mask_logits"].numpy()
report["mask_agreement"] = float(((float32_logits > 0) == (policy_logits > 0)).mean())
report["dice_float32"] = float(dice_per_sample(y, float32_logits[:, 0] > 0).mean())
report["dice_policy"] = float(dice_per_sample(y, policy_logits[:, 0] > 0).mean())

# The whole model: fit, evaluate, predict and segment run; outputs come out float32.
model = tiny_segmenter(seed=1)
model.compile(optimizer=keras.optimizers.legacy.Adam(1e-3))  # the quickest to trace
history = model.fit(x, y, batch_size=4, epochs=2, verbose=0)
report["losses"] = history.history["loss"]
report["optimizer"] = type(model.optimizer).__name__  # Keras's loss scaling wraps it for float16
report["evaluate"] = model.evaluate(x, y, verbose=0, return_dict=True)
predicted = model.predict(x, verbose=0)
report["predict_dtypes"] = sorted({value.dtype.name for value in predicted.values()})
report["segment_dtype"] = model({k: v[:2] for k, v in x.items()})["mask_logits"].dtype.name
report["compute_dtype"] = model.sam.mask_decoder.compute_dtype
print(json.dumps(report))
