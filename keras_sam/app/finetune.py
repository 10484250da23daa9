"""`keras-sam finetune`: from a data folder to a fine-tuned model, its logs, overlays and metrics.

The run in phases, each a function below:
    settings ─► run folder (new, resume or complete) ─► model and data (read, checked, split)
        ─► image embeddings cached ─► scores before fine-tuning ─► fit ─► save, score, report
What the run folder holds and how a killed run resumes is `keras_sam.app.run_directory`'s.
"""

import dataclasses
import functools
import json
import os
import shutil
import tempfile

import tensorflow as tf
import tf_keras as keras

from keras_sam.app.errors import TrainingStopped, UsageError
from keras_sam.app.report import (best_and_worst_grid, click_curves_plot, click_curves_to_tensorboard,
                                  summary_table, write_lesion_csv)
from keras_sam.app.run_directory import COMPLETE, NEW, RunDirectory
from keras_sam.app.model_source import load_segmenter
from keras_sam.app.settings import DEMO, resolve, speed_setting_sources
from keras_sam.app.speed import (SpeedChoice, allocator_choice, choose_jit_compile, choose_precision,
                                 cpu_supports_bfloat16, precision_policy, step_timer, too_short_to_probe)
from keras_sam.tfkeras.callbacks import (LearningRateLogger, MaskOverlayCallback, NonFiniteLossError,
                                         StopOnNonFiniteLoss)
from keras_sam.common.clicks import summarize_clicks
from keras_sam.data import (DataError, Lesion, PromptOptions, build_dataset, cache_embeddings,
                            find_records, image_samples, normal_samples, read_lesions, split_lesions,
                            steps_per_epoch, write_busi_phantoms, write_manifest)
from keras_sam.common.embeddings import EmbeddingCache
from keras_sam.common.evaluation import (add_click_columns, evaluate_clicks, evaluate_lesions, lesion_rows,
                                         summarize, summarize_no_prompt)
from keras_sam.tfkeras.losses import get_loss
from keras_sam.tfkeras.segmenter import default_optimizer
from keras_sam.common.storage import atomic_directory, write_json

OVERLAY_SAMPLES = 8
EVALUATED_SPLITS = ("val", "test")


@dataclasses.dataclass
class Plan:
    """The model and data a run trains on, once read and checked."""

    model: object
    lesion_set: object
    splits: dict
    warnings: list
    data: str
    precision: SpeedChoice
    reasons: dict  # why the speed settings given are what they are (speed_setting_sources)


def run_finetune(args):
    """Runs `keras-sam finetune` with parsed arguments; returns the exit status."""
    settings, output = resolve(args)
    strategy = make_strategy(args.strategy)
    if args.strategy == "multiworker" and not _is_chief():
        # Every worker trains; only the chief keeps what it writes.
        output = os.path.join(tempfile.mkdtemp(prefix="keras-sam-worker-"), "run")
    with strategy.scope():
        return _finetune(settings, RunDirectory(output), args.overwrite, speed_setting_sources(args))


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


def _finetune(settings, run, overwrite, reasons):
    state = run.prepare(settings, overwrite)
    if state == COMPLETE:
        with open(run.metrics) as handle:
            metrics = json.load(handle)
        print(f"This run is already complete; its results are in {run.path}.\n")
        print(summary_table(metrics))
        return 0
    plan = _plan(settings, run, state, reasons)
    if state == NEW:
        run.start(settings)
        run.record_choice("precision", plan.precision)
    else:
        print(f"Resuming the run in {run.path}.")
    allocator = allocator_choice()  # this sitting's process, recorded whether new or resumed
    print(f"TensorFlow's CPU allocator: {allocator.value} ({allocator.reason}).")
    run.record_choice("cpu_allocator", allocator)
    write_manifest(run.manifest, plan.splits, plan.data, settings.seed, settings.val_split,
                   settings.test_split, plan.warnings)
    cache, compiled = _cache_embeddings(settings, run, plan)
    evaluation = _evaluation_datasets(settings, plan, cache)
    before = run.scores_before(lambda: {
        name: _scores(plan, name, dataset, "before fine-tuning", settings)[0]
        for name, dataset in evaluation.items()})
    _fit(settings, run, plan, cache, compiled)
    return _finish(settings, run, plan, evaluation, before)


def _plan(settings, run, state, reasons):
    """Reads and checks the data, splits it and loads the model; nothing is left behind on failure.

    Everything that can fail on bad input happens before the run folder is created; the demo's
    generated data is the only thing put there first, and removed again on failure.
    """
    created = False
    data = settings.data
    if settings.demo:
        data = run.data
        if state == NEW:
            print("Generating breast-ultrasound phantoms (synthetic images, BUSI layout)...")
            with atomic_directory(run.path) as staging:
                write_busi_phantoms(os.path.join(staging, "data"), seed=settings.seed,
                                    counts=dict(DEMO.phantoms))
            created = True
    precision = run.recorded_choice("precision") or choose_precision(
        settings.precision, cpu_supports_bfloat16(), reasons["precision"])
    print(f"Precision: {precision.value} ({precision.reason}).")
    try:
        # The model first, so a bad --model fails before the data is read. Seeded, so a preset
        # built with random weights is the same model every time.
        keras.utils.set_random_seed(settings.seed)
        with precision_policy(precision.value):
            model = load_segmenter(settings.model, freeze=settings.freeze)
            if settings.adapt in ("lora", "adapter"):
                model.adapt(settings.adapt, rank=settings.lora_rank, targets=settings.lora_targets.split(","))
            if settings.recompute:
                model.recompute_encoder()
        lesion_set = read_lesions(find_records(data, settings.layout, settings.mask_suffix),
                                  on_error="skip" if settings.skip_bad_files else "raise",
                                  require_spacing=settings.units == "mm")
        if not lesion_set.lesions:
            raise DataError(f"{data} has no lesions to train on (every mask is empty)")
        splits, warnings = _split(settings, lesion_set, data)
    except BaseException:
        if created:
            shutil.rmtree(run.path, ignore_errors=True)
        raise
    for warning in warnings:
        print(f"note: {warning}")
    return Plan(model, lesion_set, splits, warnings, data, precision, reasons)


def _split(settings, lesion_set, data):
    """The train/val/test split of the lesions; with --prompt none, of images (each image's lesions
    one sample, keras_sam.data.image_samples), with --include-normal the normal images too.

    Images without a lesion are a class of their own in the split, which is made class by class:
    the lesion images land where they land without them.
    """
    normal = normal_samples(lesion_set, data) if settings.include_normal else []
    splits, warnings = split_lesions(lesion_set.lesions + normal, settings.val_split, settings.test_split,
                                     settings.seed)
    if _prompts(settings).none:
        splits = {name: image_samples([s for s in samples if isinstance(s, Lesion)])
                  + [s for s in samples if not isinstance(s, Lesion)] for name, samples in splits.items()}
    return splits, warnings


def _cache_embeddings(settings, run, plan):
    """The embedding cache, filled with every image's embedding (None without one), and whether
    the model was compiled meanwhile.

    Where the XLA choice needs no timing on the cache, the model is compiled and its training step
    traced while the encoder runs (seconds of Python that would otherwise come after it).
    """
    if not settings.uses_embedding_cache:
        return None, False
    processor = plan.model.processor
    cache = EmbeddingCache(plan.model, run.embedding_cache,
                           preprocessing=processor.image_processor.to_json_string())
    xla = _xla_choice_without_timing(settings, run, plan)
    meanwhile = None
    if xla is not None:
        _record_xla_choice(run, xla)
        meanwhile = functools.partial(_compile, settings, plan, cache, xla.value, trace=True)
    samples = [sample for split in plan.splits.values() for sample in split]  # normal images too
    cache_embeddings(samples, processor, cache, meanwhile=meanwhile)
    return cache, meanwhile is not None


def _prompts(settings):
    return PromptOptions(settings.prompt, jitter=settings.jitter, click_rounds=settings.click_rounds)


def _scored_prompts(settings):
    """The prompts the per-lesion scores use: the run's, but a box for a clicks run (its clicks are
    scored apart, by the simulated user of `evaluate_clicks`)."""
    if settings.prompt == "clicks":
        return PromptOptions("box", jitter=settings.jitter)
    return _prompts(settings)


def _evaluation_datasets(settings, plan, cache):
    """The val and test splits with the run's kind of prompts (a box for a clicks run), fixed, and
    lesion ids, for scoring."""
    return {name: build_dataset(plan.splits[name], plan.model.processor, batch_size=settings.batch_size,
                                prompts=_scored_prompts(settings), training=False, seed=settings.seed,
                                embeddings=cache, with_ids=True)
            for name in EVALUATED_SPLITS if plan.splits[name]}


def _scores(plan, name, dataset, when, settings):
    """Summaries of the model and of the prompt box on one split, with its lesions' rows and masks.

    A clicks run's test split also gets the simulated clicks' scores ("clicks" in the summary,
    per-lesion columns in the rows)."""
    rows, masks = evaluate_lesions(plan.model, plan.splits[name], dataset, plan.model.processor,
                                   description=f"Scoring {name} {when}",
                                   nsd_tolerance=settings.nsd_tolerance, units=settings.units)
    scores = {"finetuned": summarize(lesion_rows(rows))}
    if _prompts(settings).none:  # per image, images without a lesion counted apart
        scores["finetuned"]["no_prompt"] = summarize_no_prompt(rows)
    if settings.prompt == "clicks" and name == "test":
        curves = evaluate_clicks(plan.model, plan.splits[name], dataset, plan.model.processor,
                                 description=f"Clicking {name} {when}")
        add_click_columns(rows, curves)
        scores["finetuned"]["clicks"] = summarize_clicks(list(curves.values()))
    if rows and "box_dice" in rows[0]:  # box prompts: the box itself, filled, as a baseline
        scores["box_baseline"] = summarize(rows, prefix="box_")
    return scores, rows, masks


def _fit(settings, run, plan, cache, compiled):
    """Compiles (unless `compiled` while caching) and fits, resuming after the last completed
    epoch; keeps the best weights."""
    model, splits = plan.model, plan.splits
    if not compiled:
        _compile(settings, plan, cache, _choose_jit_compile(settings, run, plan, cache))
    backup = run.backup(model)
    initial_epoch = backup.restore()
    if initial_epoch >= settings.epochs:
        return
    if initial_epoch:
        print(f"Resuming after epoch {initial_epoch} of {settings.epochs}.")
    train = _training_stream(settings, plan, cache, first_epoch=initial_epoch)
    validation = build_dataset(splits["val"], model.processor, embeddings=cache, training=False,
                               **_dataset_options(settings))
    # A clicks run's overlays show the simulated user's clicks and the mask they refine (overlays.py).
    overlay_samples = build_dataset(splits["val"][:OVERLAY_SAMPLES], model.processor, training=False,
                                    **_dataset_options(settings))
    callbacks = [
        LearningRateLogger(),  # first, so TensorBoard and training.csv see the rate in the same logs
        StopOnNonFiniteLoss(),
        keras.callbacks.TensorBoard(run.logs),
        MaskOverlayCallback(overlay_samples, run.logs, max_samples=OVERLAY_SAMPLES,
                            display_size=min(512, model.processor.image_processor.size["longest_edge"])),
        keras.callbacks.ModelCheckpoint(run.best_weights, monitor="val_dice", mode="max",
                                        save_best_only=True, save_weights_only=True,
                                        initial_value_threshold=run.best_score_so_far()),
        keras.callbacks.CSVLogger(run.history, append=True),
        backup,  # last: an epoch counts as done once everything above has recorded it
    ]
    if settings.demo:
        print(f"\n{DEMO.note}\n")
    try:
        model.fit(train, validation_data=validation, epochs=settings.epochs, initial_epoch=initial_epoch,
                  callbacks=callbacks, verbose=1,
                  steps_per_epoch=steps_per_epoch(splits["train"], settings.batch_size))
    except NonFiniteLossError as error:
        raise TrainingStopped(
            f"{error}. The best weights so far are in {run.best_weights}; the run resumes from its "
            "last good epoch if the same command is run again.") from error


def _dataset_options(settings):
    return dict(batch_size=settings.batch_size, prompts=_prompts(settings), seed=settings.seed)


def _training_stream(settings, plan, cache, first_epoch=0):
    """The training batches of epochs first_epoch..settings.epochs-1, one stream."""
    return build_dataset(plan.splits["train"], plan.model.processor, embeddings=cache,
                         epochs=(first_epoch, settings.epochs), **_dataset_options(settings))


def _total_steps(settings, plan):
    return steps_per_epoch(plan.splits["train"], settings.batch_size) * settings.epochs


def _compile(settings, plan, cache, jit_compile, trace=False):
    """Compiles the model for the run; `trace` also traces its training step."""
    model = plan.model
    model.compile(optimizer=default_optimizer(settings.learning_rate), loss=get_loss(settings.loss),
                  jit_compile=jit_compile)
    if trace:
        model.trace_train_step(_training_stream(settings, plan, cache))


def _xla_choice_without_timing(settings, run, plan):
    """The XLA choice when it needs no timing: set, recorded by an earlier sitting, or a run too
    short to repay the probe; None when it must be measured."""
    if settings.jit_compile is not None:
        return SpeedChoice(settings.jit_compile, plan.reasons["jit_compile"] or "set by the run's settings")
    return run.recorded_choice("jit_compile") or too_short_to_probe(_total_steps(settings, plan))


def _record_xla_choice(run, choice):
    run.record_choice("jit_compile", choice)
    print(f"XLA: {'on' if choice.value else 'off'} ({choice.reason}).")


def _choose_jit_compile(settings, run, plan, cache):
    """XLA for the decoder step from cached embeddings: as set, or measured once on this machine
    where the run is long enough to repay it.

    With the vision encoder in the step (no embedding cache) XLA stays off.
    """
    if cache is None:
        return False
    choice = _xla_choice_without_timing(settings, run, plan)
    if choice is None:
        print("Timing the training step with and without XLA on this machine...")
        probe = build_dataset(plan.splits["train"], plan.model.processor, embeddings=cache,
                              **_dataset_options(settings))
        choice = choose_jit_compile(step_timer(plan.model, probe, get_loss(settings.loss)))
    _record_xla_choice(run, choice)
    return choice.value


def _save(model, settings, run):
    """Saves the fine-tuned model; returns where. LoRA is merged into an ordinary SAM (model/);
    adapters, which SAM has no place for, go to model.keras (loadable by --model)."""
    if settings.adapt == "adapter":
        path = os.path.join(run.path, "model.keras")
        model.save(path)
        return path
    model.save_pretrained(run.model)
    return run.model


def _finish(settings, run, plan, evaluation, before):
    """Restores the best weights, saves the model, scores it and writes the report."""
    model = plan.model
    if os.path.exists(run.best_weights + ".index"):
        model.load_weights(run.best_weights)
    model.trained_prompt = settings.prompt  # saved with the model: inference knows what it learnt
    saved = _save(model, settings, run)
    metrics = {}
    for name, dataset in evaluation.items():
        after, rows, masks = _scores(plan, name, dataset, "after fine-tuning", settings)
        metrics[name] = {"finetuned": after["finetuned"], "before": before[name]["finetuned"]}
        if "box_baseline" in after:
            metrics[name]["box_baseline"] = after["box_baseline"]
        if name == "test":
            write_lesion_csv(run.lesion_csv, rows)
            best_and_worst_grid(run.grid, rows, masks)
            if "clicks" in after["finetuned"]:
                curves = {"before": before[name]["finetuned"]["clicks"]["dice_at"],
                          "fine-tuned": after["finetuned"]["clicks"]["dice_at"]}
                click_curves_plot(os.path.join(run.path, "clicks.png"), curves)
                click_curves_to_tensorboard(run.logs, curves)
    kept = run.best_epoch()
    if kept:
        metrics["kept_epoch"] = kept[0]
    counts = plan.lesion_set.counts()
    if settings.include_normal:  # the normal images were samples (with an empty target), not left out
        for label, numbers in counts["per_class"].items():
            numbers["empty_target_images"] = numbers.pop("empty_mask_images_left_out")
    counts["splits"] = {name: len(lesions) for name, lesions in plan.splits.items()}
    metrics["prompts"] = {"kind": settings.prompt, "jitter": settings.jitter, "seed": settings.seed,
                          **({"include_normal": True} if settings.include_normal else {})}
    if settings.prompt == "clicks":
        metrics["prompts"]["click_rounds"] = settings.click_rounds
    metrics["counts"] = counts
    write_json(run.metrics, metrics)

    print("\n" + summary_table(metrics, tuple(name for name in EVALUATED_SPLITS if name in metrics)))
    if kept:
        print(f"\nKept the weights of epoch {kept[0]} of {settings.epochs}, the best by validation Dice "
              f"({kept[1]:.3f} on the model's mask grid; the table scores each image at its own size).")
    if (settings.prompt != "clicks" and "val" in metrics
            and metrics["val"]["finetuned"]["dice"] < metrics["val"]["before"]["dice"]):
        print("note: the fine-tuned model scores below the starting model on the validation lesions: try "
              "more epochs, another --lr, or more data (the starting model is "
              f"{settings.model}).")
    print(f"\nModel:    {saved}")
    print(f"Metrics:  {run.metrics}")
    print(f"Logs:     tensorboard --logdir {run.logs}")
    if settings.demo:
        print("'before' is the pretrained model as shipped"
              + (", 'box_baseline' the prompt box filled in." if "box_baseline" in metrics.get("test", {}) else "."))
    if settings.prompt == "clicks":
        print("The dice and iou rows score each model prompted by its box; the clicks table, by simulated "
              f"clicks (Dice against clicks: {os.path.join(run.path, 'clicks.png')}).")
    return 0
