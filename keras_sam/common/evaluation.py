"""Scores at each image's own resolution: per-lesion Dice, IoU, HD95 and NSD of a model and of its
prompt box.

HD95 and NSD (keras_sam.common.surface_metrics) are in mm when every lesion scored has a pixel spacing
(DICOM, NIfTI) and in pixels otherwise, so that one run's numbers share one unit; the unit is in
each row and summary.

The Keras metrics score masks on the logits grid, where padding and resizing blur small lesions;
these are the numbers to report. Results are joined to lesions by their id, never by position.
"""

import sys

import numpy as np
from tqdm.auto import tqdm

from keras_sam.common.clicks import DEFAULT_MAX_CLICKS, lesion_click_columns, simulate_clicks
from keras_sam.data.readers import load_target
from keras_sam.data.whole_images import ImageSample
from keras_sam.common.geometry import box_mask, to_image_coordinates, to_model_coordinates
from keras_sam.common.losses_and_scores import dice_per_sample, iou_per_sample
from keras_sam.common.postprocessing import postprocess_masks
from keras_sam.common.surface_metrics import DEFAULT_NSD_TOLERANCE, UNITS, surface_scores

SURFACE_METRICS = ("hd95", "nsd")
NO_LESION_AREA = 0.001
"""The rule for "the model predicts no lesion" on an image: its mask (probability above 0.5, at the
image's own size) covers less than this share of the image's pixels (0.1%: a few stray pixels
after upscaling the low-resolution mask, far below any lesion worth outlining). The IoU head's
score is not used: it estimates the quality of a mask, not whether there is an object."""


def surface_unit(lesions, units="auto"):
    """The unit surface metrics are given in for these lesions: "mm" or "px".

    Args:
        lesions: the lesions to score.
        units: "auto" (mm when every lesion has a spacing, else px), "mm" (every lesion must have
            one) or "px".

    Returns:
        "mm" or "px".
    """
    if units not in UNITS:
        raise ValueError(f"units must be one of {', '.join(UNITS)}; got {units!r}")
    if units == "px":
        return "px"
    missing = [lesion for lesion in lesions if getattr(lesion, "spacing", None) is None]
    if units == "mm" and missing:
        raise ValueError(f"{missing[0].image_path} has no pixel spacing, so its surface metrics can't be "
                         "in mm: use units 'px' or 'auto'")
    return "px" if missing else "mm"


def _scores(truth, predicted):
    truth, predicted = truth[None], predicted[None]
    return float(dice_per_sample(truth, predicted)[0]), float(iou_per_sample(truth, predicted)[0])


def evaluate_lesions(model, lesions, dataset, processor, progress=True, description="Evaluating",
                     nsd_tolerance=DEFAULT_NSD_TOLERANCE, units="auto"):
    """Scores each lesion's predicted mask and its prompt box against the true mask.

    Args:
        model: a SamSegmenter.
        lesions: the lesions `dataset` was built from.
        dataset: `build_dataset(lesions, processor, training=False, with_ids=True)`, with box
            prompts for the box baseline.
        processor: the model's SamProcessor.
        progress: show a progress bar.
        nsd_tolerance: the NSD tolerance, in the unit of the surface metrics (mm, or px).
        units: "auto", "mm" or "px", see `surface_unit`.

    Returns:
        (rows, masks): rows, a list of dicts in the dataset's order, one per lesion: id, image,
        mask, label, dice, iou, hd95, nsd, surface_unit, predicted_iou (in [0, 1]); for samples
        that are whole images (keras_sam.data.ImageSample, no prompt), also masks (every mask file), lesions (how many), predicted_area_share and
        predicts_lesion (see NO_LESION_AREA); with box
        prompts box_dice, box_iou, box_hd95, box_nsd and the box in image pixels, with point prompts
        the points and their labels in image pixels; masks, each lesion's predicted mask at its
        image's size, by lesion id.
    """
    by_id = {lesion.id: lesion for lesion in lesions}
    unit = surface_unit(lesions, units)

    def surface(truth, predicted, lesion):
        spacing = lesion.spacing if unit == "mm" else None
        scores = surface_scores(truth, predicted, spacing, nsd_tolerance)
        return scores.hd95, scores.nsd
    rows, masks = [], {}
    bar = tqdm(total=len(lesions), desc=description, unit="lesion", disable=not progress)
    for x, _ in dataset:
        x = dict(x)
        if "lesion_id" not in x:
            raise ValueError("evaluate_lesions needs a dataset built with with_ids=True")
        batch = [by_id[value.decode()] for value in x.pop("lesion_id").numpy()]
        result = postprocess_masks(model(x), image_sizes=[lesion.image_size for lesion in batch],
                                   processor=processor)
        boxes = x["input_boxes"].numpy() if "input_boxes" in x else None
        points = x["input_points"].numpy() if "input_points" in x else None
        for index, lesion in enumerate(batch):
            truth = load_target(lesion)
            mask = result.masks[index]
            row = {"id": lesion.id, "image": lesion.image_path, "mask": lesion.mask_path,
                   "label": lesion.label}
            if isinstance(lesion, ImageSample):  # an image's lesions together (no prompt)
                row["masks"] = list(lesion.mask_paths)
                row["lesions"] = len(lesion.mask_paths)
                row["predicted_area_share"] = float(mask.mean())
                row["predicts_lesion"] = bool(mask.mean() >= NO_LESION_AREA)
            row["dice"], row["iou"] = _scores(truth, mask)
            row["hd95"], row["nsd"] = surface(truth, mask, lesion)
            row["surface_unit"], row["nsd_tolerance"] = unit, nsd_tolerance
            row["predicted_iou"] = float(result.scores[index])
            if boxes is not None:
                box = to_image_coordinates(boxes[index], lesion.image_size, processor)
                filled = box_mask(box, lesion.image_size)
                row["box_dice"], row["box_iou"] = _scores(truth, filled)
                row["box_hd95"], row["box_nsd"] = surface(truth, filled, lesion)
                row["box"] = [round(float(v), 1) for v in box]
            if points is not None:
                coords = to_image_coordinates(points[index].reshape(-1, 2), lesion.image_size, processor)
                row["points"] = [[round(float(v), 1) for v in point] for point in coords]
                row["labels"] = [int(v) for v in x["input_labels"].numpy()[index].reshape(-1)]
            rows.append(row)
            masks[lesion.id] = mask
        bar.update(len(batch))
    bar.close()
    return rows, masks


def lesion_rows(rows):
    """The rows of samples with a lesion: those Dice and IoU are scored on (images without one
    have no outline to overlap; `summarize_no_prompt` counts them apart)."""
    return [row for row in rows if row.get("lesions", 1) > 0]


def summarize_no_prompt(rows):
    """Scores of a model prompted with nothing, one row per image (`evaluate_lesions` on
    keras_sam.data.ImageSample): {"dice": mean Dice over the images with a lesion (each image's
    lesions together), "images": their number}, and where the rows hold images without a lesion
    {"normal_correct": the share of them where the model predicts no lesion (NO_LESION_AREA),
    "normal_images": their number}.
    """
    scored = lesion_rows(rows)
    summary = {"dice": float(np.mean([row["dice"] for row in scored])) if scored else float("nan"),
               "images": len(scored)}
    normal = [row for row in rows if row.get("lesions", 1) == 0]
    if normal:
        summary["normal_correct"] = float(np.mean([not row["predicts_lesion"] for row in normal]))
        summary["normal_images"] = len(normal)
    return summary


def summarize(rows, prefix=""):
    """Means over lesions of `{prefix}dice` and `{prefix}iou`, overall and per class; where rows
    have surface metrics, also the mean and median of `{prefix}hd95` and `{prefix}nsd`, with their
    unit and the NSD tolerance.
    """
    surface = bool(rows) and all(f"{prefix}{name}" in row for row in rows for name in SURFACE_METRICS)

    def means(chosen):
        keys = ("dice", "iou") + (SURFACE_METRICS if surface else ())
        if not chosen:
            result = {key: float("nan") for key in keys}
        else:
            result = {key: float(np.mean([r[f"{prefix}{key}"] for r in chosen])) for key in keys}
        if surface:
            for key in SURFACE_METRICS:
                values = [r[f"{prefix}{key}"] for r in chosen]
                result[f"{key}_median"] = float(np.median(values)) if values else float("nan")
        return result

    summary = means(rows)
    if surface:
        summary["surface_unit"] = rows[0]["surface_unit"]
        summary["nsd_tolerance"] = rows[0]["nsd_tolerance"]
    summary["per_class"] = {label: means([r for r in rows if r["label"] == label])
                            for label in sorted({r["label"] for r in rows})}
    return summary


IMAGE_KEYS = ("pixel_values", "image_embeddings")


def evaluate_clicks(model, lesions, dataset, processor, max_clicks=DEFAULT_MAX_CLICKS, progress=True,
                    description="Simulating clicks"):
    """Dice after 1..K simulated corrective clicks of each lesion, at its image's resolution.

    The standard protocol (`keras_sam.common.clicks.simulate_clicks`): the first click positive
    at the lesion's interior-most pixel, each next at the interior-most pixel of the largest error
    region, positive on a missed part, negative on a false positive, with the previous mask's
    logits fed back as `input_masks`. The lesions of a batch are clicked together: one model call
    per click. Only the images of `dataset` are used (its prompts are ignored).

    Args:
        model: a SamSegmenter.
        lesions: the lesions `dataset` was built from.
        dataset: `build_dataset(lesions, processor, training=False, with_ids=True)`, any prompts.
        processor: the model's SamProcessor.
        max_clicks: clicks per lesion (K).

    Returns:
        {lesion id: (K,) array of Dice after 1..K clicks}, in the dataset's order.
    """
    by_id = {lesion.id: lesion for lesion in lesions}
    call = _traced_call(model)
    curves = {}
    bar = tqdm(total=len(lesions), desc=description, unit="lesion", disable=not progress)
    for x, _ in dataset:
        if "lesion_id" not in x:
            raise ValueError("evaluate_clicks needs a dataset built with with_ids=True")
        batch = [by_id[value.decode()] for value in x["lesion_id"].numpy()]
        image = {key: x[key] for key in IMAGE_KEYS if key in x}
        sizes = [lesion.image_size for lesion in batch]

        def predict(points, labels, previous):
            model_points = np.stack([to_model_coordinates(row, size, processor)
                                     for row, size in zip(points, sizes)])
            inputs = dict(image, input_points=model_points, input_labels=labels)
            if previous is not None:
                inputs["input_masks"] = previous
            result = postprocess_masks(call(inputs), image_sizes=sizes, processor=processor)
            return result.logits, result.masks

        truths = [load_target(lesion) for lesion in batch]
        result = simulate_clicks(predict, truths, max_clicks)
        for lesion, row in zip(batch, result.dice):
            curves[lesion.id] = row
        bar.update(len(batch))
    bar.close()
    return curves


def _traced_call(model):
    """`model(inputs)` compiled once per set of input names, for any batch size and number of
    points: eager, every click would pay Python for each op of the decoder.

    A model computing in TensorFlow (tf-keras, or Keras 3 on its TensorFlow backend) runs as a
    tf.function whose points and labels have no fixed length (left to find the shapes itself it
    would retrace as the clicks grow); a Keras 3 model on another backend through its own
    `predict_on_batch`, on NumPy inputs (a tf.function would hand JAX symbolic tensors).
    """
    import tensorflow as tf  # here: the Keras 3 family imports this module without TensorFlow

    if not _computes_in_tensorflow(model):
        return lambda inputs: model.predict_on_batch({name: np.asarray(value) for name, value in inputs.items()})
    functions = {}

    def call(inputs):
        inputs = {name: tf.convert_to_tensor(value) for name, value in inputs.items()}
        names = tuple(sorted(inputs))
        if names not in functions:
            spec = {name: tf.TensorSpec((None, None, *value.shape[2:]) if name in ("input_points", "input_labels")
                                        else (None, *value.shape[1:]), value.dtype)
                    for name, value in inputs.items()}
            functions[names] = tf.function(lambda x: model(x, training=False), input_signature=[spec],
                                           autograph=False)
        return functions[names](inputs)
    return call


def _computes_in_tensorflow(model):
    """Whether `model` is a tf-keras model or a Keras 3 model on the TensorFlow backend (looked up
    among the modules already imported: a process with one of them may lack the other)."""
    tf_keras, keras = sys.modules.get("tf_keras"), sys.modules.get("keras")
    if tf_keras is not None and isinstance(model, tf_keras.Model):
        return True
    return keras is not None and isinstance(model, keras.Model) and keras.backend.backend() == "tensorflow"


def add_click_columns(rows, curves):
    """Adds each lesion's click columns (dice_at_1/3/5, noc85, noc90) to its row, joined by id."""
    for row in rows:
        if row["id"] in curves:
            row.update(lesion_click_columns(curves[row["id"]]))
    return rows
