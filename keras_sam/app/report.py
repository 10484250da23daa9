"""What a run or an evaluation leaves to read: the per-lesion CSV, the best/worst grid, the table."""

import csv
import os

import numpy as np
from PIL import Image

from keras_sam.data.readers import load_image, load_mask
from keras_sam.common.storage import atomic_file
from keras_sam.common.visualization import click_curves_figure, figure_to_array, render_overlay, tile

CSV_COLUMNS = ["image", "mask", "label", "dice", "iou", "predicted_iou", "box_dice", "box_iou", "box", "points",
               "labels", "hd95", "nsd", "box_hd95", "box_nsd", "surface_unit", "nsd_tolerance"]
NO_PROMPT_COLUMNS = ["lesions", "predicted_area_share", "predicts_lesion"]
CLICK_COLUMNS = ["dice_at_1", "dice_at_3", "dice_at_5", "noc85", "noc90"]


def write_lesion_csv(path, rows):
    """One line per lesion: paths, class, Dice, IoU, HD95 and NSD of the model and of the prompt box,
    the unit of HD95 and of the NSD tolerance, and the prompts; for whole images scored with no
    prompt, their lesion count, the share of the image predicted and whether that counts as a lesion
    (NO_PROMPT_COLUMNS); where clicks were simulated, Dice after 1, 3 and 5 clicks and NoC@85/90
    (CLICK_COLUMNS). The optional columns appear only when the rows carry them."""
    with atomic_file(path, newline="") as handle:
        optional = [name for name in NO_PROMPT_COLUMNS + CLICK_COLUMNS if rows and any(name in row for row in rows)]
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS + optional, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def best_and_worst_grid(path, rows, masks, count=4, side=256):
    """Saves a PNG: the `count` best cases on the top row, the `count` worst below, by Dice, each
    panel labelled with its rank ("best 1", "worst 1" the lowest), class and Dice.

    Args:
        path: the PNG to write.
        rows, masks: what `keras_sam.common.evaluation.evaluate_lesions` returned.
    """
    if not rows:
        return
    order = np.argsort([row["dice"] for row in rows])
    chosen = list(order[::-1][:count]) + list(order[:count])
    shown = min(count, len(rows))
    ranks = [f"best {rank}" for rank in range(1, shown + 1)] + [f"worst {rank}" for rank in range(1, shown + 1)]
    panels = []
    for index, rank in zip(chosen, ranks):
        row = rows[index]
        image = load_image(row["image"])
        truth = np.zeros(image.shape[:2], bool)
        for mask_path in row.get("masks", [row["mask"]]):  # an image's lesions together (no prompt)
            truth |= load_mask(mask_path, image.shape[:2])
        overlay = render_overlay(image, masks[row["id"]], truth, row.get("box"), points=row.get("points"),
                                 labels=row.get("labels"), text=f"{rank}: {row['label']} Dice {row['dice']:.3f}")
        panels.append(_fit_square(overlay, side))
    with atomic_file(path, "wb") as handle:
        Image.fromarray(tile(panels, columns=min(count, len(panels)))).save(handle, format="PNG")


def click_curves_plot(path, curves):
    """Saves Dice against clicks as a PNG: {name: [mean Dice after 1..K clicks]}, one line each."""
    with atomic_file(path, "wb") as handle:
        Image.fromarray(figure_to_array(click_curves_figure(curves))).save(handle, format="PNG")


def click_curves_to_tensorboard(logdir, curves, tag="test_dice_after_clicks"):
    """Writes Dice against clicks to TensorBoard: one run per curve (logdir/clicks/<name>), the
    click count as the step, so SCALARS draws the curves side by side in one chart."""
    import tensorflow as tf

    for name, dice in curves.items():
        writer = tf.summary.create_file_writer(os.path.join(logdir, "clicks", name))
        with writer.as_default():
            for clicks, value in enumerate(dice, start=1):
                tf.summary.scalar(tag, float(value), step=clicks)
        writer.close()


def _fit_square(image, side):
    picture = Image.fromarray(image)
    picture.thumbnail((side, side))
    canvas = Image.new("RGB", (side, side))
    canvas.paste(picture, ((side - picture.width) // 2, (side - picture.height) // 2))
    return np.asarray(canvas)


def summary_table(metrics, splits=("val", "test")):
    """The closing table: Dice and IoU of each metrics row for each split, then (where computed)
    median HD95 and mean NSD."""
    lines = [f"{'':14}" + "".join(f"{split + ' dice':>12}{split + ' iou':>11}" for split in splits)]
    for row in ("finetuned", "before", "box_baseline"):
        if not all(row in metrics.get(split, {}) for split in splits):
            continue
        cells = "".join(f"{metrics[split][row]['dice']:12.3f}{metrics[split][row]['iou']:11.3f}"
                        for split in splits)
        lines.append(f"{row:14}{cells}")
    surface = _surface_table(metrics, splits)
    return "\n".join(lines + ([""] + surface if surface else []) + _normal_table(metrics, splits)
                     + _clicks_table(metrics))


def _normal_table(metrics, splits):
    """With --prompt none --include-normal: the share of images without a lesion left empty."""
    rows = [row for row in ("finetuned", "before")
            if all("normal_correct" in metrics.get(split, {}).get(row, {}).get("no_prompt", {}) for split in splits)]
    if not rows:
        return []
    lines = ["", "Images without a lesion where the model predicts none (share, no prompt)",
             f"{'':14}" + "".join(f"{split + ' normal':>12}{'images':>11}" for split in splits)]
    for row in rows:
        cells = "".join(f"{metrics[split][row]['no_prompt']['normal_correct']:12.3f}"
                        f"{metrics[split][row]['no_prompt']['normal_images']:11d}" for split in splits)
        lines.append(f"{row:14}{cells}")
    return lines


def _clicks_table(metrics):
    """Test Dice after 1, 3 and 5 simulated clicks and NoC@85/90, where clicks were scored."""
    rows = [row for row in ("finetuned", "before") if "clicks" in metrics.get("test", {}).get(row, {})]
    if not rows:
        return []
    lines = ["", "Simulated corrective clicks on the test lesions (NoC: clicks to reach Dice 0.85/0.90, "
             f"at most {len(metrics['test'][rows[0]]['clicks']['dice_at'])})",
             f"{'':14}{'dice@1':>9}{'dice@3':>9}{'dice@5':>9}{'noc85':>8}{'noc90':>8}"]
    for row in rows:
        clicks = metrics["test"][row]["clicks"]
        dice = [clicks["dice_at"][k - 1] if k <= len(clicks["dice_at"]) else float("nan") for k in (1, 3, 5)]
        lines.append(f"{row:14}" + "".join(f"{value:9.3f}" for value in dice)
                     + f"{clicks['noc85']:8.2f}{clicks['noc90']:8.2f}")
    return lines


def _surface_table(metrics, splits):
    rows = [row for row in ("finetuned", "before", "box_baseline")
            if all("hd95_median" in metrics.get(split, {}).get(row, {}) for split in splits)]
    if not rows:
        return []
    first = metrics[splits[0]][rows[0]]
    unit, tolerance = first["surface_unit"], first["nsd_tolerance"]
    lines = [f"HD95: median over lesions, in {unit}; NSD: mean, at a tolerance of {tolerance:g} {unit}",
             f"{'':14}" + "".join(f"{split + ' hd95':>12}{split + ' nsd':>11}" for split in splits)]
    for row in rows:
        cells = "".join(f"{metrics[split][row]['hd95_median']:12.2f}{metrics[split][row]['nsd']:11.3f}"
                        for split in splits)
        lines.append(f"{row:14}{cells}")
    return lines
