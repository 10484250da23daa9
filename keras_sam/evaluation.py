"""Scores at each image's own resolution: per-lesion Dice and IoU of a model and of its prompt box.

The Keras metrics score masks on the logits grid, where padding and resizing blur small lesions;
these are the numbers to report. Results are joined to lesions by their id, never by position.
"""

import numpy as np
from tqdm.auto import tqdm

from keras_sam.data.readers import load_mask
from keras_sam.geometry import box_mask, to_image_coordinates
from keras_sam.objectives import dice_per_sample, iou_per_sample
from keras_sam.postprocessing import postprocess_masks


def _scores(truth, predicted):
    truth, predicted = truth[None], predicted[None]
    return float(dice_per_sample(truth, predicted)[0]), float(iou_per_sample(truth, predicted)[0])


def evaluate_lesions(model, lesions, dataset, processor, progress=True, description="Evaluating"):
    """Scores each lesion's predicted mask and its prompt box against the true mask.

    Args:
        model: a SamSegmenter.
        lesions: the lesions `dataset` was built from.
        dataset: `build_dataset(lesions, processor, training=False, with_ids=True)`, with box
            prompts for the box baseline.
        processor: the model's SamProcessor.
        progress: show a progress bar.

    Returns:
        (rows, masks): rows, a list of dicts in the dataset's order, one per lesion: id, image,
        mask, label, dice, iou, predicted_iou (in [0, 1]), with box prompts box_dice, box_iou and
        the box in image pixels, with point prompts the points and their labels in image pixels; masks, each lesion's predicted mask at its image's size, by lesion id.
    """
    by_id = {lesion.id: lesion for lesion in lesions}
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
            truth = load_mask(lesion.mask_path, lesion.image_size)
            mask = result.masks[index]
            row = {"id": lesion.id, "image": lesion.image_path, "mask": lesion.mask_path,
                   "label": lesion.label}
            row["dice"], row["iou"] = _scores(truth, mask)
            row["predicted_iou"] = float(result.scores[index])
            if boxes is not None:
                box = to_image_coordinates(boxes[index], lesion.image_size, processor)
                row["box_dice"], row["box_iou"] = _scores(truth, box_mask(box, lesion.image_size))
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


def summarize(rows, prefix=""):
    """Means over lesions of `{prefix}dice` and `{prefix}iou`, overall and per class."""
    def means(chosen):
        if not chosen:
            return {"dice": float("nan"), "iou": float("nan")}
        return {"dice": float(np.mean([r[f"{prefix}dice"] for r in chosen])),
                "iou": float(np.mean([r[f"{prefix}iou"] for r in chosen]))}

    summary = means(rows)
    summary["per_class"] = {label: means([r for r in rows if r["label"] == label])
                            for label in sorted({r["label"] for r in rows})}
    return summary
