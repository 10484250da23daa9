"""Surface metrics of a predicted mask against the true one: HD95 and NSD, in mm or pixels.

Dice and IoU count pixels; surface metrics measure how far the predicted outline strays from the
true one, which is what a wandering boundary spoils even when the overlap looks good.

Definitions (2D masks, pixel-based boundaries, as medpy and MONAI compute them):
- A mask's *boundary* is its pixels with a 4-neighbour outside the mask. Pixels on the image's
  edge count as boundary: a lesion cut by the image frame is outlined by the frame there.
- Distances are Euclidean between pixel centres, scaled by the pixel spacing (row, column), so
  anisotropic pixels are measured in millimetres when the spacing is known, in pixels otherwise.
- **HD95**: the 95th percentile of the distances from each boundary pixel of either mask to the
  nearest boundary pixel of the other, pooled over both directions (medpy's `hd95`, which SAMed
  reports). Lower is better.
- **NSD** at a tolerance: the share of both boundaries lying within the tolerance of the other
  boundary, (|A within tol of B| + |B within tol of A|) / (|A| + |B|), counted in boundary pixels
  (MONAI's `compute_surface_dice`). MedSAM reports NSD with DeepMind's `surface-distance`, which
  weighs boundary elements by their length: the two agree closely on smooth outlines but are not
  identical. Higher is better, in [0, 1].

Edge cases:
- both masks empty: HD95 0 and NSD 1 (they agree there is nothing);
- one mask empty: NSD 0 and HD95 the image's diagonal (the largest distance two pixels of the
  image can have), a finite penalty so means over lesions stay defined.

No Keras here: every model family and the command line call these functions.
"""

import dataclasses

import numpy as np

DEFAULT_NSD_TOLERANCE = 2.0  # mm, as MedSAM uses for most targets
UNITS = ("auto", "mm", "px")
"""What HD95 and NSD are measured in: mm, px, or auto (mm where every lesion's spacing is known)."""
HD95_PERCENTILE = 95.0


@dataclasses.dataclass(frozen=True)
class SurfaceScores:
    """HD95 and NSD of one predicted mask, and the unit of HD95 and of the NSD tolerance."""

    hd95: float
    nsd: float
    unit: str  # "mm" when the pixel spacing is known, else "px"


def check_spacing(spacing, where="pixel spacing"):
    """Returns spacing as a (row, column) tuple of floats, or raises ValueError.

    Args:
        spacing: two positive, finite numbers (the height and width of a pixel).
        where: what to name in the error (e.g. the file the spacing came from).

    Returns:
        (row_spacing, column_spacing) as floats.
    """
    try:
        values = tuple(float(v) for v in np.ravel(np.asarray(spacing, dtype=object)))
    except (TypeError, ValueError):
        values = ()
    if len(values) != 2 or not all(np.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"{where} must be two positive numbers (row, column); got {spacing!r}")
    return values


def boundary(mask):
    """The boundary pixels of a 2D mask: mask pixels with a 4-neighbour outside it or the image.

    Args:
        mask: (H, W) array, nonzero inside.

    Returns:
        (H, W) bool array.
    """
    mask = np.asarray(mask, bool)
    if mask.ndim != 2:
        raise ValueError(f"masks must be 2D (H, W); got shape {mask.shape}")
    from scipy import ndimage  # here: the command line lists this module's defaults in --help

    # border_value=0: outside the image counts as outside the mask, so a lesion touching the frame
    # is outlined there (it is where the visible lesion ends).
    inner = ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(2, 1),
                                   border_value=0)
    return mask & ~inner


def directed_distances(from_mask, to_mask, spacing=(1.0, 1.0)):
    """Distances from each boundary pixel of `from_mask` to the nearest boundary pixel of `to_mask`.

    Args:
        from_mask, to_mask: (H, W) masks of the same shape, neither empty.
        spacing: (row, column) size of a pixel.

    Returns:
        1D float array, one distance per boundary pixel of `from_mask`, in the spacing's unit.
    """
    source, target = boundary(from_mask), boundary(to_mask)
    if not source.any() or not target.any():
        raise ValueError("directed_distances needs two non-empty masks")
    # The Euclidean distance transform of the complement gives, at every pixel, the distance to
    # the nearest target boundary pixel, with anisotropic sampling.
    from scipy import ndimage

    field = ndimage.distance_transform_edt(~target, sampling=spacing)
    return field[source]


def hd95(truth, predicted, spacing=None):
    """95th-percentile Hausdorff distance between two masks' boundaries (see the module notes).

    Args:
        truth, predicted: (H, W) masks.
        spacing: (row, column) pixel size in mm, or None for pixels.

    Returns:
        float, in mm with a spacing and in pixels without.

    Example:
        >>> a = np.zeros((20, 20), bool); a[5:10, 5:10] = True
        >>> hd95(a, np.roll(a, 2, axis=1), spacing=(1.0, 0.5))
        1.0
    """
    return surface_scores(truth, predicted, spacing).hd95


def nsd(truth, predicted, spacing=None, tolerance=DEFAULT_NSD_TOLERANCE):
    """Normalised surface Dice at `tolerance` (see the module notes).

    Args:
        truth, predicted: (H, W) masks.
        spacing: (row, column) pixel size in mm, or None for pixels.
        tolerance: how far a boundary may stray and still count, in the spacing's unit.

    Returns:
        float in [0, 1].
    """
    return surface_scores(truth, predicted, spacing, tolerance).nsd


def _crop_to_both(first, second):
    """Both masks cut to their joint bounding box plus one pixel, where the image has it.

    Distances between boundary pixels don't depend on what lies outside that box, and the margin
    keeps every crop edge that is not the image's own edge outside both masks, so the boundaries
    are those of the whole image; distance transforms of a large image then cost a lesion's size.
    """
    rows = np.flatnonzero((first | second).any(axis=1))
    cols = np.flatnonzero((first | second).any(axis=0))
    box = (slice(max(rows[0] - 1, 0), rows[-1] + 2), slice(max(cols[0] - 1, 0), cols[-1] + 2))
    return first[box], second[box]


def surface_scores(truth, predicted, spacing=None, tolerance=DEFAULT_NSD_TOLERANCE):
    """HD95 and NSD of `predicted` against `truth`, with the edge cases of the module notes.

    Args:
        truth, predicted: (H, W) masks of the same shape.
        spacing: (row, column) pixel size in mm, or None to measure in pixels.
        tolerance: the NSD tolerance, in mm with a spacing and in pixels without.

    Returns:
        SurfaceScores(hd95, nsd, unit).
    """
    truth, predicted = np.asarray(truth, bool), np.asarray(predicted, bool)
    if truth.shape != predicted.shape:
        raise ValueError(f"masks differ in shape: {truth.shape} and {predicted.shape}")
    if not (np.isfinite(tolerance) and tolerance >= 0):
        raise ValueError(f"the NSD tolerance must be a number >= 0; got {tolerance}")
    unit = "px" if spacing is None else "mm"
    spacing = (1.0, 1.0) if spacing is None else check_spacing(spacing)
    has_truth, has_predicted = truth.any(), predicted.any()
    if not has_truth and not has_predicted:
        return SurfaceScores(0.0, 1.0, unit)
    if not has_truth or not has_predicted:
        height, width = truth.shape
        diagonal = float(np.hypot((height - 1) * spacing[0], (width - 1) * spacing[1]))
        return SurfaceScores(diagonal, 0.0, unit)
    truth, predicted = _crop_to_both(truth, predicted)
    forward = directed_distances(truth, predicted, spacing)
    backward = directed_distances(predicted, truth, spacing)
    pooled = np.concatenate([forward, backward])
    within = np.count_nonzero(forward <= tolerance) + np.count_nonzero(backward <= tolerance)
    return SurfaceScores(float(np.percentile(pooled, HD95_PERCENTILE)), float(within / pooled.size), unit)
