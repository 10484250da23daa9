"""Pretrain the small SAM that keras-sam ships, from scratch, on procedural "segment anything" scenes.

    python training/pretrain_small_sam.py --output keras_sam/pretrained/sam-small-shapes

Seeded and resumable: the scenes come from --seed, every batch's order and prompts from (seed,
step), and a checkpoint is kept in --work-dir every chunk of steps, so the same command resumes
where it stopped (the same model up to the rounding of multi-threaded sums). --minutes bounds one sitting (it stops after the chunk
that crosses it, resumable). At the end it scores the model on held-out scenes (another seed)
with a box and with one point, next to the filled box, and writes the model (save_pretrained),
its card (README.md) and the run's log beside it.

Box prompts train SAM's single-mask output (what fine-tuning uses); point prompts, ambiguous by
nature, train its three-mask output with the IoU head (what SAM picks from). Both share one
TFSamModel and one optimizer.
"""

import argparse
import json
import os
import platform
import sys
import time
from multiprocessing import Pool

import numpy as np
import tensorflow as tf
import tf_keras as keras
from tqdm.auto import tqdm
from transformers import (SamConfig, SamMaskDecoderConfig, SamPromptEncoderConfig, SamVisionConfig,
                          TFSamModel)

from keras_sam import DiceBCELoss, SamSegmenter, processor_for_config
from keras_sam.common.geometry import box_from_mask, box_mask, model_scale, resized_shape, to_model_coordinates
from keras_sam.common.inference import segment_image
from keras_sam.common.losses_and_scores import dice_per_sample
from keras_sam.common.preprocessing import preprocess_image, preprocess_mask
from keras_sam.tfkeras.segmenter import default_optimizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from shapes import scene, scene_size  # noqa: E402

HELD_OUT_SEED_OFFSET = 1_000_003


def small_sam_config():
    """The shipped model's architecture: SAM's, small (256x256 input, 64x64 masks, ~1.4M weights)."""
    vision = SamVisionConfig(hidden_size=96, num_hidden_layers=4, num_attention_heads=4, mlp_dim=384,
                             output_channels=64, image_size=256, patch_size=16, global_attn_indexes=[1, 3],
                             window_size=8, num_pos_feats=32)
    prompt = SamPromptEncoderConfig(hidden_size=64, image_size=256, patch_size=16, mask_input_channels=16)
    decoder = SamMaskDecoderConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, mlp_dim=256,
                                   iou_head_hidden_dim=64)
    return SamConfig(vision_config=vision.to_dict(), prompt_encoder_config=prompt.to_dict(),
                     mask_decoder_config=decoder.to_dict())


# ----------------------------------------------------------------------------- scenes
def _make_scene(job):
    """Worker: scene `index` of the pool drawn from `seed`, on the model's grids."""
    seed, index = job
    rng = np.random.default_rng([seed, index])
    height, width = scene_size(rng)
    image, masks = scene(rng, height, width)
    processor = processor_for_config(small_sam_config())
    objects = []
    for mask in masks:
        grid = preprocess_mask(mask, processor).astype(np.uint8)
        if grid.sum() < 4:  # too small to see on the 64x64 grid
            continue
        objects.append((grid, to_model_coordinates(box_from_mask(mask), (height, width), processor)))
    new_h, new_w = resized_shape((height, width), processor)
    return (preprocess_image(image, processor).astype(np.float16), objects,
            np.array([new_w, new_h], np.float32), model_scale((height, width), processor))


class ScenePool:
    """`count` scenes from `seed`, preprocessed once, and their objects as training samples."""

    def __init__(self, seed, count, workers=2):
        with Pool(workers) as pool:
            made = list(tqdm(pool.imap(_make_scene, [(seed, i) for i in range(count)], chunksize=16),
                             total=count, desc="Drawing scenes", unit="scene"))
        made = [item for item in made if item[1]]
        self.pixels = np.stack([item[0] for item in made])
        self.extents = np.stack([item[2] for item in made])
        self.samples = [(scene_index, grid, box) for scene_index, item in enumerate(made)
                        for grid, box in item[1]]

    def batch(self, step, seed, size, mode):
        """Batch `step`: its samples and prompts drawn from (seed, step) alone."""
        rng = np.random.default_rng([seed, step])
        chosen = rng.choice(len(self.samples), size, replace=False)
        scenes = [self.samples[i][0] for i in chosen]
        grids = np.stack([self.samples[i][1] for i in chosen]).astype(np.float32)
        x = {"pixel_values": self.pixels[scenes].astype(np.float32)}
        if mode == "box":
            boxes = np.stack([self.samples[i][2] for i in chosen])
            sizes = np.repeat(boxes[:, 2:] - boxes[:, :2], 2, axis=1)
            jitter = rng.uniform(-0.1, 0.1, boxes.shape) * sizes + rng.uniform(-3, 3, boxes.shape)
            limits = np.tile(self.extents[scenes], 2)
            boxes = np.clip(boxes + jitter, 0, limits)
            boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
            x["input_boxes"] = boxes.astype(np.float32)
        else:
            count = int(rng.integers(1, 4))
            points, labels = [], []
            for grid, scene_index in zip(grids, scenes):
                extent = self.extents[scene_index] / 4  # on the 64x64 grid
                inside = np.argwhere(grid > 0)
                outside = np.argwhere((grid == 0) & (np.arange(64)[:, None] < extent[1])
                                      & (np.arange(64)[None, :] < extent[0]))
                kinds = [1] + [int(rng.random() < 0.5) for _ in range(count - 1)]
                picks = [(inside if kind or not len(outside) else outside) for kind in kinds]
                cells = [pick[rng.integers(len(pick))] for pick in picks]
                points.append([[(col + rng.random()) * 4, (row + rng.random()) * 4] for row, col in cells])
                labels.append([kind if kind or len(outside) else 1 for kind in kinds])
            x["input_points"] = np.array(points, np.float32)
            x["input_labels"] = np.array(labels, np.int32)
        return x, grids


# ----------------------------------------------------------------------------- training
def build_models(learning_rate, steps, seed):
    """Two SamSegmenters over one TFSamModel and one optimizer: single-mask (boxes) and 3 masks."""
    sam = TFSamModel(small_sam_config())
    sam.build_in_name_scope()
    # SAM's prompt and image positional encodings are random Fourier features with frequencies
    # drawn at scale 1 (Kirillov et al. 2023). transformers draws them at scale hidden_size / 2,
    # which checkpoints overwrite; from scratch that aliases every position into noise, and the
    # model learns to ignore where its prompt is.
    frequencies = sam.shared_image_embedding.positional_embedding
    frequencies.assign(np.random.default_rng(seed).standard_normal(frequencies.shape).astype(np.float32))
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=max(1, steps - steps // 20), warmup_target=learning_rate,
        warmup_steps=steps // 20, alpha=0.05)
    optimizer = default_optimizer(schedule)
    models = {}
    for mode, multimask in (("box", False), ("points", True)):
        models[mode] = SamSegmenter(sam, freeze=(), multimask_output=multimask)
        models[mode].compile(optimizer=optimizer, loss=DiceBCELoss(), metrics=[])
    return models, optimizer


def train(pool, models, optimizer, args, log):
    """Alternates chunks of box and point steps until --steps, or --minutes has passed."""
    step = tf.Variable(0, dtype=tf.int64, trainable=False)
    checkpoint = tf.train.Checkpoint(sam=models["box"].sam, optimizer=optimizer, step=step)
    manager = tf.train.CheckpointManager(checkpoint, args.checkpoints, max_to_keep=1)
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint)
        log(f"resumed at step {int(step.numpy())}")
    started = time.time()
    bar = tqdm(total=args.steps, initial=int(step.numpy()), desc="Pretraining", unit="step")
    while int(step.numpy()) < args.steps:
        first = int(step.numpy())
        mode = "box" if (first // args.chunk) % 2 == 0 else "points"
        count = min(args.chunk, args.steps - first)
        batches = (pool.batch(first + i, args.seed, args.batch_size, mode) for i in range(count))
        history = models[mode].fit(batches, steps_per_epoch=count, epochs=1, verbose=0,
                                   callbacks=[_Progress(bar)])
        step.assign(first + count)
        manager.save(checkpoint_number=first + count)
        logs = {name: round(float(values[-1]), 4) for name, values in history.history.items()}
        log(f"step {first + count} ({mode}): " + ", ".join(f"{k} {v}" for k, v in sorted(logs.items())))
        if args.minutes and time.time() - started > 60 * args.minutes and int(step.numpy()) < args.steps:
            log(f"stopped after {args.minutes} minutes at step {int(step.numpy())}: run the same command to resume")
            bar.close()
            return False
    bar.close()
    return True


class _Progress(keras.callbacks.Callback):
    def __init__(self, bar):
        super().__init__()
        self.bar = bar

    def on_train_batch_end(self, batch, logs=None):
        self.bar.update(1)
        if logs and "loss" in logs:
            self.bar.set_postfix(loss=f"{float(logs['loss']):.3f}")


# ----------------------------------------------------------------------------- evaluation
def held_out_scores(model, seed, count):
    """Dice on held-out scenes at image resolution: a box prompt, one point, the filled box."""
    rng = np.random.default_rng(seed)
    scores = {"box": [], "point": [], "filled_box": []}
    for _ in range(count):
        height, width = scene_size(rng)
        image, masks = scene(rng, height, width)
        mask = masks[int(rng.integers(len(masks)))]
        box = box_from_mask(mask)
        inside = np.argwhere(mask)
        row, col = inside[int(rng.integers(len(inside)))]
        model.multimask_output = False
        boxed = segment_image(model, image, boxes=[box]).masks[0]
        model.multimask_output = True
        pointed = segment_image(model, image, points=[[col + 0.5, row + 0.5]]).masks[0]
        for name, predicted in (("box", boxed), ("point", pointed), ("filled_box", box_mask(box, (height, width)))):
            scores[name].append(float(dice_per_sample(mask[None], predicted[None])[0]))
    model.multimask_output = False
    return {name: round(float(np.mean(values)), 4) for name, values in scores.items()}


# ----------------------------------------------------------------------------- main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="keras_sam/pretrained/sam-small-shapes")
    parser.add_argument("--seed", type=int, default=20261130)
    parser.add_argument("--scenes", type=int, default=4000, help="scenes in the training pool")
    parser.add_argument("--steps", type=int, default=8500)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--chunk", type=int, default=250, help="steps of one prompt kind before switching")
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--held-out", type=int, default=300, help="held-out scenes scored at the end")
    parser.add_argument("--minutes", type=float, default=0, help="stop after this long (0: no bound; the "
                        "shipped model was made within 60 minutes on 2 CPU cores)")
    parser.add_argument("--work-dir", default="runs/pretrain-small-sam", help="checkpoints and the log")
    args = parser.parse_args(argv)
    output = os.path.abspath(args.output)
    args.checkpoints = os.path.abspath(args.work_dir)
    os.makedirs(args.checkpoints, exist_ok=True)
    log_path = os.path.join(args.checkpoints, "pretraining.log")

    def log(line):
        print(line, flush=True)
        with open(log_path, "a") as handle:
            handle.write(line + "\n")

    command = "python training/pretrain_small_sam.py " + " ".join(argv if argv is not None else sys.argv[1:])
    log(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {command}")
    log(f"tensorflow {tf.__version__}, {os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}")
    keras.utils.set_random_seed(args.seed)  # the initial weights
    models, optimizer = build_models(args.learning_rate, args.steps, args.seed)
    weights = sum(int(np.prod(w.shape)) for w in models["box"].sam.weights)
    log(f"model: {weights} weights; pool of {args.scenes} scenes from seed {args.seed}")
    pool = ScenePool(args.seed, args.scenes)
    log(f"{len(pool.samples)} objects in {len(pool.pixels)} scenes")
    if not train(pool, models, optimizer, args, log):
        return 1
    model = models["box"]
    scores = held_out_scores(model, args.seed + HELD_OUT_SEED_OFFSET, args.held_out)
    log("held-out Dice: " + json.dumps(scores))
    model.save_pretrained(output)
    for name in ("pretraining.log",):
        with open(log_path) as source, open(os.path.join(output, name), "w") as target:
            target.write(source.read())
    write_card(output, command, args, weights, scores)
    log(f"wrote {output}")
    return 0


def write_card(output, command, args, weights, scores):
    size = sum(os.path.getsize(os.path.join(output, name)) for name in os.listdir(output))
    card = f"""# sam-small-shapes

A small Segment Anything model (SAM's architecture: ViT image encoder, prompt encoder, two-way
transformer mask decoder) trained from scratch by keras-sam on procedural scenes of shapes, so
that the offline demo, the examples and the tests start from a model that already segments.

- Load: `SamSegmenter.from_pretrained("sam-small-shapes")`, `keras-sam finetune --model
  sam-small-shapes`, or `TFSamModel.from_pretrained(<this folder>)`.
- Architecture: 256x256 input (16x16 image embeddings of 64 channels), 64x64 mask logits; a
  4-layer ViT of width 96 and a 2-layer mask decoder of width 64: {weights:,} weights,
  {size / 2**20:.1f} MiB on disk.
- Trained on: {args.scenes} procedural scenes (training/shapes.py: ellipses, rectangles, star
  polygons, blobs; flat, gradient, stripes, smooth-noise and speckle textures; faint to strong
  contrast; several objects per image, some crossing the border; grey and colour; every aspect
  ratio), {args.steps} steps of {args.batch_size}, box prompts (jittered) for the single-mask
  output and 1 to 3 points for the three masks and the IoU head, Dice + BCE, Adam at
  {args.learning_rate} with warm-up and cosine decay. Nothing from the demo's phantoms.
- Made with: `{command}` (seed {args.seed}); the log is `pretraining.log` beside this card.
- Held-out scenes ({args.held_out}, seed {args.seed + HELD_OUT_SEED_OFFSET}), mean Dice at the
  image's resolution: **{scores['box']:.3f} with the object's box**, **{scores['point']:.3f} with one
  point inside it** (best of 3 masks by predicted IoU), against {scores['filled_box']:.3f} for the
  filled box itself.

Not a medical model: it knows shapes, edges and contrast, which is what fine-tuning on
ultrasound images starts from.
"""
    with open(os.path.join(output, "README.md"), "w") as handle:
        handle.write(card)


if __name__ == "__main__":
    sys.exit(main())
