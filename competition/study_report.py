"""The study's report: ``study.json``, ``study.md`` and ``study.png``, written as one set
(``competition/output_set.py``: all three to temporaries, then renamed, then ``study_manifest.json``).

* ``study.md``: per count, mean ± sd over seeds per arm, the paired difference Genesis − scratch over seeds
  with its 95 % t-interval, the exact Wilcoxon p over seeds and the number of seeds
  (``competition/study_stats.py`` states the maths); the test cases scored; the pretraining record's verdict
  on the weights; nnU-Net's own validation Dice (what recipes are chosen on); whether both arms of every pair
  trained with the pair's seed (common random numbers, :func:`common_random_numbers`).
* ``study.png``: left, Dice against labelled cases (mean ± sd per arm); right, each seed's difference
  Genesis − scratch per count, their mean and its 95 % interval, and zero.
* **Pretraining record of the weights**: one marked place in both files (``config["pretraining_record"]``
  and the line "Pretraining record of the weights: ..."), filled by :func:`pretraining_verdict`.
"""
import json
import math
from typing import Callable, Optional, Sequence

import numpy as np

from competition.output_set import write_output_set
from competition.study_inputs import ALL
from evaluation.evaluate import _json_safe

STUDY_FILES = ("study.json", "study.md", "study.png")
MANIFEST = "study_manifest.json"
NO_RECORD = "unknown (no pretraining record)"


def pretraining_verdict(weights: str, read_record: Optional[Callable[[str], Optional[dict]]] = None) -> dict:
    """{"verdict", "reasons", "text"} of the weights' own pretraining record: ``read_record(weights)``
    returns {"verdict": "learned" | "not learned" | "unknown", "reasons": [...]} or None (no record).
    ``read_record`` None: ``nnunet_genesis.checkpoints.pretraining_record.read_record``."""
    from nnunet_genesis.checkpoints.pretraining_record import read_record as read_own_record
    record = (read_record or read_own_record)(weights)
    if not record:
        return {"verdict": "unknown", "reasons": [], "text": NO_RECORD}
    verdict, reasons = str(record.get("verdict", "unknown")), [str(r) for r in record.get("reasons", [])]
    text = verdict + (" (%s)" % "; ".join(reasons) if reasons else "")
    if verdict == "not learned":
        text = "NOT LEARNED: %s; Genesis numbers below are from weights that did not learn" % (
            "; ".join(reasons) or "see the record")
    return {"verdict": verdict, "reasons": reasons, "text": text}


def common_random_numbers(runs: Sequence[dict]) -> dict:
    """{"pairs", "seeded_pairs", "unseeded", "text"}: in how many (count, seed) pairs both arms' training logs
    confirm the pair's training seed (``run["seeded"]``; ``competition/study.py``, ``nnunet_genesis/training_seed.py``)."""
    pairs = {}
    for run in runs:
        pairs.setdefault((run["count"], run["seed"]), []).append(run)
    seeded = [key for key, arms in pairs.items() if len(arms) == 2 and all(r.get("seeded") for r in arms)]
    unseeded = sorted({"%s (%s)" % (r["trainer"], r["arm"]) for r in runs if not r.get("seeded")})
    text = ("%d of %d pairs with both arms trained on their pair's seed (the same cases, patches and augmentations "
            "in both arms)" % (len(seeded), len(pairs)))
    if unseeded:
        text += ("; not seeded: %s (a trainer that does not mix in SeededTraining, nnunet_genesis/nnunet_v1/trainers/"
                 "seeded.py or nnunet_v2/trainers/seeded.py, draws nnU-Net's own random numbers: the paired "
                 "differences then hold the draws' noise too)" % ", ".join(unseeded))
    return {"pairs": len(pairs), "seeded_pairs": len(seeded), "unseeded": unseeded, "text": text}


def _number(value, fmt="%.4f") -> str:
    return fmt % value if value is not None and math.isfinite(value) else "n/a"


def _ci(row) -> str:
    low, high = row["ci95"]
    return "[%s, %s]" % (_number(low, "%+.4f"), _number(high, "%+.4f")) if math.isfinite(low) else "n/a"


def count_label(row) -> str:
    return "%s (%s)" % (row["count"], row["num_labelled"])


def format_study_markdown(summary: Sequence[dict], config: dict) -> str:
    lines = ["# Scratch vs Genesis fine-tuning: %s, fold %s, seeds %s" % (
        config["task"], config["fold"], ", ".join(map(str, config["seeds"]))), "",
        "Mean foreground Dice over %d held-out test cases (labels %s; NSD tolerance %s mm). Per arm: mean ± sd "
        "over seeds of each seed's mean. Δ: Genesis − scratch per seed, mean over seeds with its 95 %% "
        "t-interval; p: Wilcoxon signed-rank test over seeds, exact, two-sided (the seed is the unit)." % (
            len(config["test_cases"]), ", ".join(map(str, config["labels"])), _number(config.get("tolerance_mm"), "%g")),
        "",
        "| labelled cases | seeds | scratch | Genesis | Δ (Genesis − scratch) | 95 % CI of Δ | seeds Genesis / scratch better | p (over seeds) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in summary:
        lines.append("| %s | %d | %s ± %s | %s ± %s | %s | %s | %d / %d | %s |" % (
            count_label(row), row["num_seeds"], _number(row["scratch"]["mean"]), _number(row["scratch"]["sd"]),
            _number(row["genesis"]["mean"]), _number(row["genesis"]["sd"]), _number(row["mean_difference"], "%+.4f"),
            _ci(row), row["genesis_better_seeds"], row["scratch_better_seeds"], _number(row["p_value"])))
    notes = sorted({row["note"] for row in summary if row["note"]})
    lines += [""] + ["Note: %s." % n for n in notes] if notes else []
    lines += ["", "Pretraining record of the weights: %s" % config["pretraining_record"]["text"]]
    lines += ["", "Test cases scored: %s." % ", ".join(config["test_cases"])]
    lines += ["", "Validation cases of the fold (nnU-Net's own validation; what recipes are chosen on): mean Dice "
              + "; ".join("%s labelled: scratch %s, Genesis %s" % (row["count"], _number(row["scratch"]["validation_mean"]),
                                                                   _number(row["genesis"]["validation_mean"]))
                          for row in summary)]
    lines += ["", "Trainers: scratch `%s`, Genesis `%s` with `-pretrained_weights %s` (sha256 %s)." % (
        config["scratch_trainer"], config["genesis_trainer"], config["weights"], config["weights_sha256"][:12])]
    if "common_random_numbers" in config:
        lines += ["", "Common random numbers: %s." % config["common_random_numbers"]["text"]]
    return "\n".join(lines) + "\n"


def _tick_labels(summary):
    return ["%s%s" % (row["num_labelled"] if not isinstance(row["num_labelled"], list) else max(row["num_labelled"]),
                      " (all)" if row["count"] == ALL else "") for row in summary]


def draw_study(summary: Sequence[dict], title: str):
    """The two-panel figure (module docstring); returns the matplotlib Figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    figure = Figure(figsize=(10, 4.2))
    FigureCanvasAgg(figure)
    ax = figure.add_subplot(1, 2, 1)
    xs = [row["num_labelled"] if not isinstance(row["num_labelled"], list) else max(row["num_labelled"])
          for row in summary]
    for arm, colour, offset in (("scratch", "tab:grey", -0.06), ("genesis", "tab:red", 0.06)):
        means = [row[arm]["mean"] for row in summary]
        sds = [row[arm]["sd"] if math.isfinite(row[arm]["sd"]) else 0.0 for row in summary]
        ax.errorbar([x * (1 + offset) for x in xs], means, yerr=sds, fmt="-o", capsize=4, color=colour,
                    label="Genesis fine-tuning" if arm == "genesis" else "from scratch")
    ax.set_xscale("log", base=2)
    ax.set_xlim(min(xs) / 1.5, max(xs) * 1.5)
    ax.set_xticks(xs)
    ax.set_xticklabels(_tick_labels(summary))
    ax.set_xlabel("labelled training cases")
    ax.set_ylabel("mean foreground Dice (test cases)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=9)
    ax.legend(title="mean ± sd over seeds", fontsize=8)

    ax = figure.add_subplot(1, 2, 2)
    for position, row in enumerate(summary):
        differences = row["seed_differences"]
        if not differences:
            continue
        jitter = np.linspace(-0.12, 0.12, len(differences)) if len(differences) > 1 else [0.0]
        ax.scatter([position - 0.15 + j for j in jitter], differences, s=22, color="tab:red", alpha=0.7,
                   label="one seed" if position == 0 else None)
        low, high = row["ci95"]
        if math.isfinite(low):
            ax.errorbar([position + 0.15], [row["mean_difference"]], yerr=[[row["mean_difference"] - low],
                                                                        [high - row["mean_difference"]]],
                        fmt="s", color="black", capsize=6, label="mean, 95 % CI" if position == 0 else None)
        else:
            ax.plot([position + 0.15], [row["mean_difference"]], "s", color="black",
                    label="mean (1 seed: no CI)" if position == 0 else None)
    ax.axhline(0.0, color="tab:grey", lw=1, ls="--")
    ax.set_xticks(range(len(summary)))
    ax.set_xticklabels(["%s\n%d seeds, p %s" % (tick, row["num_seeds"], _number(row["p_value"], "%.3g"))
                        for tick, row in zip(_tick_labels(summary), summary)], fontsize=8)
    ax.set_xlim(-0.6, len(summary) - 0.4)
    ax.set_xlabel("labelled training cases")
    ax.set_ylabel("Dice Genesis − scratch (per seed)")
    ax.set_title("paired difference per seed (above 0: Genesis better)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best", framealpha=0.6)
    figure.tight_layout()
    return figure


def write_study_outputs(study: dict, out_dir: str, title: str) -> list:
    """study.json, study.md and study.png as one set (all old or all new; see competition/output_set.py)."""
    markdown = format_study_markdown(study["summary"], study["config"])
    figure = draw_study(study["summary"], title)

    def write_json(tmp):
        with open(tmp, "w") as f:
            json.dump(_json_safe(study), f, indent=2)

    def write_md(tmp):
        with open(tmp, "w") as f:
            f.write(markdown)
    return write_output_set(out_dir, {"study.json": write_json, "study.md": write_md,
                                      "study.png": lambda tmp: figure.savefig(tmp, dpi=110)}, MANIFEST)
