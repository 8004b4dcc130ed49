"""The results of an evaluation: one row per case and label, the statistics per label and metric, and the two
files (``per_case.csv``, ``summary.json``) written as one set (an earlier result survives a failed write), read
back by ``nnUNet_genesis_compare`` and the study.
"""
import csv
import json
import math
import os
from typing import Dict, Iterable, List, Sequence

import numpy as np

from evaluation.cases import EvaluationError
from evaluation.metrics import METRICS
from nnunet_genesis.io.atomic import atomic_write, refuse_output_inside_inputs

PER_CASE_FILE = "per_case.csv"
SUMMARY_FILE = "summary.json"
GENERATED_BY = "nnUNet_genesis_evaluate"
PER_CASE_COLUMNS = ("case", "label", "label_name", "dice", "nsd", "hd95",
                    "reference_voxels", "prediction_voxels", "status")


# --------------------------------------------------------------------------- rows and statistics

def _missing_scores() -> dict:
    return {"dice": 0.0, "nsd": 0.0, "hd95": float("nan"), "reference_voxels": "",
            "prediction_voxels": "", "status": "missing"}


def _both_empty_scores() -> dict:
    return {"dice": 1.0, "nsd": 1.0, "hd95": 0.0, "reference_voxels": 0, "prediction_voxels": 0,
            "status": "both_empty"}


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


# --------------------------------------------------------------------------- files

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
