"""Score a folder of predicted label maps against a folder of reference label maps (``nnUNet_genesis_evaluate``).

The parts, each in a module of its own:

* :mod:`evaluation.cases`: the cases, paired by file name (``.nii.gz`` or ``.nii``), every label map read through
  the validator shared with the submission (``evaluation.labelmaps``), and one case scored with the Decathlon's
  metrics (``evaluation.metrics``: Dice, NSD at a tolerance in mm, HD95);
* :mod:`evaluation.results`: the rows, the statistics, ``per_case.csv`` and ``summary.json``;
* here: the options (labels, task, NSD tolerance) and the run over a folder.

A reference case that has no prediction scores 0 on every label (the leaderboard's rule) and is reported as
missing. Results go to ``per_case.csv`` (one row per case and label) and ``summary.json`` (mean, median, standard
deviation per label and metric), written as one set (an earlier result survives a failed write). A run in which
no prediction matches a reference is an error, not a table of zeros. Every name this module offered before the
split is still importable from it.
"""
import math
import os
import sys
from multiprocessing import Pool
from typing import Dict, List, Optional, Sequence, Tuple

from tqdm import tqdm

from evaluation.cases import (DIRECTION_TOLERANCE, GEOMETRY_TOLERANCE_MM, SUFFIXES, EvaluationError,  # noqa: F401
                              GeometryMismatchError, case_name, check_same_geometry, evaluate_case, list_cases,
                              read_label_map, spacing_zyx)
from evaluation.results import (GENERATED_BY, PER_CASE_COLUMNS, PER_CASE_FILE, SUMMARY_FILE,  # noqa: F401
                                _check_out_dir, _json_safe, _per_case_writer, _rows, describe, format_summary_table,
                                read_per_case_csv, summarise, write_per_case_csv)
from nnunet_genesis.io.atomic import output_set

#: NSD tolerance used when neither --tolerance nor a sourced per-task value is available.
#: 2 mm: one to two voxels at the in-plane resolution of the Decathlon's CT and MR data
#: (0.6-1.25 mm), and the tolerance the ABCs challenge scores its surface Dice at
#: (https://abcs.mgh.harvard.edu/index.php/submissions/evaluation). It is *not* the
#: leaderboard's value for any task; results at this default say so in summary.json.
DEFAULT_TOLERANCE_MM = 2.0


def default_num_processes() -> int:
    return max(1, min(8, os.cpu_count() or 1))


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


def _short_list(items: List[str], limit: int = 10) -> str:
    return ", ".join(items[:limit]) + (" ..." if len(items) > limit else "")
