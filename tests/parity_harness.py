"""What the family parity suite measures, written once for both model families (no Keras here).

`measure(family)` runs one model family through the same batch and options and returns
{name: NumPy array}; tests/test_family_parity.py measures the tf-keras family in its own process
and the Keras 3 family in one process per backend (tests/keras3/parity_run.py), then compares
entry by entry. A `family` provides:

- `load(multimask_output)`: a SamSegmenter of the family from the shared checkpoint;
- `losses`: {name: a function making the loss} for every name in LOSSES;
- `sgd(learning_rate)`: the family's plain SGD optimizer;
- `decoder_weights(model)`: {PyTorch name: array} of the mask decoder's weights;
- `numpy(tensor)`: a tensor as a NumPy array.
"""

import numpy as np

from toy import disks

# keras-sam's three losses, and a Keras loss of the family's own (binary cross-entropy on logits).
LOSSES = ("dice", "dice+bce", "focal", "keras_bce")
WEIGHTINGS = ("none", "per_sample", "per_pixel")
# The cases whose decoder gradients (one SGD step at learning rate 1) and metrics are compared.
STEP_CASES = (("dice", True, "per_pixel"), ("dice+bce", False, "per_sample"), ("focal", True, "none"))


def batch():
    """8 disks with box and point prompts, targets, and weights per sample and per pixel."""
    x, y = disks(8, seed=5)
    centres = (x["input_boxes"][:, None, :2] + x["input_boxes"][:, None, 2:]) / 2
    x = {**x, "input_points": centres.astype(np.float32), "input_labels": np.ones((8, 1), np.int32)}
    rng = np.random.default_rng(11)
    weights = {"none": None,
               "per_sample": rng.uniform(0.2, 2.0, size=8).astype(np.float32),
               "per_pixel": (rng.uniform(0.2, 2.0, size=(8, 1, 1))
                             * rng.uniform(0.5, 1.5, size=y.shape)).astype(np.float32)}
    return x, y, weights


def case_name(loss, multimask, weighting):
    return f"{loss}/{'multimask' if multimask else 'single'}/{weighting}"


def measure(family):
    """{name: array}: outputs, the loss of every case, decoder gradients and metrics of STEP_CASES,
    and the weights after a short fit."""
    x, y, weights = batch()
    results = {}
    for multimask in (False, True):
        model = family.load(multimask)
        outputs = model.predict(x, batch_size=8, verbose=0)
        results[f"outputs/{multimask}/mask_logits"] = np.asarray(outputs["mask_logits"])
        results[f"outputs/{multimask}/iou_scores"] = np.asarray(outputs["iou_scores"])
        y_pred = model(x, training=True)
        for loss in LOSSES:
            model.compile(optimizer=family.sgd(1.0), loss=family.losses[loss]())
            for weighting in WEIGHTINGS:
                value = model.compute_loss(x, y, y_pred, weights[weighting])
                results[f"loss/{case_name(loss, multimask, weighting)}"] = family.numpy(value)
    for loss, multimask, weighting in STEP_CASES:
        name = case_name(loss, multimask, weighting)
        model = family.load(multimask)
        model.compile(optimizer=family.sgd(1.0), loss=family.losses[loss]())
        evaluated = model.evaluate(x, y, sample_weight=weights[weighting], batch_size=8, verbose=0,
                                   return_dict=True)
        for metric in ("loss", "dice", "iou", "iou_head_loss"):
            results[f"evaluate/{name}/{metric}"] = np.asarray(evaluated[metric])
        before = family.decoder_weights(model)
        model.fit(x, y, sample_weight=weights[weighting], batch_size=8, epochs=1, shuffle=False, verbose=0)
        after = family.decoder_weights(model)
        for weight, value in before.items():
            results[f"gradient/{name}/{weight}"] = value - after[weight]  # SGD at rate 1: the gradient
    # No prompt at all (SAM's empty prompt, what --prompt none trains): outputs and one SGD step.
    unprompted = {"pixel_values": x["pixel_values"]}
    model = family.load(False)
    outputs = model.predict(unprompted, batch_size=8, verbose=0)
    for key in ("mask_logits", "iou_scores"):
        results[f"no_prompt/{key}"] = np.asarray(outputs[key])
    model.compile(optimizer=family.sgd(1.0), loss=family.losses["dice"]())
    before = family.decoder_weights(model)
    model.fit(unprompted, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    for weight, value in family.decoder_weights(model).items():
        results[f"no_prompt/gradient/{weight}"] = before[weight] - value
    # A short fit: two steps of SGD on the multimask model with per-pixel weights.
    model = family.load(True)
    model.compile(optimizer=family.sgd(0.05), loss=family.losses["dice+bce"]())
    history = model.fit(x, y, sample_weight=weights["per_pixel"], batch_size=4, epochs=1, shuffle=False,
                        verbose=0)
    results["fit/loss"] = np.asarray(history.history["loss"])
    for weight, value in family.decoder_weights(model).items():
        results[f"fit/{weight}"] = value
    return results
