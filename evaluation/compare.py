"""Compare two evaluated runs (say nnU-Net from scratch vs. Models Genesis initialisation) case by case.

For each label and metric, over the cases both runs scored:
    mean_A, mean_B, the mean paired difference Δ = mean_i (B_i − A_i), and the two-sided
    Wilcoxon signed-rank test of H0: the differences B_i − A_i are symmetric about 0
    (scipy.stats.wilcoxon, zero differences dropped as in Wilcoxon's original test).
Higher is better for Dice and NSD, lower for HD95. No correction for multiple comparisons is
applied; with the few validation cases of a fold, read p-values as a rough guide.

Inputs are folders written by ``nnUNet_genesis_evaluate`` (per_case.csv + summary.json) or
nnU-Net fold folders, evaluated first against the task's reference labels: v1's
(``.../TaskXXX_Name/Trainer__Plans/fold_N`` with ``validation_raw/``) and v2's
(``.../DatasetXXX_Name/Trainer__Plans__Config/fold_N`` with ``validation/``, written by
``nnUNetTrainer.perform_actual_validation`` of ``nnunetv2/training/nnUNetTrainer/nnUNetTrainer.py``).
"""
import json
import math
import os
import re
import sys
import warnings
from typing import List, Optional, Sequence, Tuple

import numpy as np

from evaluation.evaluate import (PER_CASE_FILE, SUMMARY_FILE, EvaluationError, evaluate_folders, find_task,
                                 list_cases, read_per_case_csv, _json_safe)
from evaluation.metrics import METRICS
from nnunet_genesis.io.atomic import output_set, refuse_output_inside_inputs, save_figure_atomic
from nnunet_genesis.io import raw_dataset
from nnunet_genesis.nnunet_v1 import names as v1_names
from nnunet_genesis.nnunet_v2 import names as v2_names

METRIC_TITLES = {"dice": "Dice", "nsd": "NSD", "hd95": "HD95 (mm)"}
HIGHER_IS_BETTER = {"dice": True, "nsd": True, "hd95": False}
TASK_PATTERN = re.compile(r"^(Task|Dataset)\d{3}_[A-Za-z0-9_\-]+$")  # v1 task or v2 dataset folder
FOLD_PREDICTIONS = (v1_names.VALIDATION_FOLDER, v2_names.VALIDATION_FOLDER)  # a fold's validation predictions


# --------------------------------------------------------------------------- statistics

def wilcoxon_signed_rank(differences: Sequence[float]) -> Tuple[float, str]:
    """(two-sided p-value, note) of the Wilcoxon signed-rank test on paired differences.

    Cases scipy cannot test are answered without raising: fewer than 2 pairs -> (NaN, note);
    every difference zero -> (1.0, note): no evidence of any difference.
    """
    from scipy.stats import wilcoxon
    differences = np.asarray(differences, dtype=float)
    differences = differences[np.isfinite(differences)]
    if differences.size < 2:
        return float("nan"), "fewer than 2 paired cases: no test"
    if np.all(differences == 0):
        return 1.0, "all paired differences are zero"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns about ties/small n; the note below says it
        try:
            p_value = float(wilcoxon(differences).pvalue)
        except ValueError as error:
            return float("nan"), "test not possible: %s" % error
    # zero differences carry no sign and are dropped by the test; with fewer than 6 non-zero
    # differences the exact two-sided p is at least 2/2^5 = 0.0625
    nonzero = int(np.count_nonzero(differences))
    note = "" if nonzero >= 6 else "%d non-zero differences: p cannot fall below 0.05" % nonzero
    return p_value, note


def paired_values(rows_a: List[dict], rows_b: List[dict], label: int, metric: str):
    """(cases, values A, values B) over the cases both runs scored for this label, in case order;
    pairs where either value is not finite (HD95 with an empty mask) are left out."""
    a = {r["case"]: r[metric] for r in rows_a if r["label"] == label}
    b = {r["case"]: r[metric] for r in rows_b if r["label"] == label}
    cases = [c for c in sorted(set(a) & set(b)) if math.isfinite(a[c]) and math.isfinite(b[c])]
    return cases, np.array([a[c] for c in cases], dtype=float), np.array([b[c] for c in cases], dtype=float)


# --------------------------------------------------------------------------- comparing

def compare_runs(eval_dir_a: str, eval_dir_b: str, names: Sequence[str] = ("A", "B"),
                 out_dir: Optional[str] = None, verbose: bool = True) -> dict:
    """Compare two ``nnUNet_genesis_evaluate`` output folders; write compare.md, compare.png and
    compare.json into ``out_dir`` and return the comparison as a dict (see compare.json)."""
    names = _check_names(names)
    rows_a = read_per_case_csv(os.path.join(eval_dir_a, PER_CASE_FILE))
    rows_b = read_per_case_csv(os.path.join(eval_dir_b, PER_CASE_FILE))
    summary_a, summary_b = _read_summary(eval_dir_a), _read_summary(eval_dir_b)
    # a name known to either run (an evaluation without -t has none)
    label_names = {label: summary_a.get("labels", {}).get(label) or name
                   for label, name in summary_b.get("labels", {}).items()}
    label_names.update({k: v for k, v in summary_a.get("labels", {}).items() if v and k not in label_names})
    labels = sorted({r["label"] for r in rows_a} & {r["label"] for r in rows_b})
    if not labels:
        raise EvaluationError("%s and %s share no label" % (eval_dir_a, eval_dir_b))
    cases_a, cases_b = {r["case"] for r in rows_a}, {r["case"] for r in rows_b}
    if not cases_a & cases_b:
        raise EvaluationError("%s and %s have no case in common (A: %s; B: %s): nothing to compare"
                              % (eval_dir_a, eval_dir_b, _short(sorted(cases_a)), _short(sorted(cases_b))))

    results = []
    for label in labels:
        for metric in METRICS:
            cases, a, b = paired_values(rows_a, rows_b, label, metric)
            differences = b - a
            p_value, note = wilcoxon_signed_rank(differences)
            results.append({
                "label": label, "label_name": label_names.get(str(label), ""), "metric": metric,
                "n_pairs": len(cases),
                "mean_a": _mean(a), "std_a": _std(a), "mean_b": _mean(b), "std_b": _std(b),
                "mean_difference": _mean(differences), "std_difference": _std(differences),
                "b_better_cases": int(np.sum(differences > 0 if HIGHER_IS_BETTER[metric] else differences < 0)),
                "a_better_cases": int(np.sum(differences < 0 if HIGHER_IS_BETTER[metric] else differences > 0)),
                "p_value": p_value, "note": note,
            })
    tolerances = (summary_a.get("tolerance_mm"), summary_b.get("tolerance_mm"))
    comparison = {
        "names": list(names), "eval_dirs": [os.path.abspath(eval_dir_a), os.path.abspath(eval_dir_b)],
        "tolerance_mm": list(tolerances),
        "paired_cases": len(cases_a & cases_b),
        "only_in_a": sorted(cases_a - cases_b), "only_in_b": sorted(cases_b - cases_a),
        "results": results,
    }
    if out_dir is not None:
        # one output set: compare.md, compare.png and compare.json are replaced together or not at all
        with output_set(out_dir) as files:
            files.write_text("compare.md", format_markdown(comparison))
            files.write("compare.png", lambda tmp: plot_comparison(comparison, tmp))
            files.write_json("compare.json", _json_safe(comparison))
    if verbose:
        print(format_markdown(comparison))
    return comparison


def format_markdown(comparison: dict) -> str:
    name_a, name_b = comparison["names"]
    tol_a, tol_b = comparison["tolerance_mm"]
    lines = ["# %s vs %s" % (name_a, name_b), "",
             "A = %s (`%s`)  " % (name_a, comparison["eval_dirs"][0]),
             "B = %s (`%s`)  " % (name_b, comparison["eval_dirs"][1]),
             "Paired cases: %d. NSD tolerance: %s mm." % (comparison["paired_cases"], _tolerance_text(tol_a, tol_b)),
             ""]
    if tol_a != tol_b:
        lines += ["**Warning:** the two runs were evaluated at different NSD tolerances; their NSD "
                  "values are not comparable.", ""]
    for side, key in ((name_a, "only_in_a"), (name_b, "only_in_b")):
        if comparison[key]:
            lines += ["Cases only in %s (left out of the comparison): %s" % (side, ", ".join(comparison[key])), ""]
    lines += ["| label | metric | n | mean %s | mean %s | Δ (B−A) | B better / A better | Wilcoxon p | note |"
              % (name_a, name_b),
              "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in comparison["results"]:
        lines.append("| %s | %s | %d | %s | %s | %s | %d / %d | %s | %s |" % (
            ("%d %s" % (r["label"], r["label_name"])).strip(), METRIC_TITLES[r["metric"]], r["n_pairs"],
            _num(r["mean_a"]), _num(r["mean_b"]), _num(r["mean_difference"], signed=True),
            r["b_better_cases"], r["a_better_cases"], _num(r["p_value"]), r["note"]))
    lines += ["", "Δ is the mean of the paired differences B−A. Higher is better for Dice and NSD, "
                  "lower for HD95 (pairs with an empty mask have no HD95 and are left out). "
                  "p: two-sided Wilcoxon signed-rank test, not corrected for multiple comparisons.", ""]
    return "\n".join(lines)


def plot_comparison(comparison: dict, path: str) -> None:
    """Bar chart: one panel per metric, bars per label for A and B, error bars = ±1 SD over the
    paired cases."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    name_a, name_b = comparison["names"]
    figure, axes = plt.subplots(1, len(METRICS), figsize=(4.5 * len(METRICS), 4), squeeze=False)
    for axis, metric in zip(axes[0], METRICS):
        rows = [r for r in comparison["results"] if r["metric"] == metric]
        x = np.arange(len(rows))
        for offset, key, name in ((-0.2, "a", name_a), (0.2, "b", name_b)):
            means = np.array([r["mean_" + key] for r in rows], dtype=float)
            stds = np.array([r["std_" + key] for r in rows], dtype=float)
            axis.bar(x + offset, np.nan_to_num(means), width=0.4, yerr=np.nan_to_num(stds), capsize=4, label=name)
        axis.set_xticks(x)
        axis.set_xticklabels([("%d %s" % (r["label"], r["label_name"])).strip()[:18] for r in rows],
                             rotation=20, ha="right")
        axis.set_title(METRIC_TITLES[metric] + ("" if HIGHER_IS_BETTER[metric] else " (lower is better)"))
        if HIGHER_IS_BETTER[metric]:
            axis.set_ylim(0, 1.05)
    axes[0][0].legend()
    figure.suptitle("%s vs %s: mean ± SD over %d paired cases" % (name_a, name_b, comparison["paired_cases"]))
    figure.tight_layout()
    try:
        save_figure_atomic(figure, path, dpi=110)
    finally:
        plt.close(figure)


# --------------------------------------------------------------------------- nnU-Net folds

def fold_predictions(path: str) -> Optional[str]:
    """The validation predictions of an nnU-Net fold folder (v1 ``validation_raw/``, v2 ``validation/``);
    None when ``path`` has neither."""
    for name in FOLD_PREDICTIONS:
        if os.path.isdir(os.path.join(path, name)):
            return os.path.join(path, name)
    return None


def is_nnunet_fold_folder(path: str) -> bool:
    return fold_predictions(path) is not None


def is_evaluation_folder(path: str) -> bool:
    return os.path.isfile(os.path.join(path, PER_CASE_FILE))


def task_name_from_path(path: str) -> Optional[str]:
    """The nnU-Net task folder name (v1 TaskXXX_Name, v2 DatasetXXX_Name) in a path such as
    RESULTS_FOLDER/nnUNet/3d_fullres/Task007_Pancreas/nnUNetTrainerV2__nnUNetPlansv2.1/fold_0."""
    for part in reversed(os.path.abspath(path).split(os.sep)):
        if TASK_PATTERN.match(part):
            return part
    return None


def find_reference_labels(fold_dir: str, ref_dir: Optional[str] = None) -> str:
    """Folder of reference label maps for an nnU-Net fold folder: ``ref_dir`` if given, else the task's
    raw ``labelsTr`` (v1: $nnUNet_raw_data_base/nnUNet_raw_data/<Task>; v2: $nnUNet_raw/<Dataset>), else
    $nnUNet_preprocessed/<Task or Dataset>/gt_segmentations (the copy nnU-Net validates against)."""
    if ref_dir is not None:
        if not os.path.isdir(ref_dir):
            raise EvaluationError("--ref %s is not a folder" % ref_dir)
        return ref_dir
    task = task_name_from_path(fold_dir)
    if task is None:
        raise EvaluationError("cannot tell the task of %s (no TaskXXX_Name or DatasetXXX_Name folder in its path); "
                              "pass --ref LABELS_DIR" % fold_dir)
    if v2_names.is_dataset_name(task):
        raw = os.environ.get(v2_names.RAW_VARIABLE)
        raw_task = os.path.join(raw, task) if raw else None
    else:
        raw = os.environ.get(v1_names.RAW_BASE_VARIABLE)
        raw_task = os.path.join(raw, v1_names.RAW_DATA_FOLDER, task) if raw else None
    candidates = [raw_dataset.labels_tr(raw_task)] if raw_task else []
    if os.environ.get(v1_names.PREPROCESSED_VARIABLE):  # the same variable name in v1 and v2
        candidates.append(os.path.join(os.environ[v1_names.PREPROCESSED_VARIABLE], task,
                                       v1_names.GT_SEGMENTATIONS_FOLDER))
    for candidate in candidates:
        if os.path.isdir(candidate) and list_cases(candidate):
            return candidate
    raise EvaluationError("no reference labels for %s: looked in %s; set nnUNet_raw_data_base (v1) or nnUNet_raw "
                          "(v2) or nnUNet_preprocessed, or pass --ref LABELS_DIR"
                          % (fold_dir, ", ".join(candidates) or "nothing (neither variable is set)"))


def prepare_evaluation(run_dir: str, out_dir: str, *, ref_dir: Optional[str] = None,
                       labels: Optional[Sequence[int]] = None, tolerance_mm: Optional[float] = None,
                       task: Optional[str] = None, num_processes: Optional[int] = None,
                       verbose: bool = True) -> str:
    """An evaluation folder for ``run_dir``: itself if it already is one, else (nnU-Net fold
    folder) the result of evaluating its validation predictions (v1 validation_raw/, v2 validation/)
    into ``out_dir``."""
    if is_evaluation_folder(run_dir):
        return run_dir
    if not is_nnunet_fold_folder(run_dir):
        raise EvaluationError("%s is neither an evaluation folder (no %s) nor an nnU-Net fold folder "
                              "(no validation_raw/ or validation/)" % (run_dir, PER_CASE_FILE))
    references = find_reference_labels(run_dir, ref_dir)
    if task is not None:
        msd_task = find_task(task)
        if msd_task is None:
            raise EvaluationError("%r is not one of the ten Decathlon tasks" % (task,))
    else:
        # a task folder such as Task007_Pancreas (Dataset007_Pancreas) gives the Decathlon labels and tolerance;
        # any other task is scored on the labels its references hold
        derived = task_name_from_path(run_dir)
        msd_task = find_task(derived) if derived else None
    if verbose:
        print("evaluating %s against %s" % (fold_predictions(run_dir), references), file=sys.stderr)
    evaluate_folders(references, fold_predictions(run_dir), labels=labels,
                     tolerance_mm=tolerance_mm, out_dir=out_dir, num_processes=num_processes, task=msd_task,
                     only_predicted_cases=True, verbose=verbose)
    return out_dir


def compare_folders(run_a: str, run_b: str, out_dir: str, names: Optional[Sequence[str]] = None, *,
                    ref_dir: Optional[str] = None, labels: Optional[Sequence[int]] = None,
                    tolerance_mm: Optional[float] = None, task: Optional[str] = None,
                    num_processes: Optional[int] = None, verbose: bool = True) -> dict:
    """``compare_runs`` on evaluation folders or nnU-Net fold folders (evaluated first into
    out_dir/eval_A and out_dir/eval_B)."""
    names = _check_names(names or default_run_names(run_a, run_b))
    refuse_output_inside_inputs(out_dir, {"-a": run_a, "-b": run_b, "--ref": ref_dir})
    for option, run_dir in (("-a", run_a), ("-b", run_b)):
        if not os.path.isdir(run_dir):
            raise EvaluationError("%s %s does not exist (or is not a folder)" % (option, run_dir))
    if os.path.realpath(run_a) == os.path.realpath(run_b):
        raise EvaluationError("-a and -b are the same run (%s): a run compared with itself differs nowhere" % run_a)
    options = dict(ref_dir=ref_dir, labels=labels, tolerance_mm=tolerance_mm, task=task,
                   num_processes=num_processes, verbose=verbose)
    eval_a = prepare_evaluation(run_a, os.path.join(out_dir, "eval_A"), **options)
    eval_b = prepare_evaluation(run_b, os.path.join(out_dir, "eval_B"), **options)
    return compare_runs(eval_a, eval_b, names, out_dir, verbose=verbose)


# --------------------------------------------------------------------------- helpers

def default_run_names(run_a: str, run_b: str) -> Tuple[str, str]:
    """The shortest trailing parts of the two paths that tell them apart (up to three folders:
    .../Trainer__Plans/fold_0 vs .../OtherTrainer__Plans/fold_0), else ("A", "B")."""
    parts_a = os.path.abspath(run_a).split(os.sep)
    parts_b = os.path.abspath(run_b).split(os.sep)
    for depth in (1, 2, 3):
        name_a, name_b = "/".join(parts_a[-depth:]), "/".join(parts_b[-depth:])
        if name_a != name_b and name_a and name_b:
            return name_a, name_b
    return "A", "B"


def _check_names(names: Sequence[str]) -> Tuple[str, str]:
    names = tuple(names)
    if len(names) != 2 or not all(isinstance(n, str) and n.strip() for n in names):
        raise EvaluationError("--names takes two non-empty names, got %r" % (names,))
    if names[0] == names[1]:
        raise EvaluationError("--names gives both runs the name %r; the report could not tell them apart" % names[0])
    return names


def _short(items, limit: int = 5) -> str:
    return (", ".join(items[:limit]) + (" ..." if len(items) > limit else "")) or "none"


def _read_summary(eval_dir: str) -> dict:
    path = os.path.join(eval_dir, SUMMARY_FILE)
    if not os.path.isfile(path):
        return {}
    try:
        with open(path) as handle:
            return json.load(handle)
    except ValueError as error:
        raise EvaluationError("%s is not valid JSON: %s" % (path, error))


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def _std(values: np.ndarray) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")


def _num(value: float, signed: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    if abs(value) < 1e-4 and value != 0:
        return "%+.2e" % value if signed else "%.2e" % value
    return ("%+.4f" if signed else "%.4f") % value


def _tolerance_text(a, b) -> str:
    return ("%g" % a if a is not None else "?") if a == b else "%s / %s" % (a, b)
