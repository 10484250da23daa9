"""HD95 and NSD against cases worked out by hand, an independent brute force, and medpy."""

import numpy as np
import pytest
from scipy import ndimage

from keras_sam.common.surface_metrics import boundary, check_spacing, hd95, nsd, surface_scores


def square(shape, top, left, side):
    mask = np.zeros(shape, bool)
    mask[top:top + side, left:left + side] = True
    return mask


def disc_mm(shape, radius_mm, spacing):
    """A disc of `radius_mm` around the image centre, measured in mm (an ellipse in pixels)."""
    rows, cols = np.indices(shape)
    centre = (np.array(shape) - 1) / 2
    return np.hypot((rows - centre[0]) * spacing[0], (cols - centre[1]) * spacing[1]) <= radius_mm


def test_offset_squares_with_anisotropic_pixels():
    # Two 20x20 squares, the second 3 rows lower; pixels 2 mm tall and 0.5 mm wide. Each boundary
    # has 76 pixels. The top row of the first (20 pixels) and the bottom row of the second (20) are
    # exactly 3 rows = 6 mm from the other outline; every other boundary pixel is at most 9 columns
    # = 4.5 mm from it. 40 of 152 pixels at the maximum is more than 5%, so HD95 is 6 mm.
    first, second = square((50, 50), 10, 10, 20), square((50, 50), 13, 10, 20)
    spacing = (2.0, 0.5)
    assert hd95(first, second, spacing) == pytest.approx(6.0)
    assert nsd(first, second, spacing, tolerance=5.0) == pytest.approx(112 / 152)
    assert nsd(first, second, spacing, tolerance=6.0) == pytest.approx(1.0)
    # The same picture transposed, with the spacing swapped, is the same geometry.
    assert hd95(first.T, second.T, spacing[::-1]) == pytest.approx(6.0)
    assert nsd(first.T, second.T, spacing[::-1], tolerance=5.0) == pytest.approx(112 / 152)
    # Transposed but with the spacing left as it was, the shift is 3 columns of 0.5 mm.
    assert hd95(first.T, second.T, spacing) <= 1.5 + 1e-9


def test_concentric_discs_in_millimetres_on_anisotropic_pixels():
    # Discs of 20 mm and 26 mm around one centre, on pixels 0.5 mm tall and 1 mm wide (ellipses in
    # pixels). Every boundary point of one is 6 mm from the other's outline, up to the pixel
    # grid: the outline is off by at most one pixel (1 mm here) on each side.
    spacing = (0.5, 1.0)
    inner, outer = disc_mm((140, 80), 20.0, spacing), disc_mm((140, 80), 26.0, spacing)
    scores = surface_scores(inner, outer, spacing, tolerance=3.0)
    assert scores.unit == "mm"
    assert abs(scores.hd95 - 6.0) <= 1.0
    assert scores.nsd == 0.0  # nothing is within 3 mm: the outlines are about 6 mm apart
    assert nsd(inner, outer, spacing, tolerance=8.0) == 1.0
    # Without the spacing the same masks are measured in pixels: 12 rows apart at the poles.
    in_pixels = surface_scores(inner, outer)
    assert in_pixels.unit == "px"
    assert in_pixels.hd95 > 8.0


def test_lesion_at_the_image_border_is_outlined_by_the_frame():
    # A mask filling the whole 10x10 image has the frame as its boundary (36 pixels); the
    # prediction misses the last row (boundary 34 pixels). The truth's bottom row (10 pixels) and the
    # prediction's inner bottom row (8) are 1 pixel from the other outline; the rest are on it.
    truth = np.ones((10, 10), bool)
    predicted = truth.copy()
    predicted[9] = False
    assert boundary(truth).sum() == 36
    assert hd95(truth, predicted) == pytest.approx(1.0)
    assert nsd(truth, predicted, tolerance=0.5) == pytest.approx(52 / 70)
    assert surface_scores(truth, truth).hd95 == 0.0 and surface_scores(truth, truth).nsd == 1.0


def test_empty_masks():
    empty = np.zeros((30, 40), bool)
    lesion = square((30, 40), 5, 5, 8)
    assert surface_scores(empty, empty).unit == "px"
    both = surface_scores(empty, empty, (0.5, 0.5))
    assert (both.hd95, both.nsd, both.unit) == (0.0, 1.0, "mm")
    for truth, predicted in ((lesion, empty), (empty, lesion)):
        one = surface_scores(truth, predicted, spacing=(2.0, 1.0))
        # The penalty is the image's diagonal between pixel centres: 29 rows of 2 mm, 39 of 1 mm.
        assert one.hd95 == pytest.approx(np.hypot(58.0, 39.0))
        assert one.nsd == 0.0


@pytest.mark.parametrize("spacing", [(0, 1), (1.0, -2.0), (float("nan"), 1.0), (1.0,), "1,1"])
def test_bad_spacing_is_refused(spacing):
    with pytest.raises(ValueError, match="two positive numbers"):
        check_spacing(spacing, where="scan.dcm's PixelSpacing")


def test_masks_of_different_shapes_are_refused():
    with pytest.raises(ValueError, match="differ in shape"):
        surface_scores(np.ones((4, 4)), np.ones((4, 5)))


def random_blob(rng, shape):
    noise = ndimage.gaussian_filter(rng.normal(size=shape), sigma=rng.uniform(2.0, 5.0))
    return noise > np.quantile(noise, rng.uniform(0.6, 0.9))


def brute_force(truth, predicted, spacing, tolerance):
    """An independent implementation: explicit 4-neighbour boundaries and all pairwise distances."""
    def edge(mask):
        padded = np.pad(mask, 1)
        inside = padded[1:-1, 1:-1]
        has_outside_neighbour = (~padded[:-2, 1:-1] | ~padded[2:, 1:-1] |
                                 ~padded[1:-1, :-2] | ~padded[1:-1, 2:])
        return np.argwhere(inside & has_outside_neighbour) * np.asarray(spacing)

    a, b = edge(truth), edge(predicted)
    pairwise = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    forward, backward = pairwise.min(axis=1), pairwise.min(axis=0)
    pooled = np.concatenate([forward, backward])
    within = (forward <= tolerance).sum() + (backward <= tolerance).sum()
    return np.percentile(pooled, 95), within / pooled.size


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("padding", [((0, 0), (0, 0)), ((5, 17), (0, 9))])
def test_random_shapes_match_a_brute_force_implementation(seed, padding):
    # Padded, the shapes lie inside a larger image on some sides and touch its edge on others.
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(30, 60)), int(rng.integers(30, 60)))
    truth, predicted = np.pad(random_blob(rng, shape), padding), np.pad(random_blob(rng, shape), padding)
    spacing = (float(rng.uniform(0.2, 2.0)), float(rng.uniform(0.2, 2.0)))
    tolerance = float(rng.uniform(0.5, 4.0))
    expected_hd95, expected_nsd = brute_force(truth, predicted, spacing, tolerance)
    scores = surface_scores(truth, predicted, spacing, tolerance)
    assert scores.hd95 == pytest.approx(expected_hd95, rel=1e-9)
    assert scores.nsd == pytest.approx(expected_nsd, rel=1e-9)


@pytest.mark.parametrize("seed", range(6))
def test_hd95_matches_medpy_on_random_shapes(seed):
    # medpy.metric.binary.hd95 (the implementation SAMed reports with) is the reference.
    binary = pytest.importorskip("medpy.metric.binary")
    rng = np.random.default_rng(100 + seed)
    shape = (int(rng.integers(40, 90)), int(rng.integers(40, 90)))
    truth, predicted = random_blob(rng, shape), random_blob(rng, shape)
    spacing = (float(rng.uniform(0.1, 1.5)), float(rng.uniform(0.1, 1.5)))
    assert hd95(truth, predicted, spacing) == pytest.approx(
        binary.hd95(predicted, truth, voxelspacing=spacing), rel=1e-9)


def test_nsd_is_close_to_deepminds_surface_distance_on_smooth_shapes():
    # DeepMind's surface-distance (used by MedSAM's NSD) weighs boundary elements by their length,
    # so it is not identical to the pixel count here; on smooth outlines the two agree closely.
    metrics = pytest.importorskip("surface_distance")
    spacing = (0.6, 0.9)
    for radius, shift in ((15.0, 1), (18.0, 3), (12.0, 5)):
        truth = disc_mm((90, 70), radius, spacing)
        predicted = np.roll(disc_mm((90, 70), radius * 1.1, spacing), shift, axis=0)
        distances = metrics.compute_surface_distances(truth, predicted, spacing)
        reference = metrics.compute_surface_dice_at_tolerance(distances, 2.0)
        assert nsd(truth, predicted, spacing, tolerance=2.0) == pytest.approx(reference, abs=0.05)
