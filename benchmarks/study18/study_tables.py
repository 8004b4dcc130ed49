"""Markdown tables of an ``nnUNet_genesis_study`` folder for docs/measurements_study18.md.

    python benchmarks/study18/study_tables.py STUDY_FOLDER

Prints (1) per count: scratch and Genesis mean +- sd over seeds, the paired difference over seeds with its
95 % interval and the Wilcoxon p (read from study.json's summary, computed by the package), the distance to
issue #18's targets; (2) per count, arm and structure: mean +- sd over seeds of the per-seed mean test Dice of
that structure (from each run's per_case.csv), and the paired difference per structure; (3) the per-seed
numbers (test and the fold's validation Dice).
"""
import csv
import json
import os
import sys

import numpy as np

TARGET_GAIN, FLOOR = 0.03, -0.005


def fmt(x, digits=3):
    return "n/a" if x is None else ("%+.*f" % (digits, x) if x < 0 or digits < 0 else "%.*f" % (digits, x))


def signed(x):
    return "n/a" if x is None else "%+.3f" % x


def per_label_means(eval_dir):
    rows = list(csv.DictReader(open(os.path.join(eval_dir, "per_case.csv"))))
    out = {}
    for r in rows:
        out.setdefault(r["label_name"] or r["label"], []).append(float(r["dice"]))
    return {k: float(np.mean(v)) for k, v in out.items()}


def main(folder):
    study = json.load(open(os.path.join(folder, "study.json")))
    runs, summary = study["runs"], study["summary"]
    print("| labelled cases | seeds | scratch | Genesis | Δ (Genesis − scratch) | 95 % CI of Δ | seeds G/S better "
          "| Wilcoxon p | target +0.03 | floor −0.005 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for s in summary:
        d = s["mean_difference"]
        lo, hi = s["ci95"]
        target = "met" if d >= TARGET_GAIN else "missed by %.3f" % (TARGET_GAIN - d)
        floor = "held" if d >= FLOOR else "broken by %.3f" % (FLOOR - d)
        print("| %s (%d) | %d | %.3f ± %.3f | %.3f ± %.3f | %s | [%s, %s] | %d / %d | %s | %s | %s |" % (
            s["count"], s["num_labelled"], s["num_seeds"], s["scratch"]["mean"], s["scratch"]["sd"] or 0,
            s["genesis"]["mean"], s["genesis"]["sd"] or 0, signed(d), signed(lo), signed(hi),
            s["genesis_better_seeds"], s["scratch_better_seeds"],
            "n/a" if s["p_value"] is None else "%.4f" % s["p_value"], target, floor))

    # per structure
    by = {}
    for r in runs:
        by[(r["count"], r["arm"], r["seed"])] = per_label_means(r["evaluation"])
    labels = sorted({k for v in by.values() for k in v})
    counts = [s["count"] for s in summary]
    print("\nPer structure (mean test Dice over the %d test cases, then mean ± sd over seeds; Δ paired over seeds):\n"
          % len(study["config"]["test_cases"]))
    print("| labelled cases | structure | scratch | Genesis | Δ mean [min, max over seeds] |")
    print("|---|---|---:|---:|---:|")
    for c in counts:
        seeds = sorted({k[2] for k in by if k[0] == c})
        for lab in labels:
            sc = np.array([by[(c, "scratch", s)][lab] for s in seeds if (c, "scratch", s) in by])
            ge = np.array([by[(c, "genesis", s)][lab] for s in seeds if (c, "genesis", s) in by])
            if len(sc) != len(ge) or not len(sc):
                continue
            d = ge - sc
            print("| %s | %s | %.3f ± %.3f | %.3f ± %.3f | %+.3f [%+.3f, %+.3f] |" % (
                c, lab, sc.mean(), sc.std(ddof=1) if len(sc) > 1 else 0, ge.mean(),
                ge.std(ddof=1) if len(ge) > 1 else 0, d.mean(), d.min(), d.max()))

    print("\nPer seed (mean test Dice; in brackets the fold's %d validation cases, nnU-Net's own validation):\n"
          % len(study["config"]["validation_cases"]))
    print("| labelled cases | seed | training cases | scratch | Genesis | Δ |")
    print("|---|---:|---|---:|---:|---:|")
    idx = {(r["count"], r["arm"], r["seed"]): r for r in runs}
    for c in counts:
        for s in sorted({k[2] for k in idx if k[0] == c}):
            sc, ge = idx.get((c, "scratch", s)), idx.get((c, "genesis", s))
            if not sc or not ge:
                continue
            print("| %s | %d | %s | %.3f (%s) | %.3f (%s) | %+.3f |" % (
                c, s, ", ".join(x.replace("deepgrey_", "") for x in sc["train_cases"]), sc["mean_dice"],
                fmt(sc["validation_dice"]), ge["mean_dice"], fmt(ge["validation_dice"]),
                ge["mean_dice"] - sc["mean_dice"]))


if __name__ == "__main__":
    main(sys.argv[1])
