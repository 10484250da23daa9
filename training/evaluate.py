"""Evaluation at the image's own resolution: per-lesion Dice and IoU for a model and for its prompt
box, summaries per class, the per-lesion CSV and a grid of the best and worst cases."""

import csv
import json
import os

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from keras_sam.metrics import dice_per_sample, iou_per_sample
from keras_sam.preprocessing import masks_at_image_size, to_image_coordinates
from keras_sam.segmenter import best_mask_logits
from keras_sam.visualization import render_overlay, tile
from training.datasets import load_image, load_mask


def _scores(truth, predicted):
    truth, predicted = truth[None], predicted[None]
    return float(dice_per_sample(truth, predicted)[0]), float(iou_per_sample(truth, predicted)[0])


def evaluate_lesions(model, lesions, dataset, processor, progress=True, description="Evaluating"):
    """Scores each lesion's predicted mask and its prompt box against the true mask.

    Args:
        model: a SamSegmenter.
        lesions: the lesions, in the order `dataset` yields them (build it with shuffle=False).
        dataset: batched (x, y) dataset of those lesions with box prompts.
        processor: the model's SamProcessor.

    Returns:
        A list of dicts, one per lesion: image, mask, label, dice, iou, box_dice, box_iou,
        predicted_iou, and the prompt box in image pixels.
    """
    rows = []
    bar = tqdm(total=len(lesions), desc=description, unit="lesion", disable=not progress)
    lesion_iter = iter(lesions)
    for x, _ in dataset:
        output = model.segment(x)
        logits = best_mask_logits(output).numpy()
        predicted_iou = output.iou_scores.numpy().max(axis=1)
        boxes = x["input_boxes"].numpy() if "input_boxes" in x else None
        for index in range(len(logits)):
            lesion = next(lesion_iter)
            truth = load_mask(lesion.mask_path, lesion.image_size)
            mask = masks_at_image_size(logits[index][None], lesion.image_size, processor)[0]
            row = {"image": lesion.image_path, "mask": lesion.mask_path, "label": lesion.label}
            row["dice"], row["iou"] = _scores(truth, mask)
            row["predicted_iou"] = float(predicted_iou[index])
            if boxes is not None:
                box = to_image_coordinates(boxes[index], lesion.image_size, processor)
                row["box_dice"], row["box_iou"] = _scores(truth, _filled(box, lesion.image_size))
                row["box"] = [round(float(v), 1) for v in box]
            rows.append(row)
            bar.update(1)
    bar.close()
    return rows


def _filled(box, image_size):
    height, width = image_size
    x0, y0, x1, y1 = np.round(box).astype(int)
    mask = np.zeros((height, width), bool)
    mask[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = True
    return mask


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


def write_json(path, payload):
    """Writes JSON under a temporary name, then renames it into place."""
    temporary = f"{path}.tmp"
    with open(temporary, "w") as handle:
        json.dump(payload, handle, indent=2)
    os.replace(temporary, path)


def write_lesion_csv(path, rows):
    """One line per lesion: paths, class, Dice and IoU of the model and of the prompt box."""
    columns = ["image", "mask", "label", "dice", "iou", "predicted_iou", "box_dice", "box_iou", "box"]
    temporary = f"{path}.tmp"
    with open(temporary, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(temporary, path)


def best_and_worst_grid(path, rows, model, dataset, processor, count=4, side=256):
    """Saves a PNG: the `count` best cases on the top row, the `count` worst below, by Dice."""
    if not rows:
        return
    order = np.argsort([row["dice"] for row in rows])
    chosen = list(order[::-1][:count]) + list(order[:count])
    predictions = {}
    flat = dataset.unbatch()
    for index, (x, _) in enumerate(flat):
        if index in chosen:
            logits = best_mask_logits(model.segment({k: v[None] for k, v in x.items()})).numpy()
            predictions[index] = logits[0]
    panels = []
    for index in chosen:
        row = rows[index]
        image = load_image(row["image"])
        size = image.shape[:2]
        mask = masks_at_image_size(predictions[index][None], size, processor)[0]
        truth = load_mask(row["mask"], size)
        overlay = render_overlay(image, mask, truth, row.get("box"),
                                 text=f"{row['label']} Dice {row['dice']:.3f}")
        panels.append(_fit_square(overlay, side))
    Image.fromarray(tile(panels, columns=min(count, len(panels)))).save(path)


def _fit_square(image, side):
    picture = Image.fromarray(image)
    picture.thumbnail((side, side))
    canvas = Image.new("RGB", (side, side))
    canvas.paste(picture, ((side - picture.width) // 2, (side - picture.height) // 2))
    return np.asarray(canvas)


def summary_table(metrics, splits=("val", "test")):
    """The closing table: Dice and IoU of each metrics row for each split."""
    lines = [f"{'':14}" + "".join(f"{split + ' dice':>12}{split + ' iou':>11}" for split in splits)]
    for row in ("finetuned", "before", "box_baseline"):
        if not all(row in metrics.get(split, {}) for split in splits):
            continue
        cells = "".join(f"{metrics[split][row]['dice']:12.3f}{metrics[split][row]['iou']:11.3f}"
                        for split in splits)
        lines.append(f"{row:14}{cells}")
    return "\n".join(lines)
