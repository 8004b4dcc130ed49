"""Score a folder of predicted label maps against a folder of reference label maps.

Cases are matched by file name (``.nii.gz`` or ``.nii``). For each case and label the Decathlon's
metrics are computed (``evaluation.metrics``): Dice, NSD at a tolerance in mm, and HD95. A
reference case that has no prediction scores 0 on every label (the leaderboard's rule) and is
reported as missing. Results go to ``per_case.csv`` (one row per case and label) and
``summary.json`` (mean, median, standard deviation per label and metric), each written atomically
(an earlier result survives a failed write).

Every label map read passes the validator shared with the submission (``evaluation.labelmaps``):
complete file (a truncated .nii.gz, which SimpleITK would zero-fill and score, is refused), 3-D scalar,
integer predictions, the same voxel grid as the reference, and -- with a task -- labels from its label
set. A run in which no prediction matches a reference is an error, not a table of zeros.
"""
import csv
import json
import math
import os
import sys
from multiprocessing import Pool
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from evaluation import labelmaps
from evaluation.metrics import METRICS, score_case
from nnunet_genesis.io.atomic import atomic_write, output_set, refuse_output_inside_inputs

#: NSD tolerance used when neither --tolerance nor a sourced per-task value is available.
#: 2 mm: one to two voxels at the in-plane resolution of the Decathlon's CT and MR data
#: (0.6-1.25 mm), and the tolerance the ABCs challenge scores its surface Dice at
#: (https://abcs.mgh.harvard.edu/index.php/submissions/evaluation). It is *not* the
#: leaderboard's value for any task; results at this default say so in summary.json.
DEFAULT_TOLERANCE_MM = 2.0

#: geometry must agree within these bounds: the policy shared with the submission, documented in
#: evaluation/labelmaps.py (mm for spacing and origin; cosines for direction).
GEOMETRY_TOLERANCE_MM = labelmaps.GEOMETRY_TOLERANCE_MM
DIRECTION_TOLERANCE = labelmaps.DIRECTION_TOLERANCE

SUFFIXES = (".nii.gz", ".nii")
PER_CASE_FILE = "per_case.csv"
SUMMARY_FILE = "summary.json"
GENERATED_BY = "nnUNet_genesis_evaluate"
PER_CASE_COLUMNS = ("case", "label", "label_name", "dice", "nsd", "hd95",
                    "reference_voxels", "prediction_voxels", "status")


class EvaluationError(ValueError):
    """Bad input (files, geometry, options); the message names the file(s) and the fault."""


class GeometryMismatchError(EvaluationError):
    """A prediction does not lie on the reference's voxel grid."""


def default_num_processes() -> int:
    return max(1, min(8, os.cpu_count() or 1))


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


def _fmt(values) -> str:
    return "(" + ", ".join("%.6g" % v for v in np.ravel(values)) + ")"


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


def _missing_scores() -> dict:
    return {"dice": 0.0, "nsd": 0.0, "hd95": float("nan"), "reference_voxels": "",
            "prediction_voxels": "", "status": "missing"}


def _both_empty_scores() -> dict:
    return {"dice": 1.0, "nsd": 1.0, "hd95": 0.0, "reference_voxels": 0, "prediction_voxels": 0,
            "status": "both_empty"}


# --------------------------------------------------------------------------- options

def resolve_tolerance(tolerance_mm: Optional[float], task=None) -> Tuple[float, str]:
    """(tolerance in mm, where it came from): --tolerance, else the task's sourced value,
    else DEFAULT_TOLERANCE_MM."""
    if tolerance_mm is not None:
        if not math.isfinite(tolerance_mm) or tolerance_mm < 0:
            raise EvaluationError("the NSD tolerance must be a non-negative number of mm, got %r" % tolerance_mm)
        return float(tolerance_mm), "--tolerance"
    if task is not None and task.nsd_tolerance_mm is not None:
        return float(task.nsd_tolerance_mm), "evaluation.tasks table (%s)" % task.name
    if task is not None:
        return DEFAULT_TOLERANCE_MM, ("default %.3g mm: no sourced leaderboard tolerance for %s; "
                                     "NSD values are not the leaderboard's" % (DEFAULT_TOLERANCE_MM, task.name))
    return DEFAULT_TOLERANCE_MM, "default %.3g mm (no task given)" % DEFAULT_TOLERANCE_MM


def find_task(name_or_number):
    """The MSD task for a name or number, or None if it is not one of the ten."""
    from evaluation.tasks import find_msd_task
    try:
        return find_msd_task(name_or_number)
    except KeyError:
        return None


# --------------------------------------------------------------------------- folders

def evaluate_folders(ref_dir: str, pred_dir: str, labels: Optional[Sequence[int]] = None,
                     tolerance_mm: Optional[float] = None, out_dir: Optional[str] = None,
                     num_processes: Optional[int] = None, *, task=None,
                     label_names: Optional[Dict[int, str]] = None, only_predicted_cases: bool = False,
                     verbose: bool = True) -> dict:
    """Score every reference case in ``ref_dir`` against ``pred_dir``; write the results to
    ``out_dir`` (per_case.csv, summary.json) and return the summary dict.

    labels: labels to score; default: the task's labels if ``task`` is given (an MSDTask or a name
        that ``evaluation.tasks.find_msd_task`` knows), else every non-zero label in the references.
    tolerance_mm: NSD tolerance; default: the task's sourced value, else DEFAULT_TOLERANCE_MM.
    only_predicted_cases: score only the reference cases that have a prediction (an nnU-Net fold's
        validation set against all of labelsTr); by default a missing prediction scores 0.
    """
    if isinstance(task, (str, int)):
        name = task
        task = find_task(name)
        if task is None:
            raise EvaluationError("%r is not one of the ten Decathlon tasks" % (name,))
    tolerance, tolerance_source = resolve_tolerance(tolerance_mm, task)
    label_names = dict(label_names or {})
    if task is not None:
        label_names = {**{k: v for k, v in task.labels.items() if k != 0}, **label_names}
        if labels is None:
            labels = sorted(k for k in task.labels if k != 0)
    if labels is not None:
        labels = sorted({int(label) for label in labels})
        if not labels or labels[0] <= 0:
            raise EvaluationError("labels must be positive integers (0 is background), got %s" % labels)

    if out_dir is not None:
        _check_out_dir(out_dir, ref_dir, pred_dir)
    reference_cases, predicted_cases = list_cases(ref_dir), list_cases(pred_dir)
    if not reference_cases:
        raise EvaluationError("no reference label maps (.nii.gz/.nii) in %s" % ref_dir)
    if only_predicted_cases:
        reference_cases = {c: p for c, p in reference_cases.items() if c in predicted_cases}
        if not reference_cases:
            raise EvaluationError("none of the predictions in %s has a reference in %s" % (pred_dir, ref_dir))
    missing = sorted(set(reference_cases) - set(predicted_cases))
    extra = sorted(set(predicted_cases) - set(reference_cases))
    if verbose and missing:
        print("%d reference case(s) have no prediction and score 0: %s"
              % (len(missing), _short_list(missing)), file=sys.stderr)
    if verbose and extra:
        print("%d prediction(s) have no reference and are ignored: %s"
              % (len(extra), _short_list(extra)), file=sys.stderr)

    allowed = tuple(sorted(task.labels)) if task is not None else None
    jobs = [(case, path, predicted_cases.get(case), tuple(labels) if labels else None, tolerance, allowed)
            for case, path in sorted(reference_cases.items())]
    if not any(job[2] is not None for job in jobs):
        raise EvaluationError("no prediction in %s matches a reference case in %s (by file name, .nii.gz/.nii): "
                              "nothing would be scored" % (pred_dir, ref_dir))
    results = _run_jobs(jobs, num_processes or default_num_processes(), verbose)

    predicted_only = labels_only_in_predictions(results)
    if labels is None:
        # every label the references hold, and every label only predicted: its voxels are false positives
        labels = sorted({label for result in results for label in result["reference_labels"]} | set(predicted_only))
        if not labels:
            raise EvaluationError("the references in %s hold no non-zero label; pass -l" % ref_dir)
    if verbose:
        for label, cases in sorted(predicted_only.items()):
            print("warning: " + predicted_only_warning(label, cases, label in labels), file=sys.stderr)
    rows = _rows(results, labels, label_names)
    summary = summarise(rows, labels)
    summary.update({
        "generated_by": GENERATED_BY,
        "reference_dir": os.path.abspath(ref_dir),
        "prediction_dir": os.path.abspath(pred_dir),
        "task": task.name if task is not None else None,
        "tolerance_mm": tolerance,
        "tolerance_source": tolerance_source,
        "labels": {str(label): label_names.get(label, "") for label in labels},
        "num_cases": len(results),
        "cases_missing_prediction": missing,
        "labels_only_in_predictions": {str(label): cases for label, cases in sorted(predicted_only.items())},
        "predictions_without_reference": extra,
        "conventions": "both masks empty: dice=1, nsd=1, hd95=0; one empty: dice=0, nsd=0, hd95=NaN "
                       "(excluded from hd95 statistics); missing prediction: dice=0, nsd=0; std is the "
                       "sample standard deviation (ddof=1)",
    })
    if out_dir is not None:
        # one output set: per_case.csv and summary.json are replaced together or not at all
        with output_set(out_dir) as files:
            files.write(PER_CASE_FILE, _per_case_writer(rows))
            files.write_json(SUMMARY_FILE, _json_safe(summary))
    if verbose:
        print(format_summary_table(summary))
    return summary


def labels_only_in_predictions(results: List[dict]) -> Dict[int, Dict[str, int]]:
    """{label: {case: voxels}} of the labels some prediction holds and no reference does."""
    in_references = {label for result in results for label in result["reference_labels"]}
    found: Dict[int, Dict[str, int]] = {}
    for result in sorted(results, key=lambda r: r["case"]):
        for label, voxels in result.get("prediction_voxels", {}).items():
            if label not in in_references:
                found.setdefault(label, {})[result["case"]] = voxels
    return found


def predicted_only_warning(label: int, cases: Dict[str, int], scored: bool) -> str:
    """One line: the label, the cases and their voxel counts, and whether its voxels count as false positives."""
    listed = ", ".join("%s (%d voxels)" % (case, voxels) for case, voxels in list(cases.items())[:10])
    return ("label %d occurs only in the predictions, in no reference: %d case(s), %d voxels: %s%s; %s"
            % (label, len(cases), sum(cases.values()), listed, " ..." if len(cases) > 10 else "",
               "scored: its voxels are false positives (Dice 0 in those cases)" if scored
               else "NOT scored (not among the labels asked with -l)"))


def _run_jobs(jobs: List[tuple], num_processes: int, verbose: bool) -> List[dict]:
    # the bar is closed (ends its line) also when a case fails, so that the error is a line of its own
    with tqdm(total=len(jobs), desc="evaluating", unit="case", disable=not verbose) as bar:
        if num_processes <= 1 or len(jobs) <= 1:
            results = []
            for job in jobs:
                results.append(evaluate_case(job))
                bar.update()
            return results
        with Pool(min(num_processes, len(jobs))) as pool:
            results = []
            for result in pool.imap_unordered(evaluate_case, jobs):
                results.append(result)
                bar.update()
            return results


def _rows(results: List[dict], labels: Sequence[int], label_names: Dict[int, str]) -> List[dict]:
    rows = []
    for result in sorted(results, key=lambda r: r["case"]):
        for label in labels:
            if result["missing"]:
                scores = _missing_scores()
            else:
                # a label evaluate_case did not score is in neither the reference nor the prediction
                scores = result["scores"].get(label) or _both_empty_scores()
            rows.append({"case": result["case"], "label": int(label), "label_name": label_names.get(label, ""),
                         **{key: scores[key] for key in PER_CASE_COLUMNS[3:]}})
    return rows


def summarise(rows: Iterable[dict], labels: Sequence[int]) -> dict:
    """Per label and metric: mean, median, sample std (ddof=1; NaN below 2 values) and n, over
    the finite values (HD95 is NaN where a mask is empty and is left out there)."""
    rows = list(rows)
    statistics, means = {}, {}
    for label in labels:
        statistics[str(label)], means[str(label)] = {}, {}
        for metric in METRICS:
            values = np.array([float(r[metric]) for r in rows if int(r["label"]) == int(label)], dtype=float)
            stats = describe(values)
            statistics[str(label)][metric] = stats
            means[str(label)][metric] = stats["mean"]
    over_labels = {metric: _nanmean([means[str(label)][metric] for label in labels]) for metric in METRICS}
    return {"statistics": statistics, "mean": means, "mean_over_labels": over_labels}


def describe(values: np.ndarray) -> dict:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return {"mean": float("nan"), "median": float("nan"), "std": float("nan"), "n": 0}
    return {"mean": float(finite.mean()), "median": float(np.median(finite)),
            "std": float(finite.std(ddof=1)) if finite.size > 1 else float("nan"), "n": int(finite.size)}


def _nanmean(values: List[float]) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


# --------------------------------------------------------------------------- output

def write_per_case_csv(rows: List[dict], path: str) -> None:
    """per_case.csv, written atomically (nnunet_genesis.io.atomic)."""
    atomic_write(path, _per_case_writer(rows))


def _per_case_writer(rows: List[dict]):
    def write(tmp):
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=PER_CASE_COLUMNS)
            writer.writeheader()
            for row in rows:
                writer.writerow({key: (repr(float(row[key])) if key in METRICS else row[key])
                                 for key in PER_CASE_COLUMNS})
    return write


def read_per_case_csv(path: str) -> List[dict]:
    """Rows of a per_case.csv with the metrics as floats and the label as int."""
    if not os.path.isfile(path):
        raise EvaluationError("%s does not exist: run nnUNet_genesis_evaluate first" % path)
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        absent = set(PER_CASE_COLUMNS) - set(reader.fieldnames or ())
        if absent:
            raise EvaluationError("%s is not a per_case.csv written by %s (no column %s)"
                                  % (path, GENERATED_BY, ", ".join(sorted(absent))))
        rows = []
        for line, row in enumerate(reader, start=2):
            try:
                row["label"] = int(row["label"])
                for metric in METRICS:
                    row[metric] = float(row[metric])
            except ValueError as error:
                raise EvaluationError("%s line %d: %s" % (path, line, error))
            rows.append(row)
    return rows


def format_summary_table(summary: dict) -> str:
    """Plain-text table: one line per label, mean ± std and median of each metric."""
    header = "%-28s %5s  %-22s %-22s %-22s" % ("label", "n", "Dice mean±sd (median)",
                                                 "NSD@%gmm mean±sd (med)" % summary.get("tolerance_mm", float("nan")),
                                                 "HD95 mm mean±sd (med)")
    lines = ["NSD tolerance: %g mm (%s)" % (summary.get("tolerance_mm", float("nan")), summary.get("tolerance_source", "")),
             header, "-" * len(header)]
    for label, stats in summary["statistics"].items():
        name = summary.get("labels", {}).get(label, "")
        cells = []
        for metric in METRICS:
            s = stats[metric]
            cells.append("%.4f±%.4f (%.4f)" % (s["mean"], s["std"], s["median"]) if s["n"] else "n/a")
        lines.append("%-28s %5d  %-22s %-22s %-22s" % ((label + " " + name)[:28], stats["dice"]["n"], *cells))
    overall = summary["mean_over_labels"]
    lines.append("%-28s %5s  %-22s %-22s %-22s" % ("mean over labels", "", "%.4f" % overall["dice"],
                                                    "%.4f" % overall["nsd"], "%.4f" % overall["hd95"]))
    return "\n".join(lines)


def _json_safe(value):
    """NaN/inf are not JSON: write null instead."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _check_out_dir(out_dir: str, *input_dirs: str) -> None:
    """Refuse to write into an input folder (OutputInsideInputError, nnunet_genesis.io.atomic), or over a
    summary.json we did not write (nnU-Net writes its own summary.json into validation_raw)."""
    refuse_output_inside_inputs(out_dir, {"an input": list(input_dirs)})
    summary = os.path.join(out_dir, SUMMARY_FILE)
    if os.path.isfile(summary):
        try:
            with open(summary) as handle:
                ours = json.load(handle).get("generated_by") == GENERATED_BY
        except ValueError as error:
            raise EvaluationError("%s exists but is not valid JSON (%s): damaged, or not ours; not overwriting "
                                  "it (choose another -o)" % (summary, error))
        except (AttributeError, OSError):
            ours = False
        if not ours:
            raise EvaluationError("%s exists and was not written by %s; not overwriting it (choose another -o)"
                                  % (summary, GENERATED_BY))


def _short_list(items: List[str], limit: int = 10) -> str:
    return ", ".join(items[:limit]) + (" ..." if len(items) > limit else "")
