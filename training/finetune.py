"""`keras-sam finetune`: from a data folder to a fine-tuned model, its logs, overlays and metrics.

Run directory (--output):
    run.json               the command's settings (the same command re-run resumes the run)
    split.json             the train / val / test manifest
    data/                  the generated phantoms (--demo only)
    embedding-cache/       image embeddings of the frozen vision encoder
    logs/                  TensorBoard: scalars (train, validation) and mask overlays
    checkpoints/           the best weights so far, by validation Dice
    backup/                model, optimizer and epoch count after each epoch (for resuming)
    training.csv           one line per epoch
    model/                 the fine-tuned model (save_pretrained; TFSamModel.from_pretrained reads it)
    metrics.json           Dice and IoU: fine-tuned, before fine-tuning, and the prompt box itself
    test_lesions.csv, best_worst.png
"""

import csv
import json
import os
import shutil
import tempfile

import tensorflow as tf
import tf_keras as keras
from tqdm.auto import tqdm

from keras_sam import processor_for_config
from keras_sam.callbacks import (MaskOverlayCallback, NonFiniteLossError, StopOnNonFiniteLoss,
                                 pixels_to_image)
from keras_sam.embeddings import EmbeddingCache
from keras_sam.losses import get_loss
from keras_sam.preprocessing import preprocess_image
from keras_sam.segmenter import COMPONENTS
from training.cli import (DEFAULT_JITTER, DEFAULT_LEARNING_RATE, DEMO_EPOCHS, DEMO_JITTER,
                          DEMO_LEARNING_RATE, TrainingStopped, UsageError)
from training.datasets import DataError, find_records, load_image, read_lesions
from training.evaluate import (best_and_worst_grid, evaluate_lesions, summarize, summary_table,
                               write_json, write_lesion_csv)
from training.models import load_segmenter
from training.phantoms import write_busi_phantoms
from training.pipeline import build_dataset, cache_embeddings, steps_per_epoch
from training.resume import EpochBackup
from training.splits import split_lesions, write_manifest

DEFAULT_EPOCHS = 10
RUN_FILE = "run.json"
OVERLAY_SAMPLES = 8
SETTINGS = ("demo", "data", "model", "layout", "mask_suffix", "epochs", "batch_size", "lr", "freeze",
            "prompt", "val_split", "test_split", "seed", "loss", "jitter", "no_embedding_cache",
            "precision", "jit_compile", "skip_bad_files")


def resolve_settings(args):
    """Fills defaults (the demo's own), checks combinations; returns the run's settings dict."""
    settings = {name: getattr(args, name) for name in SETTINGS}
    if args.demo:
        if args.data:
            raise UsageError("--demo generates its own data; drop --data (or drop --demo)")
        settings["model"] = settings["model"] or "tiny"
        settings["epochs"] = settings["epochs"] or DEMO_EPOCHS
        args.output = args.output or "keras-sam-demo"
    else:
        missing = [flag for flag, value in (("--data", args.data), ("--model", args.model),
                                            ("--output", args.output)) if not value]
        if missing:
            raise UsageError(f"finetune needs {', '.join(missing)} (or --demo for an offline demo)")
        if not os.path.isdir(args.data):
            raise UsageError(f"--data {args.data} is not a folder")
        if not os.listdir(args.data):
            raise UsageError(f"--data {args.data} is empty")
        settings["data"] = os.path.abspath(args.data)
        settings["epochs"] = settings["epochs"] or DEFAULT_EPOCHS
    if settings["jit_compile"] is None:
        settings["jit_compile"] = settings["model"] != "tiny"
    if settings["jitter"] is None:
        settings["jitter"] = DEMO_JITTER if args.demo else DEFAULT_JITTER
    if settings["jitter"] < 0:
        raise UsageError(f"--jitter must be >= 0 pixels; got {settings['jitter']}")
    if settings["lr"] is None:
        settings["lr"] = DEMO_LEARNING_RATE if settings["model"] == "tiny" else DEFAULT_LEARNING_RATE
    if settings["val_split"] + settings["test_split"] >= 1:
        raise UsageError(
            f"--val-split {settings['val_split']} and --test-split {settings['test_split']} sum to "
            "1 or more: nothing is left to train on")
    if settings["val_split"] == 0:
        raise UsageError("--val-split 0 leaves no validation lesions to choose the best checkpoint on")
    if settings["precision"] == "mixed_bfloat16" and (
            settings["no_embedding_cache"] or "vision_encoder" not in settings["freeze"].split(",")):
        raise UsageError("--precision mixed_bfloat16 applies to the embedding cache: it needs the "
                         "vision encoder frozen and no --no-embedding-cache")

    freeze = [name for name in settings["freeze"].split(",") if name]
    unknown = [name for name in freeze if name not in COMPONENTS]
    if unknown:
        raise UsageError(f"--freeze {','.join(unknown)} is not a component; choose from {', '.join(COMPONENTS)}")
    return settings


def prepare_output(output, settings, overwrite):
    """Decides what --output holds: 'new', 'resume' or 'complete'; refuses a different run."""
    if not os.path.exists(output) or (os.path.isdir(output) and not os.listdir(output)):
        return "new"
    if not os.path.isdir(output):
        raise UsageError(f"--output {output} is a file, not a folder")
    run_file = os.path.join(output, RUN_FILE)
    previous = None
    if os.path.exists(run_file):
        with open(run_file) as handle:
            previous = json.load(handle)
    if previous == settings:
        return "complete" if os.path.exists(os.path.join(output, "metrics.json")) else "resume"
    if not overwrite:
        what = "a different keras-sam run" if previous is not None else "other files"
        raise UsageError(f"--output {output} holds {what}; choose another folder or pass --overwrite")
    shutil.rmtree(output)
    return "new"


def make_strategy(name):
    """The tf.distribute strategy for --strategy; created before any other TensorFlow work."""

    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        if not os.environ.get("TF_CONFIG"):
            raise UsageError("--strategy multiworker needs TF_CONFIG describing the cluster "
                             "(see the README's 'Several machines' section)")
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def _is_chief():
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = config.get("task", {})
    return task.get("type", "worker") in ("chief", "worker") and (
        task.get("type") == "chief" or ("chief" not in config.get("cluster", {}) and task.get("index", 0) == 0))


def run_finetune(args):
    settings = resolve_settings(args)
    strategy = make_strategy(args.strategy)
    if args.strategy == "multiworker" and not _is_chief():
        # Every worker trains; only the chief keeps what it writes.
        args.output = os.path.join(tempfile.mkdtemp(prefix="keras-sam-worker-"), "run")
    with strategy.scope():
        return _run_finetune(args, settings)


def _run_finetune(args, settings):
    output = os.path.abspath(args.output)
    state = prepare_output(output, settings, args.overwrite)
    if state == "complete":
        with open(os.path.join(output, "metrics.json")) as handle:
            metrics = json.load(handle)
        print(f"This run is already complete; its results are in {output}.\n")
        print(summary_table(metrics))
        return 0

    # Everything that can fail on bad input happens before the run directory is created; the
    # demo's generated data is the only thing put there first, and removed again on failure.
    data = settings["data"]
    created = False
    if settings["demo"]:
        data = os.path.join(output, "data")
        if state == "new":
            parent = os.path.dirname(output)
            os.makedirs(parent, exist_ok=True)
            staging = tempfile.mkdtemp(prefix=".keras-sam-demo-", dir=parent)
            print("Generating breast-ultrasound phantoms (synthetic images, BUSI layout)...")
            try:
                write_busi_phantoms(os.path.join(staging, "data"), seed=settings["seed"],
                                    counts={"benign": 40, "malignant": 20, "normal": 6})
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            os.rename(staging, output)
            created = True
    try:
        plan = _plan(settings, data)
    except BaseException:
        if created:
            shutil.rmtree(output, ignore_errors=True)
        raise
    if state == "new":
        os.makedirs(output, exist_ok=True)
        write_json(os.path.join(output, RUN_FILE), settings)
    else:
        print(f"Resuming the run in {output}.")
    return _train(settings, output, data, plan)


def _plan(settings, data):
    """Reads and checks the data, splits it and loads the model."""
    # The model first, so a bad --model fails before the data is read.
    model = load_segmenter(settings["model"], seed=settings["seed"],
                           freeze=[n for n in settings["freeze"].split(",") if n])
    records = find_records(data, settings["layout"], settings["mask_suffix"])
    lesion_set = read_lesions(records, on_error="skip" if settings["skip_bad_files"] else "raise",
                              progress=lambda items: tqdm(items, desc="Checking data", unit="image"))
    if not lesion_set.lesions:
        raise DataError(f"{data} has no lesions to train on (every mask is empty)")
    splits, warnings = split_lesions(lesion_set.lesions, settings["val_split"], settings["test_split"],
                                     settings["seed"])
    for warning in warnings:
        print(f"note: {warning}")
    return {"lesion_set": lesion_set, "splits": splits, "warnings": warnings, "model": model}


def _train(settings, output, data, plan):
    model, splits = plan["model"], plan["splits"]
    config = model.sam.config
    processor = processor_for_config(config)
    write_manifest(os.path.join(output, "split.json"), splits, data, settings["seed"],
                   settings["val_split"], settings["test_split"], plan["warnings"])
    counts = plan["lesion_set"].counts()
    counts["splits"] = {name: len(lesions) for name, lesions in splits.items()}

    cache = None
    if not settings["no_embedding_cache"] and "vision_encoder" in model.freeze:
        bfloat16 = settings["precision"] == "mixed_bfloat16"
        if bfloat16:
            print("Image embeddings are computed in bfloat16 (mixed precision); the mask decoder and "
                  "the loss stay float32 (transformers' TFSamAttention fails under the policy).")
        cache = EmbeddingCache(model, os.path.join(output, "embedding-cache"),
                               preprocessing=processor.image_processor.to_json_string(),
                               encoder_precision="bfloat16" if bfloat16 else "float32")
        cache_embeddings(plan["lesion_set"].lesions, processor, cache)

    common = dict(batch_size=settings["batch_size"], prompt=settings["prompt"],
                  jitter=settings["jitter"], seed=settings["seed"], embeddings=cache)
    evaluation = {name: build_dataset(splits[name], processor, config, shuffle=False,
                                      fixed_prompts=True, **{**common, "prompt": "box"})
                  for name in ("val", "test") if splits[name]}
    validation = build_dataset(splits["val"], processor, config, shuffle=False, fixed_prompts=True,
                               **common)

    before_path = os.path.join(output, "before.json")
    if os.path.exists(before_path):
        with open(before_path) as handle:
            before = json.load(handle)
    else:
        before = {name: _summaries(evaluate_lesions(model, splits[name], dataset, processor,
                                                    description=f"Scoring {name} before fine-tuning"))
                  for name, dataset in evaluation.items()}
        write_json(before_path, before)

    # XLA pays off for the decoder-only step from cached embeddings (BENCHMARKS.md: 1.44x at
    # sam-vit-base shapes); with the encoder in the step it is left off.
    model.compile(optimizer=keras.optimizers.legacy.Adam(settings["lr"]), loss=get_loss(settings["loss"]),
                  jit_compile=bool(settings["jit_compile"] and cache is not None))
    backup = EpochBackup(os.path.join(output, "backup"), model)
    initial_epoch = backup.restore()
    if initial_epoch:
        print(f"Resuming after epoch {initial_epoch} of {settings['epochs']}.")
    train = build_dataset(splits["train"], processor, config, epochs=(initial_epoch, settings["epochs"]),
                          **common)
    logs = os.path.join(output, "logs")
    best_weights = os.path.join(output, "checkpoints", "best")
    overlay_lesions = splits["val"][:OVERLAY_SAMPLES]
    images = [pixels_to_image(preprocess_image(load_image(l.image_path), processor)) for l in overlay_lesions]
    callbacks = [
        StopOnNonFiniteLoss(),
        keras.callbacks.TensorBoard(logs),
        MaskOverlayCallback(validation, logs, max_samples=OVERLAY_SAMPLES, images=images,
                            display_size=min(512, processor.image_processor.size["longest_edge"])),
        keras.callbacks.ModelCheckpoint(best_weights, monitor="val_dice", mode="max", save_best_only=True,
                                        save_weights_only=True,
                                        initial_value_threshold=_best_so_far(output)),
        keras.callbacks.CSVLogger(os.path.join(output, "training.csv"), append=True),
        backup,  # last: an epoch counts as done once everything above has recorded it
    ]
    if settings["demo"]:
        print("\nThe demo fine-tunes a tiny SAM whose weights start RANDOM, on synthetic phantoms:\n"
              "its numbers show the machinery working, not a medical result.\n")
    try:
        if initial_epoch < settings["epochs"]:
            model.fit(train, validation_data=validation, epochs=settings["epochs"],
                      initial_epoch=initial_epoch, callbacks=callbacks, verbose=1,
                      steps_per_epoch=steps_per_epoch(splits["train"], settings["batch_size"]))
    except NonFiniteLossError as error:
        raise TrainingStopped(
            f"{error}. The best weights so far are in {best_weights}; the run resumes from its last "
            "good epoch if the same command is run again.") from error

    if os.path.exists(best_weights + ".index"):
        model.load_weights(best_weights)
    model.save_pretrained(os.path.join(output, "model"))
    metrics = {}
    for name, dataset in evaluation.items():
        rows = evaluate_lesions(model, splits[name], dataset, processor,
                                description=f"Scoring {name} after fine-tuning")
        metrics[name] = {"finetuned": summarize(rows), "before": before[name]["finetuned"],
                         "box_baseline": summarize(rows, prefix="box_")}
        if name == "test":
            write_lesion_csv(os.path.join(output, "test_lesions.csv"), rows)
            best_and_worst_grid(os.path.join(output, "best_worst.png"), rows, model, dataset, processor)
    metrics["counts"] = counts
    write_json(os.path.join(output, "metrics.json"), metrics)

    print("\n" + summary_table(metrics, tuple(name for name in ("val", "test") if name in metrics)))
    print(f"\nModel:    {os.path.join(output, 'model')}")
    print(f"Metrics:  {os.path.join(output, 'metrics.json')}")
    print(f"Logs:     tensorboard --logdir {logs}")
    if settings["demo"]:
        print("Reminder: the weights started random; these numbers show the machinery, not a medical result.")
    return 0


def _summaries(rows):
    return {"finetuned": summarize(rows), "box_baseline": summarize(rows, prefix="box_")}


def _best_so_far(output):
    """The best validation Dice an interrupted run already reached (None for a new run)."""
    path = os.path.join(output, "training.csv")
    if not os.path.exists(path):
        return None
    with open(path) as handle:
        scores = [float(row["val_dice"]) for row in csv.DictReader(handle) if row.get("val_dice")]
    return max(scores) if scores else None
