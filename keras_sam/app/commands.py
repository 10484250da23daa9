"""`keras-sam evaluate`, `keras-sam predict` and `keras-sam convert`."""

import json
import os

import numpy as np
from PIL import Image

from keras_sam.app.errors import UsageError
from keras_sam.app.report import best_and_worst_grid, write_lesion_csv
from keras_sam.app.run_directory import RunDirectory
from keras_sam.app.settings import DEFAULT_JITTER, load_segmenter
from keras_sam.data import (DataError, PromptOptions, apply_manifest, build_dataset, find_records,
                            load_image, read_lesions)
from keras_sam.evaluation import evaluate_lesions, summarize
from keras_sam.hub import load_tf_sam
from keras_sam.inference import PromptError, segment_image
from keras_sam.storage import write_json
from keras_sam.visualization import render_overlay


def run_evaluate(args):
    """Scores a saved model on a data folder (or a manifest's test split) at image resolution."""
    records = find_records(args.data, args.layout, args.mask_suffix)
    lesion_set = read_lesions(records, on_error="skip" if args.skip_bad_files else "raise",
                              require_spacing=args.units == "mm")
    lesions = lesion_set.lesions
    run = None
    if args.manifest:
        try:
            with open(args.manifest) as handle:
                manifest = json.load(handle)
            lesions = apply_manifest(manifest, lesions, args.data)["test"]
        except (OSError, ValueError, KeyError) as error:
            raise UsageError(f"--manifest {args.manifest} is not a keras-sam split manifest ({error})")
        run = RunDirectory(os.path.dirname(os.path.abspath(args.manifest))).settings()
    if not lesions:
        raise UsageError(f"no lesions to evaluate in {args.data}")
    # The run's own prompts by default: each lesion's jitter depends only on the seed and itself.
    seed = args.seed if args.seed is not None else (run.seed if run else 0)
    jitter = args.jitter if args.jitter is not None else (run.jitter if run else DEFAULT_JITTER)
    model = load_segmenter(args.model)
    dataset = build_dataset(lesions, model.processor, batch_size=args.batch_size, training=False,
                            seed=seed, prompts=PromptOptions("box", jitter=jitter), with_ids=True)
    rows, masks = evaluate_lesions(model, lesions, dataset, model.processor,
                                   nsd_tolerance=args.nsd_tolerance, units=args.units)
    os.makedirs(args.output, exist_ok=True)
    metrics = {"model": summarize(rows), "box_baseline": summarize(rows, prefix="box_"),
               "counts": lesion_set.counts()}
    write_json(os.path.join(args.output, "metrics.json"), metrics)
    write_lesion_csv(os.path.join(args.output, "lesions.csv"), rows)
    best_and_worst_grid(os.path.join(args.output, "best_worst.png"), rows, masks)
    print(f"{len(rows)} lesions: Dice {metrics['model']['dice']:.3f}, IoU {metrics['model']['iou']:.3f} "
          f"(prompt box alone: Dice {metrics['box_baseline']['dice']:.3f})")
    print(f"Results in {args.output}: metrics.json, lesions.csv, best_worst.png")
    return 0


def run_predict(args):
    """Masks at the image's own resolution for each prompt, from one image embedding."""
    if not args.box and not args.point:
        raise UsageError("predict needs at least one --box x0,y0,x1,y1 or --point x,y[,label]")
    if not os.path.exists(args.image):
        raise DataError(f"--image {args.image} does not exist")
    image = load_image(args.image)
    model = load_segmenter(args.model)
    points = [point[:2] for point in args.point]
    labels = [point[2] for point in args.point]
    try:
        result = segment_image(model, image, boxes=args.box, points=points, labels=labels)
    except PromptError as error:
        raise UsageError(f"--box/--point: {error}") from error
    os.makedirs(args.output, exist_ok=True)
    overlay = image
    predictions = []
    for row, (mask, score) in enumerate(zip(result.masks, result.scores)):
        name = f"mask_{row + 1}.png"
        Image.fromarray(mask.astype(np.uint8) * 255).save(os.path.join(args.output, name))
        box = args.box[row] if args.box else None
        overlay = render_overlay(overlay, predicted=mask, box=box, points=points or None,
                                 labels=labels or None)
        predictions.append({"mask": name, "box": box, "predicted_iou": float(score),
                            "area_pixels": int(mask.sum())})
    Image.fromarray(overlay).save(os.path.join(args.output, "overlay.png"))
    write_json(os.path.join(args.output, "predictions.json"), predictions)
    for prediction in predictions:
        print(f"{prediction['mask']}: {prediction['area_pixels']} pixels, "
              f"predicted IoU {prediction['predicted_iou']:.3f}")
    print(f"Masks and overlay.png in {args.output}")
    return 0


def run_convert(args):
    """A transformers SAM checkpoint to a Keras 3 model file (.keras), or back to a checkpoint folder."""
    try:
        import keras

        from keras_sam.keras3 import SamSegmenter as Keras3Segmenter
    except ImportError as error:  # the optional Keras 3 family
        raise UsageError("keras-sam convert needs Keras 3 and keras-hub: pip install 'keras-sam[keras3]' "
                         f"({error})") from error
    if args.source.endswith(".keras"):
        if not os.path.exists(args.source):
            raise UsageError(f"{args.source} does not exist")
        model = keras.models.load_model(args.source)
        if not isinstance(model, Keras3Segmenter):
            raise UsageError(f"{args.source} holds a {type(model).__name__}, not a keras-sam Keras 3 SamSegmenter")
    else:
        model = Keras3Segmenter.from_pretrained(args.source)
    if args.target.endswith(".keras"):
        model.save(args.target)
        print(f"Wrote the Keras 3 model {args.target} (keras.models.load_model reads it after import keras_sam.keras3).")
        return 0
    model.save_pretrained(args.target)
    # tf_model.h5 beside model.safetensors, through TFSamModel itself, so both readers find their format.
    load_tf_sam(args.target).save_pretrained(args.target)
    print(f"Wrote the transformers checkpoint {args.target} (model.safetensors and tf_model.h5).")
    return 0
