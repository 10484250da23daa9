"""Corrective clicks, written once for both model families (no Keras here).

Two clickers, one idea: a click goes well inside what the current mask gets wrong, positive (label 1)
on a missed part of the lesion, negative (label 0) on a false positive.

- The simulated user of interactive-segmentation scoring (RITM, SimpleClick, SAM), in NumPy and
  SciPy, at each image's own resolution: `first_click`, `next_click`, `simulate_clicks`, and the
  scores `dice_at`/`clicks_to_reach` (NoC@85, NoC@90) over its curves. The first click is positive,
  at the lesion's interior-most pixel (the largest Euclidean distance to the region's border, the
  image's edge counting as border); each next one at the interior-most pixel of the largest
  connected error region (missed or false-positive pixels, by area); the previous mask's logits are
  fed back. A lesion that never reaches a Dice threshold counts as the most clicks simulated.
- The training clicker `error_clicks`, inside the traced step, over a small ops interface (see
  `ClickOps`): the tf-keras family passes TensorFlow's NumPy API, the Keras 3 family `keras.ops`.
  Connected components and exact distance transforms are costly in a graph, so it approximates:
  the larger kind of error by area (missed or false positive), the depth of each error pixel by
  repeated 3x3 erosion, and a random one of that error's deepest pixels (as deep as the scoring's
  interior-most pixel, with the randomness SAM's training clicks have where several tie).

Coordinates: points are (x, y) at pixel centres (column + 0.5, row + 0.5) of the mask they come from.
"""

from typing import Any, Callable, NamedTuple, Protocol

import numpy as np
from scipy import ndimage

from keras_sam.common.losses_and_scores import dice_per_sample

DEFAULT_MAX_CLICKS = 20
"""Clicks simulated per lesion when scoring, as RITM, SimpleClick and SAM report them."""

MAX_CLICKS_LIMIT = 50
"""The most clicks `keras-sam evaluate --clicks` simulates."""

NOC_THRESHOLDS = (0.85, 0.90)

DEPTH_STEPS = 16
"""Erosions the training clicker measures depth with: deeper pixels all count as equally deep."""

NO_CLICK = -1
"""The label of a point that is not a click (SAM's "not a point" padding)."""


class Click(NamedTuple):
    """One click: (x, y) at a pixel centre of the mask it was placed on, label 1 (positive) or 0."""

    x: float
    y: float
    label: int


def interior_most_pixel(region):
    """(row, column) of the region's pixel farthest from its border, or None for an empty region.

    The distance is the Euclidean distance transform of the region with the image's edge counting
    as border; ties go to the first pixel in row-major order.

    Args:
        region: (H, W) boolean array.
    """
    region = np.asarray(region, bool)
    if not region.any():
        return None
    distance = ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
    row, column = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return int(row), int(column)


def _click_at(region, label):
    row, column = interior_most_pixel(region)
    return Click(column + 0.5, row + 0.5, label)


def first_click(truth):
    """The protocol's first click: positive, at the lesion's interior-most pixel (None if empty)."""
    truth = np.asarray(truth, bool)
    return _click_at(truth, 1) if truth.any() else None


def next_click(truth, predicted):
    """The protocol's next click: at the interior-most pixel of the largest connected error region.

    Args:
        truth, predicted: (H, W) boolean masks.

    Returns:
        A Click, positive if that region is missed lesion, negative if it is a false positive;
        None when the prediction is exact. Equal areas go to the missed region.
    """
    truth, predicted = np.asarray(truth, bool), np.asarray(predicted, bool)
    best, best_area, best_label = None, 0, None
    for label, error in ((1, truth & ~predicted), (0, predicted & ~truth)):
        components, count = ndimage.label(error)
        if count == 0:
            continue
        areas = np.bincount(components.ravel())[1:]
        largest = int(np.argmax(areas))
        if areas[largest] > best_area:
            best, best_area, best_label = components == largest + 1, int(areas[largest]), label
    return None if best is None else _click_at(best, best_label)


class ClickCurves(NamedTuple):
    """What `simulate_clicks` returns.

    dice: (N, K) float array, each lesion's Dice after 1..K clicks.
    clicks: per lesion, the list of Clicks placed (at most K; fewer once a mask is exact).
    """

    dice: Any
    clicks: list


def simulate_clicks(predict, truths, max_clicks=DEFAULT_MAX_CLICKS):
    """Runs the simulated user on a batch of lesions together: one `predict` call per click.

    Args:
        predict: `f(points, labels, previous) -> (logits, masks)`: points (B, k, 2) float32 (x, y)
            in the truths' pixels, labels (B, k) int32 (1, 0, or NO_CLICK where a lesion needs no
            more clicks), previous (B, G, G) the last call's logits, or None on the first call;
            returns the logits to feed back (B, G, G) and the predicted masks, one boolean (H, W)
            array per lesion at its truth's size.
        truths: the lesions' true masks, (H, W) boolean arrays (sizes may differ).
        max_clicks: clicks per lesion (K).

    Returns:
        ClickCurves.
    """
    if max_clicks < 1:
        raise ValueError(f"max_clicks must be at least 1; got {max_clicks}")
    truths = [np.asarray(truth, bool) for truth in truths]
    empty = [index for index, truth in enumerate(truths) if not truth.any()]
    if empty:
        raise ValueError(f"lesion {empty[0]} of the batch has an empty mask: there is nothing to click on")
    clicks = [[first_click(truth)] for truth in truths]
    points = np.array([[[c.x, c.y]] for (c,) in clicks], np.float32)
    labels = np.ones((len(truths), 1), np.int32)
    previous, dice = None, []
    for round_ in range(max_clicks):
        previous, masks = predict(points, labels, previous)
        dice.append([float(dice_per_sample(truth[None], np.asarray(mask, bool)[None])[0])
                     for truth, mask in zip(truths, masks)])
        if round_ == max_clicks - 1:
            break
        new_points = np.zeros((len(truths), 1, 2), np.float32)
        new_labels = np.full((len(truths), 1), NO_CLICK, np.int32)
        for index, (truth, mask) in enumerate(zip(truths, masks)):
            click = next_click(truth, mask)
            if click is not None:
                clicks[index].append(click)
                new_points[index, 0] = (click.x, click.y)
                new_labels[index, 0] = click.label
        points = np.concatenate([points, new_points], axis=1)
        labels = np.concatenate([labels, new_labels], axis=1)
    return ClickCurves(np.array(dice, np.float64).T, clicks)


def clicks_to_reach(dice, threshold, cap=None):
    """NoC@threshold of each lesion: the fewest clicks whose Dice reaches `threshold`.

    Args:
        dice: (N, K) Dice after 1..K clicks.
        threshold: e.g. 0.9 for NoC@90.
        cap: what a lesion that never reaches it counts as (default K).

    Returns:
        (N,) int array.
    """
    dice = np.asarray(dice, np.float64)
    cap = dice.shape[1] if cap is None else cap
    reached = dice >= threshold
    return np.where(reached.any(axis=1), np.argmax(reached, axis=1) + 1, cap).astype(int)


def noc_name(threshold):
    """0.85 -> "noc85"."""
    return f"noc{round(threshold * 100)}"


def summarize_clicks(dice):
    """The click scores of a set of lesions: {"dice_at": [mean Dice after 1..K clicks],
    "noc85": mean NoC@85, "noc90": mean NoC@90} (NaNs for no lesions)."""
    dice = np.asarray(dice, np.float64).reshape(len(dice), -1)
    if not len(dice):
        return {"dice_at": [], **{noc_name(t): float("nan") for t in NOC_THRESHOLDS}}
    return {"dice_at": [round(float(value), 6) for value in dice.mean(axis=0)],
            **{noc_name(t): float(clicks_to_reach(dice, t).mean()) for t in NOC_THRESHOLDS}}


def lesion_click_columns(dice_row, shown=(1, 3, 5)):
    """One lesion's click columns for a per-lesion table: dice_at_1/3/5 (where simulated), noc85, noc90."""
    dice_row = np.asarray(dice_row, np.float64)
    columns = {f"dice_at_{k}": float(dice_row[k - 1]) for k in shown if k <= len(dice_row)}
    for threshold in NOC_THRESHOLDS:
        columns[noc_name(threshold)] = int(clicks_to_reach(dice_row[None], threshold)[0])
    return columns


# ----------------------------------------------------------------- the training clicker, in the graph
class ClickOps(Protocol):
    """The ops `error_clicks` uses: NumPy's names (`sum`, `max`, `maximum`, `minimum`, `where`,
    `reshape`, `argmax`, `stack`, `pad(x, widths, mode="constant")`, `ones_like`, `zeros_like`,
    `full_like`) plus `cast(x, dtype)`. TensorFlow's NumPy API with `cast=tf.cast` and `keras.ops`
    both fit; `numpy_click_ops` is NumPy's."""

    def cast(self, x: Any, dtype: str) -> Any:
        ...


class _NumpyClickOps:
    """NumPy as a ClickOps (for tests and NumPy callers)."""

    def __getattr__(self, name):
        return getattr(np, name)

    @staticmethod
    def cast(x, dtype):
        return np.asarray(x).astype(dtype)


numpy_click_ops = _NumpyClickOps()


def _erode(ops, region):
    """One 3x3 erosion of (B, H, W) 0/1 floats; outside the grid counts as background."""
    rows = ops.pad(region, [[0, 0], [1, 1], [0, 0]], mode="constant")
    region = ops.minimum(ops.minimum(rows[:, :-2], rows[:, 1:-1]), rows[:, 2:])
    columns = ops.pad(region, [[0, 0], [0, 0], [1, 1]], mode="constant")
    return ops.minimum(ops.minimum(columns[:, :, :-2], columns[:, :, 1:-1]), columns[:, :, 2:])


def error_depth(ops, region, steps=DEPTH_STEPS):
    """(B, H, W) how many 3x3 erosions each pixel of a 0/1 region survives, plus one, capped at
    `steps` + 1 (0 outside the region): its chessboard distance to the region's border."""
    depth, current = region, region
    for _ in range(steps):
        current = _erode(ops, current)
        depth = depth + current
    return depth


def error_clicks(ops, truth, logits, noise, *, active=None, valid=None, steps=DEPTH_STEPS, depth_share=1.0):
    """One corrective click per sample, from the current prediction's error, in the graph.

    The larger error by area (missed lesion, or false positive) is clicked, at a pixel drawn
    uniformly, by `noise`, among its deepest pixels by default (depth by repeated 3x3 erosion,
    `error_depth`): well inside the error, away from its border, as the scoring's user clicks, and
    not always the same pixel where several are as deep. Ties in area go to the missed lesion.

    Args:
        ops: a ClickOps.
        truth: (B, G, G) 0/1 target masks.
        logits: (B, G, G) current mask logits (the mask is logits > 0); for the first click of a
            sample, any negative logits (nothing predicted: the click is positive, in the lesion).
        noise: (B, G, G) uniform random values in [0, 1): the randomness, drawn by the caller
            (stateless in TensorFlow, a seed generator in Keras 3).
        active: optional (B,) booleans; samples where it is False get no click (label NO_CLICK).
        valid: optional (B, G, G) 0/1 where clicks may go (the image without its padding).
        steps: erosions that measure depth.
        depth_share: clicks go among the error's pixels at least this share of its deepest
            pixel's depth (1, the default: only the deepest, as the scoring protocol's user
            clicks; 0.5 put many training clicks on an error's rim and scored worse, README).

    Returns:
        (points, labels): points (B, 2) float32 (x, y) at pixel centres of the grid, labels (B,)
        int32: 1 positive, 0 negative, NO_CLICK for an exact mask (or an inactive sample).
    """
    truth = ops.cast(truth, "float32")
    predicted = ops.where(logits > 0, ops.ones_like(truth), ops.zeros_like(truth))
    missed, extra = truth * (1.0 - predicted), (1.0 - truth) * predicted
    if valid is not None:
        valid = ops.cast(valid, "float32")
        missed, extra = missed * valid, extra * valid
    positive = ops.sum(missed, axis=(1, 2)) >= ops.sum(extra, axis=(1, 2))
    error = ops.where(positive[:, None, None], missed, extra)
    depth = error_depth(ops, error, steps)
    deepest = ops.max(depth, axis=(1, 2))
    candidates = ops.where(depth >= ops.maximum(depth_share * deepest, 1.0)[:, None, None],
                           ops.ones_like(depth), ops.zeros_like(depth))
    side = int(truth.shape[2])
    score = ops.reshape(candidates * (1.0 + ops.cast(noise, "float32")), (-1, side * int(truth.shape[1])))
    index = ops.cast(ops.argmax(score, axis=1), "int32")
    row, column = index // side, index % side
    points = ops.stack([ops.cast(column, "float32") + 0.5, ops.cast(row, "float32") + 0.5], axis=1)
    kind = ops.cast(positive, "int32")
    found = ops.max(score, axis=1) > 0
    labels = ops.where(found, kind, ops.full_like(kind, NO_CLICK))
    if active is not None:
        labels = ops.where(active, labels, ops.full_like(kind, NO_CLICK))
    return points, labels
