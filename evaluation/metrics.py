"""Segmentation metrics as the Medical Segmentation Decathlon leaderboard scores them.

All functions are pure: numpy arrays in, floats out. Masks are 3-D arrays indexed like the
array SimpleITK returns (z, y, x); ``spacing`` is given in the *same axis order* as the array
(i.e. ``image.GetSpacing()[::-1]``), in millimetres.

Dice
    DSC(R, P) = 2 |R ∩ P| / (|R| + |P|), counted in voxels.

Normalised Surface Distance (NSD, "surface Dice" at tolerance τ; Nikolov et al. 2018,
arXiv:1809.04430, used by the Decathlon, Antonelli et al. 2022)
    Let ∂R and ∂P be the two surfaces, each cut into surface elements ("surfels") s with area
    a(s) and a position x(s). With d(x, ∂Q) the distance from x to the nearest surfel of ∂Q,

        NSD_τ(R, P) = ( Σ_{s∈∂R, d(x(s),∂P) ≤ τ} a(s) + Σ_{s∈∂P, d(x(s),∂R) ≤ τ} a(s) )
                      / ( Σ_{s∈∂R} a(s) + Σ_{s∈∂P} a(s) ).

    The surface is the marching-cubes surface of the binary mask: the grid of voxel corners
    (shifted half a voxel from the voxel centres) is scanned with a 2x2x2 window; each window
    is a cube whose 8 corners are voxels in/out of the mask, encoded as an 8-bit code. A cube
    with mixed corners holds the piece of surface that marching cubes puts there (vertices at
    the edge midpoints), whose area is computed in millimetres for the actual, possibly
    anisotropic, spacing; the surfel's position is the cube's centre. Distances are Euclidean in
    millimetres between those cube centres. This is the method of DeepMind's ``surface-distance``
    package, which the Decathlon organisers published for the NSD
    (http://medicaldecathlon.com/files/Surface_distance_based_measures.ipynb). nnU-Net v1's own
    ``normalized_surface_dice`` counts boundary *voxels* instead and is, by its author's word, not
    comparable to it (https://github.com/MIC-DKFZ/nnUNet/issues/392).

HD95 (extra, not on the leaderboard)
    For each direction, the area-weighted 95th percentile of the surfel distances: the smallest
    distance d such that the surfels within d of the other surface hold at least 95 % of the
    surface area; HD95 is the larger of the two directions.

Edge cases (the conventions, also used by ``score_label``):
    * both masks empty: Dice = 1, NSD = 1, HD95 = 0. An empty reference that is correctly left
      empty is a perfect answer (e.g. a liver with no tumour); NaN would silently drop the case
      from means and so not reward the right call. The Decathlon's published evaluation code
      (DeepMind's) returns NaN here; what the leaderboard then records for such a case is not
      documented anywhere we could find, so this choice is ours and is flagged ``both_empty``
      in the per-case output so that users can filter it.
    * exactly one mask empty: Dice = 0, NSD = 0 (no surfel of either surface lies within τ of the
      other), HD95 = NaN (undefined: there is no second surface to measure to).
    * a missing prediction (handled in ``evaluation.evaluate``): every label scores 0, as on the
      leaderboard.
"""
import functools
import itertools
from dataclasses import dataclass
from typing import Dict, Iterable, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

#: the metrics ``score_label`` returns, in report order
METRICS = ("dice", "nsd", "hd95")


# --------------------------------------------------------------------------- Dice

def dice(reference: np.ndarray, prediction: np.ndarray) -> float:
    """Volumetric Dice 2|R∩P| / (|R|+|P|) of two boolean masks; 1.0 when both are empty."""
    reference, prediction = _as_bool_pair(reference, prediction)
    total = int(reference.sum()) + int(prediction.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(reference, prediction).sum()) / total


# --------------------------------------------------------------------------- surfels

def _corner_bit(a: int, b: int, c: int) -> int:
    """Bit of the neighbour code that holds the cube corner at offset (a, b, c) ∈ {0,1}³."""
    return 4 * a + 2 * b + c


@functools.lru_cache(maxsize=1)
def _unit_surfel_normals() -> Tuple[np.ndarray, np.ndarray]:
    """Marching-cubes triangles of each of the 256 cube configurations, for unit spacing.

    Returns ``(codes, normals)``: one row per triangle, ``normals[t] = ½ (v1−v0) × (v2−v0)``
    (its length is the triangle's area) and ``codes[t]`` the configuration it belongs to.

    The triangles come from scikit-image's implementation of Lorensen & Cline's marching cubes
    (scikit-image >= 0.19, a dependency of nnU-Net), run on the single 2x2x2 cube. A configuration with
    more than four corners inside is triangulated through its complement, which bounds the same
    region, so that a code and its complement get the same surface. Both choices reproduce the
    surfel areas of the Decathlon's reference code for every one of the 256 codes (checked in
    tests/test_metrics.py against the ``surface-distance`` package when it is installed).
    """
    from skimage.measure import marching_cubes  # deferred: only needed once per process

    codes, normals = [], []
    for code in range(1, 255):
        inside = code if bin(code).count("1") <= 4 else 255 - code
        cube = np.zeros((2, 2, 2), np.float32)
        for a, b, c in itertools.product((0, 1), repeat=3):
            cube[a, b, c] = (inside >> _corner_bit(a, b, c)) & 1
        vertices, faces, _, _ = marching_cubes(cube, level=0.5, method="lorensen",
                                               allow_degenerate=True)
        triangles = vertices[faces].astype(np.float64)
        cross = 0.5 * np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
        codes.append(np.full(len(cross), code))
        normals.append(cross)
    return np.concatenate(codes), np.concatenate(normals)


@functools.lru_cache(maxsize=64)
def surfel_area_table(spacing: Tuple[float, float, float]) -> np.ndarray:
    """Area in mm² of the surface inside a 2x2x2 cube, for each of the 256 neighbour codes.

    Scaling the axes by (s0, s1, s2) maps a triangle's area vector n = ½ (e1 × e2) to
    (s1·s2·n0, s0·s2·n1, s0·s1·n2) (each component is an area in the plane of the other two
    axes), so a triangle's area at that spacing is the norm of that vector. Codes 0 and 255
    (cube all outside / all inside) hold no surface: area 0.
    """
    s0, s1, s2 = (float(s) for s in spacing)
    codes, normals = _unit_surfel_normals()
    scaled = normals * np.array([s1 * s2, s0 * s2, s0 * s1])
    return np.bincount(codes, weights=np.linalg.norm(scaled, axis=1), minlength=256)


def neighbour_codes(mask: np.ndarray) -> np.ndarray:
    """8-bit code of every 2x2x2 window of the mask, padded by one empty voxel on each side.

    The output has shape ``mask.shape + 1``; entry (i, j, k) describes the cube whose corners are
    voxels (i-1..i, j-1..j, k-1..k) of ``mask``, i.e. the voxel corner half a voxel before voxel
    (i, j, k). The padding closes the surface of objects that touch the array's border.
    """
    padded = np.pad(np.asarray(mask, dtype=bool), 1).astype(np.uint8)
    out_shape = tuple(n + 1 for n in mask.shape)
    code = np.zeros(out_shape, np.uint8)
    for a, b, c in itertools.product((0, 1), repeat=3):
        window = padded[a:a + out_shape[0], b:b + out_shape[1], c:c + out_shape[2]]
        code |= window << _corner_bit(a, b, c)
    return code


@dataclass(frozen=True)
class SurfaceDistances:
    """Surfels of both surfaces with their area (mm²) and distance (mm) to the other surface.

    A surface that does not exist (empty mask) has no surfels; the other surface's distances are
    then ``inf``.
    """
    reference_to_prediction: np.ndarray
    reference_areas: np.ndarray
    prediction_to_reference: np.ndarray
    prediction_areas: np.ndarray


def surface_distances(reference: np.ndarray, prediction: np.ndarray,
                      spacing: Sequence[float]) -> SurfaceDistances:
    """Surfels of both masks and the distance of each to the other mask's surface.

    The work is done on the bounding box of both masks only: the surfels lie in that box padded
    by one voxel corner, and so does every nearest neighbour, so cropping changes nothing.
    Nearest surfels are found with a k-d tree over the other surface's cube centres (in mm),
    which gives exactly the distances a distance transform on that grid would give, at a
    fraction of the cost for large volumes.
    """
    reference, prediction = _as_bool_pair(reference, prediction)
    spacing = _check_spacing(spacing, reference.ndim)
    box = bounding_box(reference | prediction)
    if box is None:
        empty = np.zeros(0)
        return SurfaceDistances(empty, empty, empty, empty)
    reference, prediction = reference[box], prediction[box]

    areas = surfel_area_table(tuple(spacing))
    ref_code, pred_code = neighbour_codes(reference), neighbour_codes(prediction)
    ref_surface = (ref_code != 0) & (ref_code != 255)
    pred_surface = (pred_code != 0) & (pred_code != 255)
    ref_points = np.argwhere(ref_surface) * spacing
    pred_points = np.argwhere(pred_surface) * spacing
    return SurfaceDistances(
        reference_to_prediction=_nearest_distances(ref_points, pred_points),
        reference_areas=areas[ref_code[ref_surface]],
        prediction_to_reference=_nearest_distances(pred_points, ref_points),
        prediction_areas=areas[pred_code[pred_surface]],
    )


def _nearest_distances(points: np.ndarray, targets: np.ndarray) -> np.ndarray:
    if len(points) == 0:
        return np.zeros(0)
    if len(targets) == 0:
        return np.full(len(points), np.inf)
    return cKDTree(targets).query(points)[0]


# --------------------------------------------------------------------------- NSD and HD95

def nsd_from_distances(distances: SurfaceDistances, tolerance_mm: float) -> float:
    """NSD at tolerance τ from precomputed surfels (see the module docstring); 1.0 if no surfels."""
    total = distances.reference_areas.sum() + distances.prediction_areas.sum()
    if total == 0:
        return 1.0
    within = (distances.reference_areas[distances.reference_to_prediction <= tolerance_mm].sum()
              + distances.prediction_areas[distances.prediction_to_reference <= tolerance_mm].sum())
    return float(within / total)


def normalised_surface_dice(reference: np.ndarray, prediction: np.ndarray,
                            spacing: Sequence[float], tolerance_mm: float) -> float:
    """NSD of two boolean masks at ``tolerance_mm`` (surfel areas, anisotropic ``spacing``)."""
    _check_tolerance(tolerance_mm)
    return nsd_from_distances(surface_distances(reference, prediction, spacing), tolerance_mm)


def _weighted_percentile(distances: np.ndarray, areas: np.ndarray, percentile: float) -> float:
    """Smallest d with Σ_{dist ≤ d} area ≥ percentile % of Σ area."""
    order = np.argsort(distances, kind="stable")
    cumulative = np.cumsum(areas[order]) / areas.sum()
    index = int(np.searchsorted(cumulative, percentile / 100.0))
    return float(distances[order][min(index, len(order) - 1)])


def hausdorff_from_distances(distances: SurfaceDistances, percentile: float = 95.0) -> float:
    """Area-weighted percentile Hausdorff distance (mm): 0 if both surfaces are absent,
    NaN if only one is."""
    n_ref, n_pred = len(distances.reference_areas), len(distances.prediction_areas)
    if n_ref == 0 and n_pred == 0:
        return 0.0
    if n_ref == 0 or n_pred == 0:
        return float("nan")
    return max(_weighted_percentile(distances.reference_to_prediction, distances.reference_areas, percentile),
               _weighted_percentile(distances.prediction_to_reference, distances.prediction_areas, percentile))


def hd95(reference: np.ndarray, prediction: np.ndarray, spacing: Sequence[float]) -> float:
    """95th-percentile Hausdorff distance in mm (area-weighted surfels, both directions)."""
    return hausdorff_from_distances(surface_distances(reference, prediction, spacing), 95.0)


# --------------------------------------------------------------------------- labels

def bounding_box(mask: np.ndarray) -> Optional[Tuple[slice, ...]]:
    """Slices of the smallest box that holds every non-zero voxel, or None for an empty mask."""
    objects = ndimage.find_objects(np.asarray(mask, dtype=np.uint8))
    return objects[0] if objects else None


def _union_box(a: Optional[Tuple[slice, ...]], b: Optional[Tuple[slice, ...]]):
    if a is None:
        return b
    if b is None:
        return a
    return tuple(slice(min(x.start, y.start), max(x.stop, y.stop)) for x, y in zip(a, b))


def score_label(reference_labels: np.ndarray, predicted_labels: np.ndarray, label: int,
                spacing: Sequence[float], tolerance_mm: float,
                boxes: Optional[Tuple[Optional[tuple], Optional[tuple]]] = None) -> Dict[str, object]:
    """Dice, NSD at ``tolerance_mm`` and HD95 for one label of two label maps.

    ``boxes`` (optional) are the label's bounding boxes in the reference and the prediction, as
    ``scipy.ndimage.find_objects`` gives them, so that a caller scoring many labels scans each
    volume only once. Returns a dict with the three metrics, the voxel counts and a ``status``:
    ``ok``, ``both_empty``, ``reference_empty`` or ``prediction_empty``.
    """
    if reference_labels.shape != predicted_labels.shape:
        raise ValueError("label maps differ in shape: %s vs %s" % (reference_labels.shape, predicted_labels.shape))
    _check_tolerance(tolerance_mm)
    if boxes is None:
        boxes = (bounding_box(reference_labels == label), bounding_box(predicted_labels == label))
    box = _union_box(*boxes)
    if box is None:
        return {"dice": 1.0, "nsd": 1.0, "hd95": 0.0, "reference_voxels": 0, "prediction_voxels": 0,
                "status": "both_empty"}
    reference = reference_labels[box] == label
    prediction = predicted_labels[box] == label
    n_ref, n_pred = int(reference.sum()), int(prediction.sum())
    distances = surface_distances(reference, prediction, spacing)
    status = "ok" if n_ref and n_pred else ("reference_empty" if n_pred else "prediction_empty")
    return {"dice": dice(reference, prediction), "nsd": nsd_from_distances(distances, tolerance_mm),
            "hd95": hausdorff_from_distances(distances, 95.0), "reference_voxels": n_ref,
            "prediction_voxels": n_pred, "status": status}


def score_case(reference_labels: np.ndarray, predicted_labels: np.ndarray, labels: Iterable[int],
               spacing: Sequence[float], tolerance_mm: float) -> Dict[int, Dict[str, object]]:
    """``score_label`` for every label in ``labels``; each volume is scanned once for all boxes."""
    labels = [int(label) for label in labels]
    if any(label <= 0 for label in labels):
        raise ValueError("labels must be positive integers (0 is background), got %s" % labels)
    reference_boxes = _boxes_of(reference_labels, labels)
    predicted_boxes = _boxes_of(predicted_labels, labels)
    return {label: score_label(reference_labels, predicted_labels, label, spacing, tolerance_mm,
                               boxes=(reference_boxes[label], predicted_boxes[label]))
            for label in labels}


def _boxes_of(label_map: np.ndarray, labels: Sequence[int]) -> Dict[int, object]:
    """{label: bounding box or None}: one pass for all labels up to 4096; above that (a label value such as
    2,000,000,000, whose one-pass table would not fit in memory) one pass per label."""
    top = max(labels, default=0)
    if top <= 4096:
        boxes = _label_boxes(label_map, top)
        return {label: boxes[label - 1] for label in labels}
    found = {}
    for label in labels:
        box = ndimage.find_objects((np.asarray(label_map) == label).astype(np.uint8), max_label=1)
        found[label] = box[0] if box else None
    return found


def _label_boxes(label_map: np.ndarray, max_label: int):
    """Bounding box of each label 1..max_label (None where absent), in one pass over the volume;
    labels above ``max_label`` are not looked for."""
    label_map = np.asarray(label_map)
    if label_map.dtype.kind not in "iu":
        raise ValueError("label maps must hold integers, got dtype %s" % label_map.dtype)
    boxes = list(ndimage.find_objects(label_map, max_label=max_label)) if max_label > 0 else []
    return boxes + [None] * (max_label - len(boxes))


# --------------------------------------------------------------------------- checks

def _as_bool_pair(reference: np.ndarray, prediction: np.ndarray):
    reference, prediction = np.asarray(reference, dtype=bool), np.asarray(prediction, dtype=bool)
    if reference.shape != prediction.shape:
        raise ValueError("masks differ in shape: %s vs %s" % (reference.shape, prediction.shape))
    if reference.ndim != 3:
        raise ValueError("masks must be 3-D (z, y, x), got %d-D" % reference.ndim)
    return reference, prediction


def _check_tolerance(tolerance_mm) -> None:
    if tolerance_mm is None or not np.isfinite(tolerance_mm) or tolerance_mm < 0:
        raise ValueError("the NSD tolerance must be a non-negative number of mm, got %r" % (tolerance_mm,))


def _check_spacing(spacing: Sequence[float], ndim: int) -> np.ndarray:
    spacing = np.asarray(spacing, dtype=np.float64)
    if spacing.shape != (ndim,) or not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise ValueError("spacing must be %d positive numbers (mm, array axis order), got %r" % (ndim, spacing.tolist()))
    return spacing
