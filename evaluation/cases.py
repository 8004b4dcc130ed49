"""The cases of an evaluation: label-map files paired by name, read through the shared validator, and scored one by one.

Cases are matched by file name (``.nii.gz`` or ``.nii``). Every label map read passes the validator shared with the
submission (``evaluation.labelmaps``): complete file (a truncated .nii.gz, which SimpleITK would zero-fill and score,
is refused), 3-D scalar, integer predictions, the same voxel grid as the reference, and -- with a task -- labels from
its label set. For each case and label the Decathlon's metrics are computed (``evaluation.metrics``): Dice, NSD at a
tolerance in mm, and HD95.
"""
import os
from typing import Dict, List, Optional, Tuple

import numpy as np

from evaluation import labelmaps
from evaluation.metrics import score_case

#: geometry must agree within these bounds: the policy shared with the submission, documented in
#: evaluation/labelmaps.py (mm for spacing and origin; cosines for direction).
GEOMETRY_TOLERANCE_MM = labelmaps.GEOMETRY_TOLERANCE_MM
DIRECTION_TOLERANCE = labelmaps.DIRECTION_TOLERANCE

SUFFIXES = (".nii.gz", ".nii")


class EvaluationError(ValueError):
    """Bad input (files, geometry, options); the message names the file(s) and the fault."""


class GeometryMismatchError(EvaluationError):
    """A prediction does not lie on the reference's voxel grid."""


# --------------------------------------------------------------------------- files

def case_name(filename: str) -> Optional[str]:
    """'case_001.nii.gz' -> 'case_001'; None for files that are not NIfTI images."""
    for suffix in SUFFIXES:
        if filename.endswith(suffix) and len(filename) > len(suffix):
            return filename[:-len(suffix)]
    return None


def list_cases(folder: str) -> Dict[str, str]:
    """Map case name -> path of every NIfTI file directly in ``folder``."""
    if not os.path.isdir(folder):
        raise EvaluationError("%s is not a folder" % folder)
    cases: Dict[str, str] = {}
    for filename in sorted(os.listdir(folder)):
        name = case_name(filename)
        path = os.path.join(folder, filename)
        if name is None:
            continue
        if not os.path.isfile(path):   # a folder, a dangling link or a link loop named like a label map
            raise EvaluationError("%s is named like a label map but is not a readable file (%s)"
                                  % (path, "a folder" if os.path.isdir(path) else "a broken or looping link"))
        if name in cases:
            raise EvaluationError("%s holds case %r twice: %s and %s"
                                  % (folder, name, os.path.basename(cases[name]), filename))
        cases[name] = path
    return cases


def read_label_map(path: str, role: str = labelmaps.REFERENCE, allowed_labels=None):
    """(integer array in z, y, x order, SimpleITK image) for a label map on disk that passes the shared
    validator (evaluation.labelmaps: integrity, 3-D scalar, dtype policy for ``role``, label values);
    EvaluationError naming the file and every fault otherwise."""
    try:
        return labelmaps.read_label_map(path, role=role, allowed_labels=allowed_labels)
    except labelmaps.LabelMapError as error:
        raise EvaluationError("%s %s" % (role, error)) from None


def spacing_zyx(image) -> Tuple[float, float, float]:
    """Voxel spacing in array axis order: SimpleITK reports (x, y, z), its array is (z, y, x)."""
    return tuple(float(s) for s in image.GetSpacing()[::-1])


def check_same_geometry(reference, prediction, reference_path: str, prediction_path: str) -> None:
    """Raise GeometryMismatchError (naming both files) unless size, spacing, origin and direction
    of the two SimpleITK images agree within the shared tolerance (evaluation.labelmaps)."""
    faults = labelmaps.geometry_faults(labelmaps.ImageHeader.of_image(prediction),
                                       labelmaps.ImageHeader.of_image(reference), "the reference")
    if faults:
        raise GeometryMismatchError(
            "reference %s and prediction %s do not share a voxel grid: %s. Predictions must be "
            "written on the reference image's grid (same size, spacing, origin, direction)."
            % (reference_path, prediction_path, "; ".join(faults)))


# --------------------------------------------------------------------------- per case

def _label_voxels(label_map: np.ndarray) -> Dict[int, int]:
    """{non-zero label: voxel count} of a label map."""
    flat = label_map.ravel()
    if flat.size and flat.max() > 65535:   # a count per possible value would not fit in memory: sort instead
        values, counts = np.unique(flat, return_counts=True)
        return {int(v): int(c) for v, c in zip(values, counts) if v != 0}
    counts = np.bincount(flat) if flat.size else np.zeros(1, np.int64)
    return {int(label): int(counts[label]) for label in np.nonzero(counts)[0] if label != 0}


def _labels_present(label_map: np.ndarray) -> List[int]:
    return sorted(_label_voxels(label_map))


def evaluate_case(job: Tuple[str, str, Optional[str], Optional[Tuple[int, ...]], float]) -> dict:
    """Score one case. ``job`` = (case, reference path, prediction path or None, labels or None
    (then: every label in the reference or the prediction), tolerance in mm[, the task's label set or
    None]). Both label maps pass the shared validator (evaluation.labelmaps) first.

    Returns {"case", "reference_labels", "prediction_voxels" ({label: voxels} of the prediction), "missing",
    "scores": {label: score_label dict}}; a missing prediction has no scores (the caller fills in zeros once the label set is known), and
    a label that was not scored is absent from both masks.
    """
    case, reference_path, prediction_path, labels, tolerance_mm = job[:5]
    allowed = job[5] if len(job) > 5 else None     # the task's label set, when a task is given
    reference, reference_image = read_label_map(reference_path, labelmaps.REFERENCE, allowed)
    reference_labels = _labels_present(reference)
    if prediction_path is None:
        return {"case": case, "reference_labels": reference_labels, "prediction_voxels": {}, "missing": True,
                "scores": {}}
    prediction, prediction_image = read_label_map(prediction_path, labelmaps.PREDICTION, allowed)
    check_same_geometry(reference_image, prediction_image, reference_path, prediction_path)
    prediction_voxels = _label_voxels(prediction)
    if labels is None:
        labels = sorted(set(reference_labels) | set(prediction_voxels))
    scores = score_case(reference, prediction, labels, spacing_zyx(reference_image), tolerance_mm)
    return {"case": case, "reference_labels": reference_labels, "prediction_voxels": prediction_voxels,
            "missing": False, "scores": scores}
