"""Hand-computed checks of evaluation.metrics (Dice, surfel NSD, HD95) and their edge cases."""
import math

import numpy as np
import pytest

from evaluation import metrics


def box(shape, lower, upper):
    mask = np.zeros(shape, bool)
    mask[tuple(slice(lo, hi) for lo, hi in zip(lower, upper))] = True
    return mask


# --------------------------------------------------------------------------- surfel areas

def test_surfel_table_single_corner_face_and_complement():
    s0, s1, s2 = 2.5, 0.8, 0.6
    table = metrics.surfel_area_table((s0, s1, s2))
    # one corner inside: the triangle through the midpoints of its three edges,
    # (s0/2,0,0), (0,s1/2,0), (0,0,s2/2): area = ½|(−s0/2, s1/2, 0) × (−s0/2, 0, s2/2)|
    # = ½ √((s1 s2/4)² + (s0 s2/4)² + (s0 s1/4)²) = ⅛ √(s1²s2² + s0²s2² + s0²s1²)
    corner = math.sqrt(s1 ** 2 * s2 ** 2 + s0 ** 2 * s2 ** 2 + s0 ** 2 * s1 ** 2) / 8
    for a in (0, 1):
        for b in (0, 1):
            for c in (0, 1):
                code = 1 << (4 * a + 2 * b + c)
                assert table[code] == pytest.approx(corner, rel=1e-12)
                # complement (7 corners inside) bounds the same region: same area
                assert table[255 - code] == pytest.approx(corner, rel=1e-12)
    # the four corners with a = 0 inside: a plane square ⟂ axis 0 of area s1·s2
    face_a0 = sum(1 << (2 * b + c) for b in (0, 1) for c in (0, 1))
    assert table[face_a0] == pytest.approx(s1 * s2, rel=1e-12)
    # two corners along axis 2 inside: rectangle of length s2, width ½√(s0² + s1²)
    edge_axis2 = (1 << 0) | (1 << 1)
    assert table[edge_axis2] == pytest.approx(s2 * 0.5 * math.hypot(s0, s1), rel=1e-12)
    assert table[0] == 0 and table[255] == 0
    assert np.allclose(table, table[::-1])  # every code and its complement


def test_single_voxel_surface_area_is_eight_corner_triangles():
    # a lone voxel's surface is 8 corner triangles; at unit spacing each is √3/8, total √3
    mask = box((3, 3, 3), (1, 1, 1), (2, 2, 2))
    distances = metrics.surface_distances(mask, mask, (1.0, 1.0, 1.0))
    assert len(distances.reference_areas) == 8
    assert distances.reference_areas.sum() == pytest.approx(math.sqrt(3))


# --------------------------------------------------------------------------- Dice / NSD

def test_identical_masks_score_one():
    mask = box((12, 14, 16), (2, 3, 4), (7, 9, 12))
    spacing = (2.5, 0.8, 0.8)
    assert metrics.dice(mask, mask) == 1.0
    assert metrics.normalised_surface_dice(mask, mask, spacing, 0.0) == 1.0
    assert metrics.hd95(mask, mask, spacing) == 0.0


def test_disjoint_far_apart_masks_score_zero():
    a = box((10, 40, 10), (2, 2, 2), (5, 6, 5))
    b = box((10, 40, 10), (2, 30, 2), (5, 34, 5))
    # closest surfels are 24 voxels × 1 mm apart along axis 1, far beyond τ = 5 mm
    assert metrics.dice(a, b) == 0.0
    assert metrics.normalised_surface_dice(a, b, (1.0, 1.0, 1.0), 5.0) == 0.0


# Box of 3 × 4 × 4 voxels (axis 0 = z, spacing 2.5 mm; axes 1, 2 = y, x, spacing 0.8 mm),
# compared with the same box shifted by one voxel along z. The surfels of a box sit on the voxel
# corners of its outer surface; by hand, their areas (mm²) are:
#   face ⟂ z (top/bottom face interior, (4−1)(4−1) = 9 per face): 0.8·0.8              = 0.64
#   face ∥ z (side-face interior, (3−1)(4−1) = 6 per face, 4 faces): 2.5·0.8            = 2.0
#   edge ∥ x or y at a z-end (3 per edge, 8 such edges → 24): 0.8·½√(2.5²+0.8²)          = 1.049952
#   edge ∥ z (2 per edge, 4 edges → 8): 2.5·½√(0.8²+0.8²)                               = 1.414214
#   corner (8): ⅛√(2.5²·0.8² + 2.5²·0.8² + 0.8²·0.8²) = ⅛√8.4096                          = 0.362491
#   total = 18·0.64 + 24·2.0 + 24·1.049952 + 8·1.414214 + 8·0.362491                     = 98.93250
# Distances from the reference's surfels to the shifted box's surfels:
#   * side surfels with 1 ≤ z ≤ 3 (incl. the top rim) lie on the other surface: 0 mm;
#   * the whole bottom face (9 faces + 12 edge points + 4 corners) is 2.5 mm from the other's bottom;
#   * the 9 top-face interior points are 0.8 or 1.6 mm from the other's side faces (< 2.5 mm).
# The shifted box's surfels mirror this (its top face at 2.5 mm, its bottom interior at 0.8/1.6 mm).
S_Z, S_XY = 2.5, 0.8
FACE_Z = S_XY * S_XY
EDGE_XY = S_XY * 0.5 * math.sqrt(S_Z ** 2 + S_XY ** 2)
EDGE_Z = S_Z * 0.5 * math.sqrt(2 * S_XY ** 2)
CORNER = math.sqrt(2 * S_Z ** 2 * S_XY ** 2 + S_XY ** 4) / 8
TOTAL = 18 * FACE_Z + 24 * S_Z * S_XY + 24 * EDGE_XY + 8 * EDGE_Z + 8 * CORNER
BOTTOM_FACE = 9 * FACE_Z + 12 * EDGE_XY + 4 * CORNER      # at 2.5 mm
TOP_INTERIOR = 9 * FACE_Z                                 # at 0.8 or 1.6 mm


def shifted_boxes():
    reference = box((8, 8, 8), (2, 2, 2), (5, 6, 6))
    prediction = box((8, 8, 8), (3, 2, 2), (6, 6, 6))
    return reference, prediction, (S_Z, S_XY, S_XY)


def test_hand_computed_areas_add_up():
    assert TOTAL == pytest.approx(98.93250, abs=1e-4)
    reference, _, spacing = shifted_boxes()
    areas = metrics.surface_distances(reference, reference, spacing).reference_areas
    assert areas.sum() == pytest.approx(TOTAL, rel=1e-12)


@pytest.mark.parametrize("tolerance, expected", [
    # τ = 0.5 < 0.8: only the surfels at 0 mm count; both surfaces lose BOTTOM_FACE + TOP_INTERIOR
    # NSD = 1 − (19.80940 + 5.76) / 98.93250 = 0.741547
    (0.5, 1 - (BOTTOM_FACE + TOP_INTERIOR) / TOTAL),
    # 1.6 ≤ τ = 2.0 < 2.5 (the z spacing): the top interior counts, the bottom face does not
    # NSD = 1 − 19.80940 / 98.93250 = 0.799769
    (2.0, 1 - BOTTOM_FACE / TOTAL),
    # τ = 3.0 ≥ 2.5: every surfel is within tolerance
    (3.0, 1.0),
])
def test_box_shifted_along_anisotropic_axis(tolerance, expected):
    reference, prediction, spacing = shifted_boxes()
    assert metrics.normalised_surface_dice(reference, prediction, spacing, tolerance) == pytest.approx(expected, abs=1e-12)
    # symmetric in its arguments
    assert metrics.normalised_surface_dice(prediction, reference, spacing, tolerance) == pytest.approx(expected, abs=1e-12)


def test_box_shifted_dice_and_hd95():
    reference, prediction, spacing = shifted_boxes()
    # overlap 2 slices of 4·4 voxels, each box 3 slices: 2·32 / (48 + 48)
    assert metrics.dice(reference, prediction) == pytest.approx(2 / 3)
    # the bottom face, 19.8/98.9 = 20 % of the area (> 5 %), is the farthest at 2.5 mm
    assert BOTTOM_FACE / TOTAL > 0.05
    assert metrics.hd95(reference, prediction, spacing) == pytest.approx(2.5)


def test_hd95_two_single_voxels():
    # voxel A at index 2, B at index 5 along axis 0 (1.5 mm): A's corners at voxel-corner
    # positions 2 and 3, B's at 5 and 6. A's four corners at 3 are 2 voxels = 3.0 mm from B,
    # the four at 2 are 4.5 mm; all 8 corner triangles have the same area, so the 95th
    # percentile (area ≥ 95 %) is reached only by the last, 4.5 mm; B mirrors A.
    a = box((8, 4, 4), (2, 1, 1), (3, 2, 2))
    b = box((8, 4, 4), (5, 1, 1), (6, 2, 2))
    spacing = (1.5, 1.0, 1.0)
    assert metrics.hd95(a, b, spacing) == pytest.approx(4.5)
    # at τ = 3 mm exactly half of each surface (4 of 8 equal triangles) is within tolerance
    assert metrics.normalised_surface_dice(a, b, spacing, 3.0) == pytest.approx(0.5)
    assert metrics.dice(a, b) == 0.0


# --------------------------------------------------------------------------- edge cases

def test_both_empty():
    empty = np.zeros((5, 6, 7), bool)
    assert metrics.dice(empty, empty) == 1.0
    assert metrics.normalised_surface_dice(empty, empty, (1, 1, 1), 1.0) == 1.0
    assert metrics.hd95(empty, empty, (1, 1, 1)) == 0.0
    scores = metrics.score_label(empty.astype(np.uint8), empty.astype(np.uint8), 1, (1, 1, 1), 1.0)
    assert scores["status"] == "both_empty" and scores["dice"] == 1.0 and scores["nsd"] == 1.0


@pytest.mark.parametrize("empty_side", ["reference", "prediction"])
def test_one_empty(empty_side):
    full = box((6, 6, 6), (1, 1, 1), (4, 4, 4))
    empty = np.zeros_like(full)
    reference, prediction = (empty, full) if empty_side == "reference" else (full, empty)
    assert metrics.dice(reference, prediction) == 0.0
    assert metrics.normalised_surface_dice(reference, prediction, (1, 1, 1), 100.0) == 0.0
    assert math.isnan(metrics.hd95(reference, prediction, (1, 1, 1)))
    scores = metrics.score_label(reference.astype(np.uint8), prediction.astype(np.uint8), 1, (1, 1, 1), 1.0)
    assert scores["status"] == empty_side + "_empty"
    assert scores["dice"] == 0.0 and scores["nsd"] == 0.0


def test_crop_and_border_do_not_change_the_result():
    # an object touching the array border is closed by the padding: embedding the same pair in a
    # larger empty array must give the same numbers
    rng = np.random.default_rng(3)
    a = rng.random((6, 7, 8)) > 0.5
    b = rng.random((6, 7, 8)) > 0.5
    big_a, big_b = np.zeros((15, 16, 17), bool), np.zeros((15, 16, 17), bool)
    big_a[4:10, 5:12, 3:11], big_b[4:10, 5:12, 3:11] = a, b
    spacing = (1.7, 0.6, 1.1)
    for tolerance in (0.6, 1.2, 2.0):
        assert metrics.normalised_surface_dice(a, b, spacing, tolerance) == pytest.approx(
            metrics.normalised_surface_dice(big_a, big_b, spacing, tolerance), abs=1e-12)
    assert metrics.hd95(a, b, spacing) == pytest.approx(metrics.hd95(big_a, big_b, spacing))


def test_score_case_per_label():
    reference = np.zeros((10, 10, 10), np.uint8)
    reference[1:4, 1:4, 1:4] = 1
    reference[6:9, 6:9, 6:9] = 2
    prediction = reference.copy()
    prediction[prediction == 2] = 0          # label 2 not predicted
    prediction[1:4, 1:4, 4] = 1               # label 1: 9 extra voxels
    scores = metrics.score_case(reference, prediction, [1, 2, 3], (1.0, 1.0, 1.0), 1.0)
    assert scores[1]["dice"] == pytest.approx(2 * 27 / (27 + 36))
    assert scores[1]["reference_voxels"] == 27 and scores[1]["prediction_voxels"] == 36
    assert scores[2]["status"] == "prediction_empty" and scores[2]["dice"] == 0.0
    assert scores[3]["status"] == "both_empty" and scores[3]["dice"] == 1.0


def test_bad_input_is_refused():
    mask = np.zeros((4, 4, 4), bool)
    with pytest.raises(ValueError, match="shape"):
        metrics.dice(mask, np.zeros((4, 4, 5), bool))
    with pytest.raises(ValueError, match="spacing"):
        metrics.surface_distances(mask, mask, (1.0, 1.0))
    with pytest.raises(ValueError, match="tolerance"):
        metrics.normalised_surface_dice(mask, mask, (1, 1, 1), -1.0)
    with pytest.raises(ValueError, match="3-D"):
        metrics.dice(np.zeros((4, 4), bool), np.zeros((4, 4), bool))


# --------------------------------------------------------------------------- published code

@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the package uses scipy's deprecated namespaces
def test_matches_deepmind_surface_distance_package():
    """Against the Decathlon's published implementation (pip package ``surface-distance``, a test extra)."""
    import surface_distance  # a test extra (setup.py): installed by the README's test command, never skipped
    from scipy import ndimage
    from surface_distance import lookup_tables

    rng = np.random.default_rng(0)
    for spacing in [(1.0, 1.0, 1.0), (2.5, 0.8, 0.8), (0.7, 3.0, 1.3)]:
        assert np.allclose(metrics.surfel_area_table(spacing),
                           lookup_tables.create_table_neighbour_code_to_surface_area(spacing), atol=1e-12)
    for trial in range(4):
        shape = (24, 30, 20)
        a = ndimage.gaussian_filter(rng.standard_normal(shape), 2) > 0.1
        b = ndimage.gaussian_filter(rng.standard_normal(shape), 2) > 0.1
        spacing = tuple(rng.uniform(0.5, 3.0, 3))
        published = surface_distance.compute_surface_distances(a, b, spacing)
        for tolerance in (0.5, 1.0, 2.0, 5.0):
            assert abs(metrics.normalised_surface_dice(a, b, spacing, tolerance)
                       - surface_distance.compute_surface_dice_at_tolerance(published, tolerance)) <= 1e-6
        assert abs(metrics.hd95(a, b, spacing) - surface_distance.compute_robust_hausdorff(published, 95)) <= 1e-6
        assert abs(metrics.dice(a, b) - surface_distance.compute_dice_coefficient(a, b)) <= 1e-6
