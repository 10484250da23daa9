"""Show masks, boxes and points on images: matplotlib helpers, and the overlay renderer the
TensorBoard callback shares.

The `display_*` functions draw on a given matplotlib Axes (or a new Figure) and return the Figure.
New figures are made without pyplot, so nothing here touches matplotlib's global state (its
backend, its list of open figures): save them with `figure.savefig(path)`. Masks are expected at
the image's own resolution: `keras_sam.common.postprocessing.postprocess_masks` makes them from the
model's output.
"""

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator
from PIL import Image, ImageDraw

MASK_COLOR = (30, 144, 255)
TRUTH_COLOR = (255, 215, 0)
BOX_COLOR = (0, 255, 0)
POSITIVE_COLOR = (0, 200, 0)
NEGATIVE_COLOR = (230, 30, 30)
PREVIOUS_COLOR = (255, 0, 255)


def _axes(ax):
    if ax is None:
        ax = Figure(figsize=(5, 5)).subplots()
        ax.axis("off")
    return ax.figure, ax


def display_mask(mask, ax=None, color=MASK_COLOR, alpha=0.5):
    """Draws a binary mask as a translucent colour layer on `ax`."""
    figure, ax = _axes(ax)
    mask = np.asarray(mask, bool)
    layer = np.zeros(mask.shape + (4,), np.float32)
    layer[mask] = [*(np.asarray(color) / 255.0), alpha]
    ax.imshow(layer)
    return figure


def display_box(box, ax=None, color=BOX_COLOR):
    """Draws a box (x0, y0, x1, y1) in image pixels on `ax`."""
    figure, ax = _axes(ax)
    x0, y0, x1, y1 = [float(v) for v in box]
    ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, edgecolor=np.asarray(color) / 255,
                           facecolor="none", linewidth=2))
    return figure


def display_boxes_on_img(image, boxes, ax=None):
    """Shows an image with boxes (N, 4) drawn on it."""
    figure, ax = _axes(ax)
    ax.imshow(image)
    for box in np.reshape(boxes, (-1, 4)):
        display_box(box, ax)
    return figure


def display_points(points, labels=None, ax=None, marker_size=200):
    """Draws points (N, 2) on what the axes show; label 1 (inside) green stars, 0 (outside) red."""
    figure, ax = _axes(ax)
    points = np.reshape(points, (-1, 2))
    labels = np.ones(len(points)) if labels is None else np.reshape(labels, (-1,))
    for value, color in ((1, POSITIVE_COLOR), (0, NEGATIVE_COLOR)):
        chosen = points[labels == value]
        ax.scatter(chosen[:, 0], chosen[:, 1], color=np.asarray(color) / 255, marker="*",
                   s=marker_size, edgecolor="white", linewidth=1.25)
    return figure


def display_points_on_img(image, points, labels=None, ax=None, marker_size=200):
    """Shows an image with points (N, 2); label 1 (inside) green stars, label 0 (outside) red."""
    figure, ax = _axes(ax)
    ax.imshow(image)
    display_points(points, labels, ax, marker_size)
    return figure


def display_masks_on_img(image, masks, scores=None, boxes=None, points=None, labels=None):
    """A figure with one panel per mask (M, H, W) on the image, its IoU score in the title."""
    masks = np.asarray(masks, bool).reshape((-1,) + np.shape(image)[:2])
    figure = Figure(figsize=(5 * len(masks), 5))
    axes = figure.subplots(1, len(masks), squeeze=False)
    for index, (ax, mask) in enumerate(zip(axes[0], masks)):
        ax.imshow(image)
        display_mask(mask, ax)
        if boxes is not None:
            for box in np.reshape(boxes, (-1, 4)):
                display_box(box, ax)
        if points is not None:
            display_points(points, labels, ax)
        title = f"Mask {index + 1}"
        if scores is not None:
            title += f", IoU score {float(np.ravel(scores)[index]):.3f}"
        ax.set_title(title)
        ax.axis("off")
    figure.tight_layout()
    return figure


def figure_to_array(figure):
    """Renders a matplotlib Figure to an (H, W, 3) uint8 array."""
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _outline(mask):
    inner = mask.copy()
    inner[1:] &= mask[:-1]
    inner[:-1] &= mask[1:]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return mask & ~inner


def render_overlay(image, predicted=None, truth=None, box=None, points=None, labels=None, text=None,
                   previous=None):
    """Draws what the model predicted against the truth, for TensorBoard or a PNG.

    Args:
        image: (H, W, 3) uint8 image.
        predicted: (H, W) boolean mask, filled translucent blue (the refined mask when `previous`
            is given).
        truth: (H, W) boolean mask, outlined in yellow.
        box: (x0, y0, x1, y1) prompt box in the image's pixels, drawn green.
        points: (N, 2) prompt points or clicks; `labels` 1 (positive) a green disc with a plus,
            0 (negative) a red disc with a minus.
        text: a line written at the top left (e.g. the sample's Dice and predicted IoU).
        previous: (H, W) boolean mask fed back to the model for refinement (SAM's input mask),
            outlined in magenta, thin, so the change the clicks made shows.

    Returns:
        (H, W, 3) uint8 array.
    """
    canvas = np.asarray(image, np.float32).copy()
    if predicted is not None:
        predicted = np.asarray(predicted, bool)
        canvas[predicted] = 0.5 * canvas[predicted] + 0.5 * np.asarray(MASK_COLOR, np.float32)
    if truth is not None:
        edge = _outline(np.asarray(truth, bool))
        thick = edge.copy()
        thick[1:] |= edge[:-1]
        thick[:, 1:] |= edge[:, :-1]
        canvas[thick] = TRUTH_COLOR
    if previous is not None:
        canvas[_outline(np.asarray(previous, bool))] = PREVIOUS_COLOR
    picture = Image.fromarray(canvas.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    if box is not None:
        draw.rectangle([float(v) for v in box], outline=BOX_COLOR, width=2)
    if points is not None:
        labels = np.ones(len(points)) if labels is None else np.ravel(labels)
        for (x, y), label in zip(np.reshape(points, (-1, 2)), labels):
            color = POSITIVE_COLOR if label == 1 else NEGATIVE_COLOR
            draw.ellipse([x - 5, y - 5, x + 5, y + 5], fill=color, outline=(255, 255, 255))
            draw.line([x - 3, y, x + 3, y], fill=(255, 255, 255), width=1)  # minus; plus when positive
            if label == 1:
                draw.line([x, y - 3, x, y + 3], fill=(255, 255, 255), width=1)
    if text:
        draw.rectangle([0, 0, 7 * len(text) + 6, 14], fill=(0, 0, 0))
        draw.text((3, 1), text, fill=(255, 255, 255))
    return np.asarray(picture)


def tile(images, columns=4):
    """Arranges equal-sized (H, W, 3) images in a grid, row by row."""
    images = list(images)
    rows = -(-len(images) // columns)
    height, width = images[0].shape[:2]
    columns = min(columns, len(images))
    grid = np.zeros((rows * height, columns * width, 3), np.uint8)
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        grid[row * height:(row + 1) * height, column * width:(column + 1) * width] = image
    return grid


def click_curves_figure(curves, threshold_lines=(0.85, 0.90)):
    """Dice against the number of clicks, one line per model: a matplotlib Figure.

    Args:
        curves: {name: [mean Dice after 1..K clicks]}, e.g. {"before": [...], "fine-tuned": [...]}.
        threshold_lines: Dice levels drawn as dotted lines (NoC@85 and NoC@90 count clicks to them).
    """
    figure = Figure(figsize=(5, 3.5), dpi=100)
    ax = figure.add_subplot()
    for name, dice in curves.items():
        ax.plot(np.arange(1, len(dice) + 1), dice, marker="o", markersize=3, label=name)
    for level in threshold_lines:
        ax.axhline(level, color="grey", linestyle=":", linewidth=1)
        # Named under the line at the right end: the Dice NoC@85 / NoC@90 count clicks to.
        ax.annotate(f"Dice {level:.2f} (NoC@{round(level * 100)})", xy=(1.0, level),
                    xycoords=("axes fraction", "data"), xytext=(-3, -2), textcoords="offset points",
                    ha="right", va="top", fontsize=7, color="grey")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("clicks")
    ax.set_ylabel("mean Dice")
    ax.set_title("Dice after k simulated corrective clicks")
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    figure.tight_layout()
    return figure
