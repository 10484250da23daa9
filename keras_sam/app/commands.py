"""`keras-sam evaluate`, `keras-sam predict` and `keras-sam convert`."""

import json
import os

import numpy as np
from PIL import Image

from keras_sam.app.errors import UsageError
from keras_sam.app.report import best_and_worst_grid, click_curves_plot, write_lesion_csv
from keras_sam.app.defaults import DEFAULT_JITTER
from keras_sam.app.early_checks import image_paths
from keras_sam.app.model_source import load_segmenter, run_folder_of
from keras_sam.app.run_directory import RunDirectory
from keras_sam.data import (DataError, PromptOptions, apply_manifest, build_dataset, find_records,
                            image_samples, load_image, load_mask, normal_samples, read_lesions)
from keras_sam.common.clicks import DEFAULT_MAX_CLICKS, summarize_clicks
from keras_sam.common.evaluation import (add_click_columns, evaluate_clicks, evaluate_lesions, lesion_rows,
                                         summarize, summarize_no_prompt)
from keras_sam.common.hub import load_tf_sam
from keras_sam.common.inference import PromptError, check_prompts, segment_image
from keras_sam.common.postprocessing import probabilities_at_image_size
from keras_sam.common.storage import write_json
from keras_sam.common.trained_prompt import warn_if_not_trained_for_no_prompt
from keras_sam.common.visualization import render_overlay


def run_evaluate(args):
    """Scores a saved model at each image's resolution: a run's test split by default when the model
    comes from a run (or --manifest names one), every lesion in the folder otherwise."""
    model = load_segmenter(args.model)  # first: a model that cannot be loaded fails before any reading
    run_path = run_folder_of(args.model)
    manifest_path = args.manifest or (os.path.join(run_path, "split.json") if run_path else None)
    records = find_records(args.data, args.layout, args.mask_suffix)
    lesion_set = read_lesions(records, on_error="skip" if args.skip_bad_files else "raise",
                              require_spacing=args.units == "mm")
    lesions = lesion_set.lesions
    splits, run = None, None
    if manifest_path:
        splits = _read_manifest(manifest_path, lesions, args.data)
        run = RunDirectory(os.path.dirname(os.path.abspath(manifest_path))).settings()
    elif run_path:
        run = RunDirectory(run_path).settings()
    if args.all_lesions:  # the split then only says which of them the model was trained on
        seen = len(splits["train"]) + len(splits["val"]) if splits else 0
        if seen:
            print(f"warning: {seen} of the {len(lesions)} lesions scored were used in training "
                  f"(the train and val splits of {manifest_path}); their scores flatter the model.")
    elif splits:
        lesions = splits["test"]
        print(f"Scoring the {len(lesions)} test lesions of {manifest_path}.")
    else:
        print(f"warning: scoring every lesion in {args.data}: nothing says which ones {args.model} was "
              "trained on. Give --manifest RUN/split.json to score only a run's test split.")
    if not lesions:
        raise UsageError(f"no lesions to evaluate in {args.data}")
    # The run's own prompts by default: each lesion's jitter depends only on the seed and itself.
    seed = args.seed if args.seed is not None else (run.seed if run else 0)
    jitter = args.jitter if args.jitter is not None else (run.jitter if run else DEFAULT_JITTER)
    prompt = args.prompt or (run.prompt if run else "box")
    include_normal = args.include_normal if args.include_normal is not None else bool(
        run and run.include_normal and prompt == "none")
    if prompt == "none":  # the samples are images, each target all its lesions
        warn_if_not_trained_for_no_prompt(model.trained_prompt)
        lesions = _image_samples(lesions, lesion_set, include_normal, args.data,
                                 manifest_path if splits and not args.all_lesions else None)
        if include_normal and all(sample.has_lesion for sample in lesions):
            print("warning: --include-normal found no image without a lesion to score"
                  + (f" in the test split of {manifest_path} (its run was split without them; --all-lesions "
                     "scores every normal image in --data)" if splits and not args.all_lesions else f" in {args.data}"))
    elif include_normal:
        raise UsageError(f"--include-normal scores images without a lesion, which have no {prompt} prompt: "
                         "use it with --prompt none")
    clicks = args.clicks if args.clicks is not None else (DEFAULT_MAX_CLICKS if prompt == "clicks" else 0)
    if clicks and prompt == "none":
        raise UsageError(f"--clicks {clicks} scores each lesion by simulated clicks, --prompt none each image with "
                         "none: give one of them")
    # A clicks model's per-lesion scores are with its box; its clicks are scored by the simulated user.
    scored = PromptOptions("box" if prompt == "clicks" else prompt, jitter=jitter)
    dataset = build_dataset(lesions, model.processor, batch_size=args.batch_size, training=False,
                            seed=seed, prompts=scored, with_ids=True)
    rows, masks = evaluate_lesions(model, lesions, dataset, model.processor,
                                   nsd_tolerance=args.nsd_tolerance, units=args.units)
    os.makedirs(args.output, exist_ok=True)
    metrics = {"model": summarize(lesion_rows(rows))}
    if prompt == "none":
        metrics["model"]["no_prompt"] = summarize_no_prompt(rows)
    if clicks:
        curves = evaluate_clicks(model, lesions, dataset, model.processor, clicks)
        add_click_columns(rows, curves)
        metrics["model"]["clicks"] = summarize_clicks(list(curves.values()))
        click_curves_plot(os.path.join(args.output, "clicks.png"), {"model": metrics["model"]["clicks"]["dice_at"]})
    if scored.boxes:
        metrics["box_baseline"] = summarize(rows, prefix="box_")
    metrics["prompts"] = {"kind": prompt, "jitter": jitter, "seed": seed, **({"clicks": clicks} if clicks else {}),
                          **({"include_normal": True} if include_normal else {})}
    metrics["counts"] = {**scored_counts(lesions), "scored": "all lesions" if not splits or args.all_lesions
                         else "test split", "skipped_files": lesion_set.counts()["skipped_files"]}
    write_json(os.path.join(args.output, "metrics.json"), metrics)
    write_lesion_csv(os.path.join(args.output, "lesions.csv"), rows)
    best_and_worst_grid(os.path.join(args.output, "best_worst.png"), rows, masks)
    baseline = (f" (prompt box alone: Dice {metrics['box_baseline']['dice']:.3f})"
                if "box_baseline" in metrics else "")
    model_scores = metrics["model"]
    surface = (f", HD95 {model_scores['hd95_median']:.2f} {model_scores['surface_unit']} (median), NSD "
               f"{model_scores['nsd']:.3f} at {model_scores['nsd_tolerance']:g} {model_scores['surface_unit']}"
               if "hd95_median" in model_scores else "")
    normal = (f"; images without a lesion left empty: {model_scores['no_prompt']['normal_correct']:.3f} of "
              f"{model_scores['no_prompt']['normal_images']}" if "normal_correct" in model_scores.get("no_prompt", {})
              else "")
    print(f"{len(rows)} {'images, no prompt' if prompt == 'none' else f'lesions, {scored.kind} prompts'}: Dice "
          f"{model_scores['dice']:.3f}, IoU {model_scores['iou']:.3f}{surface}{baseline}{normal}")
    if clicks:
        scores = metrics["model"]["clicks"]
        at = ", ".join(f"{k} {scores['dice_at'][k - 1]:.3f}" for k in (1, 3, 5, 10, 20) if k <= clicks)
        print(f"Simulated clicks: Dice after {at} clicks; NoC@85 {scores['noc85']:.2f}, NoC@90 "
              f"{scores['noc90']:.2f} (at most {clicks})")
    print(f"Results in {args.output}: metrics.json, lesions.csv, best_worst.png"
          + (", clicks.png" if clicks else ""))
    return 0


def _image_samples(lesions, lesion_set, include_normal, data, manifest_path):
    """The lesions to score as no-prompt samples, one per image; with `include_normal` the normal
    images beside them (those of the manifest's test split, when one is given)."""
    samples = image_samples(lesions)
    if include_normal:
        normal = normal_samples(lesion_set, data)
        if manifest_path:
            normal = _read_manifest(manifest_path, normal, data)["test"]
        samples += normal
    return samples


def _read_manifest(path, lesions, data):
    try:
        with open(path) as handle:
            manifest = json.load(handle)
        return apply_manifest(manifest, lesions, data)
    except (OSError, ValueError, KeyError) as error:
        raise UsageError(f"--manifest {path} is not a keras-sam split manifest ({error})") from error


def scored_counts(lesions):
    """Per-class numbers of the images and lesions scored."""
    per_class = {}
    for label in sorted({lesion.label for lesion in lesions}):
        chosen = [lesion for lesion in lesions if lesion.label == label]
        per_class[label] = {"images": len({lesion.image_path for lesion in chosen}), "lesions": len(chosen)}
    return {"lesions": len(lesions), "images": len({lesion.image_path for lesion in lesions}),
            "per_class": per_class}


def run_predict(args):
    """Masks at each image's own resolution for each prompt, from one image embedding an image."""
    paths = image_paths(args.image)
    images = []
    previous = load_mask(args.mask_input) if args.mask_input else None
    for path in paths:  # every prompt checked on every image before anything is written
        image = load_image(path)
        try:
            check_prompts(image.shape[:2], args.box, [p[:2] for p in args.point], [p[2] for p in args.point])
            if previous is not None and previous.shape != image.shape[:2]:
                raise PromptError(f"--mask-input {args.mask_input} is {previous.shape[1]}x{previous.shape[0]} but "
                                  f"the image is {image.shape[1]}x{image.shape[0]}: give the mask predict wrote "
                                  "for this image (mask_*.png)")
        except PromptError as error:
            if len(paths) == 1:
                raise UsageError(f"{path}: {error}") from error
            print(f"warning: {path} left out: {error}")
            continue
        images.append((path, image))
    if not images:
        raise UsageError(f"--box/--point fit none of the {len(paths)} images (see the warnings above)")
    if previous is not None and not args.point and not args.box:
        print(f"warning: --mask-input {args.mask_input} with no --point or --box prompts with the previous mask "
              "alone, which SAM was not trained for; give it with the clicks that go with it (--point x,y,label)")
    paths = [path for path, _ in images]
    model = load_segmenter(args.model)
    model.multimask_output = args.multimask
    names = _output_names(paths)
    for (path, image), name in zip(images, names):
        folder = os.path.join(args.output, name) if name else args.output
        _predict_one(model, path, image, folder, args)
    print(f"Masks and overlay.png in {args.output}" + (" (a folder per image)" if len(paths) > 1 else ""))
    return 0


def _output_names(paths):
    """A subfolder name per image (none for a single image), unique even for equal file names."""
    if len(paths) == 1:
        return [""]
    names, seen = [], set()
    for path in paths:
        stem = os.path.splitext(os.path.basename(path))[0]
        name, count = stem, 1
        while name in seen:
            count += 1
            name = f"{stem}-{count}"
        seen.add(name)
        names.append(name)
    return names


def _predict_one(model, path, image, folder, args):
    points = [point[:2] for point in args.point]
    labels = [point[2] for point in args.point]
    previous = load_mask(args.mask_input, image.shape[:2]) if args.mask_input else None
    result = segment_image(model, image, boxes=args.box, points=points, labels=labels, mask_input=previous,
                           best=not args.multimask)
    os.makedirs(folder, exist_ok=True)
    overlay = image
    predictions = []
    for row, (masks, scores) in enumerate(zip(result.masks, result.scores)):
        masks, scores = (masks, scores) if args.multimask else (masks[None], np.atleast_1d(scores))
        best = int(np.argmax(scores))
        prompt = {"box": args.box[row] if args.box else None, "points": points or None,
                  "labels": labels or None, "mask_input": args.mask_input}
        prediction = {"image": path, "mask": f"mask_{row + 1}.png", **prompt,
                      "predicted_iou": float(scores[best]), "area_pixels": int(masks[best].sum())}
        _save_mask(masks[best], os.path.join(folder, prediction["mask"]))
        if args.multimask:
            probabilities = probabilities_at_image_size(result.logits[row], image.shape[:2], model.processor)
            prediction["candidates"] = []
            for index, (mask, score) in enumerate(zip(masks, scores)):
                stem = f"mask_{row + 1}_candidate_{index + 1}"
                _save_mask(mask, os.path.join(folder, f"{stem}.png"))
                Image.fromarray(np.round(probabilities[index] * 255).astype(np.uint8)).save(
                    os.path.join(folder, f"{stem}_probability.png"))
                prediction["candidates"].append({"mask": f"{stem}.png", "probability": f"{stem}_probability.png",
                                                 "predicted_iou": float(score), "area_pixels": int(mask.sum())})
        overlay = render_overlay(overlay, predicted=masks[best], box=prompt["box"], points=points or None,
                                 labels=labels or None, previous=previous)
        predictions.append(prediction)
    Image.fromarray(overlay).save(os.path.join(folder, "overlay.png"))
    write_json(os.path.join(folder, "predictions.json"), predictions)
    for prediction in predictions:
        print(f"{os.path.basename(path)}: {prediction['mask']}: {prediction['area_pixels']} pixels, "
              f"predicted IoU {prediction['predicted_iou']:.3f}")


def _save_mask(mask, path):
    Image.fromarray(mask.astype(np.uint8) * 255).save(path)


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
