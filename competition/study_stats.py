"""The study's statistics: the seed is the independent unit.

Within one seed both arms train on the same drawn cases and are scored on the same test cases, so
the test cases of one seed are not independent replicates of the comparison (they share one training
of each arm); the seeds are. For one labelled-case count with seeds ``s = 1..n``:

* each arm's score of a seed is its mean Dice over the test cases (``x_s`` scratch, ``y_s`` Genesis);
* the paired difference of seed ``s`` is ``d_s = y_s - x_s`` (Genesis - scratch);
* its mean ``d = (1/n) sum d_s`` and sample sd ``sd = sqrt(sum (d_s - d)^2 / (n - 1))``;
* the 95 % confidence interval is Student's t-interval ``d -/+ t_{0.975, n-1} * sd / sqrt(n)``
  (it assumes the ``d_s`` roughly normal; with fewer than 2 seeds there is none: "n/a");
* the paired test is the two-sided Wilcoxon signed-rank test over the ``d_s``, **exact**: zero
  differences are dropped (Wilcoxon's rule), the others ranked by ``|d_s|`` with average ranks for
  ties, and ``T+`` (the sum of the positive ranks) compared with its exact distribution when each sign
  is + or - with probability 1/2 independently (enumerated by dynamic programming over the doubled
  ranks, so it is exact with ties too, conditional on them); ``p = min(1, 2 min(P(T+ <= t), P(T+ >= t)))``
  as scipy's ``wilcoxon(method="exact")``. With ``m`` non-zero differences p cannot fall below
  ``2 / 2^m`` (0.25 with 3 seeds, 0.0625 with 5, 0.031 with 6): the report says so.

The per-(seed, test case) numbers stay in study.json; they describe the spread, not the test.
"""
import math
from typing import Dict, List, Sequence

import numpy as np

CONFIDENCE = 0.95
TEST_NAME = "Wilcoxon signed-rank, exact, two-sided, over seeds"


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE):
    """(low, high) of Student's t-interval for the mean of ``values``; (nan, nan) below 2 values."""
    from scipy.stats import t
    values = np.asarray(values, dtype=float)
    n = values.size
    if n < 2:
        return float("nan"), float("nan")
    mean, sd = float(values.mean()), float(values.std(ddof=1))
    half = float(t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)
    return mean - half, mean + half


def signed_rank_exact(differences: Sequence[float]):
    """(two-sided exact p, number of non-zero differences) of the Wilcoxon signed-rank test (see the
    module docstring). All differences zero: no evidence of any difference, p = 1.0."""
    from scipy.stats import rankdata
    d = np.asarray(differences, dtype=float)
    d = d[d != 0]
    m = d.size
    if m == 0:
        return 1.0, 0
    doubled = np.rint(2 * rankdata(np.abs(d))).astype(int)     # average ranks are multiples of 1/2
    t_plus = int(doubled[d > 0].sum())
    counts = np.zeros(int(doubled.sum()) + 1)                  # ways to reach each doubled sum
    counts[0] = 1.0
    for r in doubled:
        shifted = np.zeros_like(counts)
        shifted[r:] = counts[:counts.size - r]
        counts = counts + shifted
    probabilities = counts / counts.sum()
    lower, upper = probabilities[:t_plus + 1].sum(), probabilities[t_plus:].sum()
    return float(min(1.0, 2 * min(lower, upper))), m


def paired_over_seeds(scratch: Dict[int, float], genesis: Dict[int, float]) -> dict:
    """Statistics of one count: ``scratch`` / ``genesis`` map seed -> that seed's mean Dice over the test
    cases. Only seeds that both arms have are paired."""
    seeds = sorted(set(scratch) & set(genesis))
    differences = [float(genesis[s] - scratch[s]) for s in seeds]
    n = len(differences)
    low, high = t_interval(differences)
    p_value, nonzero = signed_rank_exact(differences) if n else (float("nan"), 0)
    if n < 2:
        note = "fewer than 2 seeds: no interval, no test"
        p_value = float("nan")
    elif nonzero and 2.0 / 2 ** nonzero > 0.05:
        note = "%d non-zero seed differences: the exact p cannot fall below %.3g" % (nonzero, 2.0 / 2 ** nonzero)
    else:
        note = ""
    return {"seeds": seeds, "num_seeds": n, "seed_differences": differences,
            "mean_difference": float(np.mean(differences)) if n else float("nan"),
            "sd_difference": float(np.std(differences, ddof=1)) if n > 1 else float("nan"),
            "ci95": [low, high], "p_value": p_value, "test": TEST_NAME, "note": note,
            "genesis_better_seeds": int(sum(d > 0 for d in differences)),
            "scratch_better_seeds": int(sum(d < 0 for d in differences))}


def arm_over_seeds(values: Sequence[float]) -> dict:
    """Mean and sample sd over seeds of an arm's per-seed mean Dice (sd NaN below 2 seeds)."""
    values = [float(v) for v in values]
    return {"mean": float(np.mean(values)) if values else float("nan"),
            "sd": float(np.std(values, ddof=1)) if len(values) > 1 else float("nan"), "runs": len(values)}


def summarise_study(results: Sequence[dict], counts: Sequence[str]) -> List[dict]:
    """One row per count from the runs' results (``arm``, ``count``, ``seed``, ``mean_dice``,
    ``per_case_dice``, ``num_labelled``, optional ``validation_dice``): per arm mean / sd over seeds, the
    paired statistics over seeds, and the per-(seed, case) differences kept for the record."""
    rows = []
    for count in counts:
        mine = [r for r in results if r["count"] == count]
        by_arm = {arm: {r["seed"]: r for r in mine if r["arm"] == arm} for arm in ("scratch", "genesis")}
        row = {"count": count}
        for arm, runs in by_arm.items():
            row[arm] = arm_over_seeds([r["mean_dice"] for r in runs.values()])
            validation = [r.get("validation_dice", float("nan")) for r in runs.values()]
            row[arm]["validation_mean"] = float(np.mean(validation)) if validation else float("nan")
        row.update(paired_over_seeds({s: r["mean_dice"] for s, r in by_arm["scratch"].items()},
                                     {s: r["mean_dice"] for s, r in by_arm["genesis"].items()}))
        row["case_differences"] = {
            str(s): {c: float(by_arm["genesis"][s]["per_case_dice"][c] - d)
                     for c, d in sorted(by_arm["scratch"][s]["per_case_dice"].items())}
            for s in row["seeds"]}
        sizes = sorted({r["num_labelled"] for r in mine})
        row["num_labelled"] = sizes[0] if len(sizes) == 1 else sizes
        rows.append(row)
    return rows
