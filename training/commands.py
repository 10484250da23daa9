"""`keras-sam evaluate` and `keras-sam predict`."""

import json
import os

import numpy as np
from PIL import Image

from training.cli import DEFAULT_JITTER, UsageError


def run_evaluate(args):
    """Scores a saved model on a data folder (or a manifest's test split) at image resolution."""
    from tqdm.auto import tqdm

    from keras_sam import processor_for_config
    from training.datasets import find_records, read_lesions
    from training.evaluate import (best_and_worst_grid, evaluate_lesions, summarize, write_json,
                                   write_lesion_csv)
    from training.models import load_segmenter
    from training.pipeline import build_dataset
    from training.splits import apply_manifest

    records = find_records(args.data, args.layout, args.mask_suffix)
    lesion_set = read_lesions(records, on_error="skip" if args.skip_bad_files else "raise",
                              progress=lambda items: tqdm(items, desc="Checking data", unit="image"))
    lesions = lesion_set.lesions
    if args.manifest:
        try:
            with open(args.manifest) as handle:
                manifest = json.load(handle)
            lesions = apply_manifest(manifest, lesions, args.data)["test"]
        except (OSError, ValueError, KeyError) as error:
            raise UsageError(f"--manifest {args.manifest} is not a keras-sam split manifest ({error})")
    if not lesions:
        raise UsageError(f"no lesions to evaluate in {args.data}")
    run = _run_settings_beside(args.manifest)
    seed = args.seed if args.seed is not None else run.get("seed", 0)
    jitter = args.jitter if args.jitter is not None else run.get("jitter", DEFAULT_JITTER)
    model = load_segmenter(args.model)
    processor = processor_for_config(model.sam.config)
    dataset = build_dataset(lesions, processor, model.sam.config, batch_size=args.batch_size,
                            shuffle=False, fixed_prompts=True, seed=seed, jitter=jitter)
    rows = evaluate_lesions(model, lesions, dataset, processor)
    os.makedirs(args.output, exist_ok=True)
    metrics = {"model": summarize(rows), "box_baseline": summarize(rows, prefix="box_"),
               "counts": lesion_set.counts()}
    write_json(os.path.join(args.output, "metrics.json"), metrics)
    write_lesion_csv(os.path.join(args.output, "lesions.csv"), rows)
    best_and_worst_grid(os.path.join(args.output, "best_worst.png"), rows, model, dataset, processor)
    print(f"{len(rows)} lesions: Dice {metrics['model']['dice']:.3f}, IoU {metrics['model']['iou']:.3f} "
          f"(prompt box alone: Dice {metrics['box_baseline']['dice']:.3f})")
    print(f"Results in {args.output}: metrics.json, lesions.csv, best_worst.png")
    return 0


def _run_settings_beside(manifest):
    """The settings of the finetune run that wrote `manifest` (its run.json), or {}."""
    path = os.path.join(os.path.dirname(os.path.abspath(manifest)), "run.json") if manifest else None
    if not path or not os.path.exists(path):
        return {}
    with open(path) as handle:
        return json.load(handle)


def prompt_rows(boxes, points, original_size, processor):
    """SamSegmenter inputs for one image's prompts: a row per box (points join each box), or one
    row of all the points. Coordinates go from image pixels to the model's input pixels."""
    from keras_sam.preprocessing import to_model_coordinates

    height, width = original_size
    for x0, y0, x1, y1 in boxes:
        if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
            raise UsageError(f"--box {x0:g},{y0:g},{x1:g},{y1:g} reaches outside the {width}x{height} image")
    for x, y, _ in points:
        if not (0 <= x < width and 0 <= y < height):
            raise UsageError(f"--point {x:g},{y:g} is outside the {width}x{height} image")
    rows = max(len(boxes), 1)
    inputs = {}
    if boxes:
        inputs["input_boxes"] = to_model_coordinates(boxes, original_size, processor)
    if points:
        coords = to_model_coordinates([p[:2] for p in points], original_size, processor)
        inputs["input_points"] = np.repeat(coords[None], rows, axis=0)
        inputs["input_labels"] = np.repeat(np.array([[p[2] for p in points]], np.int32), rows, axis=0)
    return inputs, rows


def run_predict(args):
    """Masks at the image's own resolution for each prompt, from one image embedding."""
    from keras_sam import processor_for_config
    from keras_sam.preprocessing import masks_at_image_size, preprocess_image
    from keras_sam.segmenter import best_mask_logits
    from keras_sam.visualization import render_overlay
    from training.datasets import DataError, load_image
    from training.evaluate import write_json
    from training.models import load_segmenter

    if not args.box and not args.point:
        raise UsageError("predict needs at least one --box x0,y0,x1,y1 or --point x,y[,label]")
    if not os.path.exists(args.image):
        raise DataError(f"--image {args.image} does not exist")
    image = load_image(args.image)
    model = load_segmenter(args.model)
    processor = processor_for_config(model.sam.config)
    inputs, rows = prompt_rows(args.box, args.point, image.shape[:2], processor)
    embedding = model.image_embeddings(preprocess_image(image, processor)[None]).numpy()
    inputs["image_embeddings"] = np.repeat(embedding, rows, axis=0)  # one embedding, every prompt
    output = model.segment(inputs)
    logits = best_mask_logits(output).numpy()
    scores = output.iou_scores.numpy().max(axis=1)
    os.makedirs(args.output, exist_ok=True)
    overlay = image
    results = []
    for row in range(rows):
        mask = masks_at_image_size(logits[row][None], image.shape[:2], processor)[0]
        name = f"mask_{row + 1}.png"
        Image.fromarray(mask.astype(np.uint8) * 255).save(os.path.join(args.output, name))
        box = args.box[row] if args.box else None
        points = np.array([p[:2] for p in args.point]) if args.point else None
        labels = [p[2] for p in args.point] if args.point else None
        overlay = render_overlay(overlay, predicted=mask, box=box, points=points, labels=labels)
        results.append({"mask": name, "box": box, "predicted_iou": float(scores[row]),
                        "area_pixels": int(mask.sum())})
    Image.fromarray(overlay).save(os.path.join(args.output, "overlay.png"))
    write_json(os.path.join(args.output, "predictions.json"), results)
    for result in results:
        print(f"{result['mask']}: {result['area_pixels']} pixels, predicted IoU {result['predicted_iou']:.3f}")
    print(f"Masks and overlay.png in {args.output}")
    return 0
