"""``nnUNet_genesis_study``: does pretraining help, and with how many labels? Scratch against Genesis
fine-tuning, at several labelled-case counts and seeds, through the stock ``nnUNet_train`` and
``nnUNet_predict``, scored on held-out test cases with our metrics.

The design (the Models Genesis paper's low-label figure; asked for by nnU-Net's maintainers):

* **Same everything but the start.** For each count ``n`` and seed ``s`` both arms train on the
  same ``n`` cases, drawn from the training cases of the user's fold ``F`` by
  ``numpy.random.default_rng([s, n])`` (``n = all`` takes every training case), with the same
  trainer budget and schedule; the Genesis arm adds ``-pretrained_weights``.
* **The user's splits are never changed.** The study works in its own nnU-Net folders inside
  ``OUT``: ``OUT/nnUNet_preprocessed/TASK`` holds links to every file of the user's preprocessed
  task except ``splits_final.pkl``, which the study writes with one fold per (count, seed),
  each validating on fold ``F``'s validation cases; results go to ``OUT/nnUNet_results``. A re-run
  with more counts or seeds extends the study and reuses the runs it has.
  (nnU-Net unpacks the ``.npz`` files of the linked data folder to ``.npy`` beside them, as any
  training does.)
* **Held-out test cases only.** Every run predicts the test images (``nnUNet_predict`` with
  ``--disable_tta``, the same for both arms) and is scored against the test labels
  (``evaluation.evaluate``); nothing is chosen on them.
* **Statistics.** Per count and arm: mean and sample sd over seeds of the mean foreground Dice
  (each run's mean over test cases and labels). Per count: the paired Wilcoxon signed-rank test
  of Genesis - scratch over (seed, test case) pairs of the per-case mean foreground Dice.

Runs are kept per trainer (``OUT/predictions/TRAINER/RUN``, ``OUT/evaluation/TRAINER/RUN``), so
fine-tuning variants can be compared in one study folder against the same scratch runs.

Outputs: ``study.json`` (configuration, every run with its cases and scores, the summary),
``study.md`` (the table) and ``study.png`` (Dice against labelled cases, mean +- sd per arm), all
written atomically. Finished runs (final checkpoint, all predictions, evaluation) are skipped on
a re-run; an interrupted training resumes with ``-c``. Progress: one bar over the runs and, per
training, the epochs nnU-Net reports finished.
"""
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, replace
from typing import Dict, List, Optional, Sequence

import numpy as np

from nnunet_genesis import safe_pickle
from nnunet_genesis.atomic import (make_dirs, save_figure_atomic, write_json_atomic, write_pickle_atomic,
                                   write_text_atomic)
from nnunet_genesis.nnunet_v1 import layout
from nnunet_genesis.transfer_report import TRANSFER_REPORT_FILE

ARMS = ("scratch", "genesis")
ALL = "all"
NETWORK = "3d_fullres"   # the configuration every run trains and predicts with
STUDY_FILES = ("study.json", "study.md", "study.png")
SPLITS_FILE = "splits_final.pkl"
EPOCH_DONE_LINE = re.compile(r"This epoch took")  # nnU-Net v1 logs it after every finished epoch


class StudyError(RuntimeError):
    """Bad input or a failed step: one line naming the file or command and the fault."""


@dataclass(frozen=True)
class Run:
    arm: str
    count: str       # "2", "4", ... or "all"
    seed: int
    fold_index: int  # fold of the study's own splits_final.pkl
    train_cases: tuple

    @property
    def name(self):
        return "%s_n%s_s%d" % (self.arm, self.count, self.seed)


# --------------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------------
def nnunet_default_splits(case_ids: Sequence[str]) -> List[dict]:
    """nnU-Net v1's own 5-fold split (nnUNetTrainer.do_split: KFold(5, shuffle, random_state=12345)
    over the sorted case ids), for a task that has no splits_final.pkl yet."""
    from sklearn.model_selection import KFold
    keys = np.sort(np.array(list(case_ids)))
    splits = []
    for train, val in KFold(n_splits=5, shuffle=True, random_state=12345).split(keys):
        splits.append({"train": np.array(keys[train]), "val": np.array(keys[val])})
    return splits


def draw_subset(train_cases: Sequence[str], count: str, seed: int) -> tuple:
    """The ``count`` labelled cases of seed ``seed`` (sorted); ``all``: every training case."""
    cases = sorted(str(c) for c in train_cases)
    if count == ALL:
        return tuple(cases)
    n = int(count)
    if not 1 <= n <= len(cases):
        raise StudyError("cannot draw %d labelled cases from the fold's %d training cases" % (n, len(cases)))
    chosen = np.random.default_rng([int(seed), n]).choice(len(cases), size=n, replace=False)
    return tuple(sorted(cases[i] for i in chosen))


def plan_runs(train_cases: Sequence[str], counts: Sequence[str], seeds: Sequence[int]) -> List[Run]:
    """Every (count, seed) in order, both arms on the same subset. Fold indices are assigned by
    :func:`build_study_workspace` (-1 until then)."""
    runs = []
    for count in counts:
        for seed in seeds:
            subset = draw_subset(train_cases, count, seed)
            runs.extend(Run(arm, count, seed, -1, subset) for arm in ARMS)
    return runs


# --------------------------------------------------------------------------------------------
# The study's own nnU-Net folders
# --------------------------------------------------------------------------------------------
def user_fold(task_dir: str, fold: int):
    """(train cases, val cases) of ``fold`` in the user's splits (nnU-Net's default split when the
    task has none yet), and where they came from."""
    splits_file = os.path.join(task_dir, SPLITS_FILE)
    if os.path.isfile(splits_file):
        splits = safe_pickle.load(splits_file)
        source = splits_file
    else:
        with open(os.path.join(task_dir, "dataset.json")) as f:
            dataset = json.load(f)
        ids = [os.path.basename(entry["image"]).split(".nii")[0] for entry in dataset["training"]]
        splits, source = nnunet_default_splits(ids), "nnU-Net's default 5-fold split (%s does not exist)" % splits_file
    if not 0 <= fold < len(splits):
        raise StudyError("%s: fold %d does not exist (%d folds)" % (source, fold, len(splits)))
    return [str(c) for c in splits[fold]["train"]], [str(c) for c in splits[fold]["val"]], source


def task_label_names(task_dir: str) -> Dict[int, str]:
    """{label: name} from the planned task's dataset.json (empty if it has none)."""
    path = os.path.join(task_dir, "dataset.json")
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        labels = json.load(f).get("labels", {})
    return {int(k): str(v) for k, v in labels.items() if str(k).isdigit() and int(k) != 0}


def build_study_workspace(task_dir: str, out_dir: str, runs: Sequence[Run], val_cases: Sequence[str]) -> List[Run]:
    """``OUT/nnUNet_preprocessed/TASK``: links to the user's task files, and the study's own
    ``splits_final.pkl`` with one fold per subset. A study folder grows: a re-run with more counts
    or seeds keeps every fold it already has (same index, same cases) and appends the new ones, so
    finished runs are reused. Returns ``runs`` with their fold indices."""
    task = os.path.basename(os.path.normpath(task_dir))
    study_task = os.path.join(out_dir, "nnUNet_preprocessed", task)
    make_dirs(study_task)
    for entry in sorted(os.listdir(task_dir)):
        link = os.path.join(study_task, entry)
        if entry == SPLITS_FILE or os.path.lexists(link):
            continue
        os.symlink(os.path.abspath(os.path.join(task_dir, entry)), link)
    path = os.path.join(study_task, SPLITS_FILE)
    splits = []
    if os.path.isfile(path):
        splits = safe_pickle.load(path)
    val = sorted(str(c) for c in val_cases)
    if any([str(c) for c in split["val"]] != val for split in splits):
        raise StudyError("%s validates on other cases (an earlier study of another fold): choose another output "
                         "folder" % path)
    # one fold per (count, seed), even where two subsets are equal ('all'): every seed trains anew
    known = {(str(split.get("count")), int(split.get("seed", -1))): i for i, split in enumerate(splits)}
    assigned = []
    for run in runs:
        key = (run.count, int(run.seed))
        if key not in known:
            known[key] = len(splits)
            splits.append({"train": np.array(run.train_cases), "val": np.array(val), "count": run.count,
                           "seed": int(run.seed)})
        elif tuple(str(c) for c in splits[known[key]]["train"]) != tuple(run.train_cases):
            raise StudyError("%s: fold %d (count %s, seed %d) holds other cases than this study draws: choose another "
                             "output folder" % (path, known[key], run.count, run.seed))
        assigned.append(replace(run, fold_index=known[key]))
    write_pickle_atomic(splits, path)
    return assigned


# --------------------------------------------------------------------------------------------
# Running the stock commands
# --------------------------------------------------------------------------------------------
def run_logged(command: List[str], env: Dict[str, str], log_path: str, progress=None) -> None:
    """Run ``command``, appending its output to ``log_path``; ``progress()`` is called whenever
    nnU-Net reports a finished epoch. StudyError naming the command and log on failure."""
    with open(log_path, "a") as log:
        log.write("$ %s\n" % " ".join(command))
        log.flush()
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   bufsize=1)
        for line in process.stdout:
            log.write(line)
            if progress is not None and EPOCH_DONE_LINE.search(line):
                progress()
        status = process.wait()
    if status != 0:
        raise StudyError("failed (exit status %d): %s; its output is in %s" % (status, " ".join(command), log_path))


def list_images(images_dir: str) -> List[str]:
    """Case ids of the nnU-Net-format test images (``CASE_0000.nii.gz``)."""
    if not os.path.isdir(images_dir):
        raise StudyError("%s: test image folder does not exist" % images_dir)
    cases = sorted(f[:-len("_0000.nii.gz")] for f in os.listdir(images_dir) if f.endswith("_0000.nii.gz"))
    if not cases:
        raise StudyError("%s: no nnU-Net test images (CASE_0000.nii.gz)" % images_dir)
    return cases


# --------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------
def per_case_mean_dice(per_case_csv: str, labels: Sequence[int]) -> Dict[str, float]:
    """Per test case, the mean Dice over ``labels``."""
    from evaluation.evaluate import read_per_case_csv
    rows = read_per_case_csv(per_case_csv)
    cases = sorted({r["case"] for r in rows})
    return {c: float(np.mean([r["dice"] for r in rows if r["case"] == c and r["label"] in labels])) for c in cases}


def nnunet_validation_dice(fold_dir: str) -> float:
    """Mean foreground Dice of nnU-Net's own end-of-training validation (the fold's validation
    cases, ``validation_raw/summary.json``): what fine-tuning recipes are chosen on. NaN if absent."""
    path = os.path.join(fold_dir, "validation_raw", "summary.json")
    if not os.path.isfile(path):
        return float("nan")
    with open(path) as f:
        mean = json.load(f)["results"]["mean"]
    values = [float(v["Dice"]) for k, v in mean.items() if str(k) != "0" and "Dice" in v]
    return float(np.mean(values)) if values else float("nan")


def summarise_study(results: Sequence[dict], counts: Sequence[str]) -> List[dict]:
    """One row per count: per arm mean / sd over seeds of the run's mean Dice, n labelled cases,
    and the paired Wilcoxon test (Genesis - scratch) over (seed, case)."""
    from evaluation.compare import wilcoxon_signed_rank
    rows = []
    for count in counts:
        row = {"count": count}
        for arm in ARMS:
            values = [r["mean_dice"] for r in results if r["count"] == count and r["arm"] == arm]
            validation = [r.get("validation_dice", float("nan")) for r in results
                          if r["count"] == count and r["arm"] == arm]
            row[arm] = {"mean": float(np.mean(values)) if values else float("nan"),
                        "sd": float(np.std(values, ddof=1)) if len(values) > 1 else float("nan"),
                        "runs": len(values),
                        "validation_mean": float(np.mean(validation)) if validation else float("nan")}
        scratch = {(r["seed"], c): d for r in results if r["count"] == count and r["arm"] == "scratch"
                   for c, d in r["per_case_dice"].items()}
        genesis = {(r["seed"], c): d for r in results if r["count"] == count and r["arm"] == "genesis"
                   for c, d in r["per_case_dice"].items()}
        pairs = sorted(set(scratch) & set(genesis))
        differences = [genesis[k] - scratch[k] for k in pairs]
        p_value, note = wilcoxon_signed_rank(differences)
        sizes = sorted({r["num_labelled"] for r in results if r["count"] == count})
        row.update({"num_labelled": sizes[0] if len(sizes) == 1 else sizes, "pairs": len(pairs),
                    "mean_difference": float(np.mean(differences)) if differences else float("nan"),
                    "differences": [float(d) for d in differences],
                    "genesis_better": int(sum(d > 0 for d in differences)),
                    "scratch_better": int(sum(d < 0 for d in differences)), "wilcoxon_p": p_value,
                    "wilcoxon_note": note})
        rows.append(row)
    return rows


def format_study_markdown(summary: Sequence[dict], config: dict) -> str:
    lines = ["# Scratch vs Genesis fine-tuning: %s, fold %s, seeds %s" % (config["task"], config["fold"],
                                                                      ", ".join(map(str, config["seeds"]))),
             "",
             "Mean foreground Dice on %d held-out test cases (labels %s); mean ± sd over seeds. "
             "Paired Wilcoxon signed-rank test over (seed, test case) pairs." % (config["num_test_cases"],
                                                                                  ", ".join(map(str, config["labels"]))),
             "",
             "| labelled cases | scratch | Genesis | Δ (Genesis − scratch) | Genesis better / scratch better | Wilcoxon p |",
             "|---|---:|---:|---:|---:|---:|"]
    for row in summary:
        lines.append("| %s (%s) | %.4f ± %.4f | %.4f ± %.4f | %+.4f | %d / %d | %s |" % (
            row["count"], row["num_labelled"], row["scratch"]["mean"], row["scratch"]["sd"], row["genesis"]["mean"],
            row["genesis"]["sd"], row["mean_difference"], row["genesis_better"], row["scratch_better"],
            "%.4f" % row["wilcoxon_p"] if np.isfinite(row["wilcoxon_p"]) else "n/a"))
    notes = sorted({row["wilcoxon_note"] for row in summary if row["wilcoxon_note"]})
    if notes:
        lines += [""] + ["Note: %s" % n for n in notes]
    lines += ["", "Validation cases of the fold (nnU-Net's own validation; what recipes are chosen on): mean Dice "
              + "; ".join("%s labelled: scratch %.4f, Genesis %.4f" % (row["count"], row["scratch"]["validation_mean"],
                                                                       row["genesis"]["validation_mean"])
                          for row in summary)]
    lines += ["", "Trainers: scratch `%s`, Genesis `%s` with `-pretrained_weights %s`." % (
        config["scratch_trainer"], config["genesis_trainer"], config["weights"])]
    return "\n".join(lines) + "\n"


def plot_study(summary: Sequence[dict], path: str, title: str) -> str:
    """Left: Dice against labelled cases, mean ± sd per arm (the paper's learning-curve figure).
    Right: the paired differences Genesis − scratch per (seed, test case) at each count, their mean
    as a bar, and zero: on the left's full Dice scale a difference of 0.01 is invisible."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    figure = Figure(figsize=(10, 4.2))
    FigureCanvasAgg(figure)
    ax = figure.add_subplot(1, 2, 1)
    xs = [row["num_labelled"] if not isinstance(row["num_labelled"], list) else max(row["num_labelled"])
          for row in summary]
    for arm, colour, offset in (("scratch", "tab:grey", -0.06), ("genesis", "tab:red", 0.06)):
        means = [row[arm]["mean"] for row in summary]
        sds = [row[arm]["sd"] if np.isfinite(row[arm]["sd"]) else 0.0 for row in summary]
        ax.errorbar([x * (1 + offset) for x in xs], means, yerr=sds, fmt="-o", capsize=4, color=colour,
                    label="Genesis fine-tuning" if arm == "genesis" else "from scratch")
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs)
    ax.set_xticklabels(["%s%s" % (x, " (all)" if row["count"] == ALL else "") for x, row in zip(xs, summary)])
    ax.set_xlabel("labelled training cases")
    ax.set_ylabel("mean foreground Dice (test cases)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=9)
    ax.legend()

    ax = figure.add_subplot(1, 2, 2)
    positions = list(range(len(summary)))
    for position, row in zip(positions, summary):
        differences = row.get("differences", [])
        if differences:
            jitter = np.linspace(-0.15, 0.15, len(differences)) if len(differences) > 1 else [0.0]
            ax.scatter([position + j for j in jitter], differences, s=14, color="tab:red", alpha=0.6)
            ax.plot([position - 0.25, position + 0.25], [row["mean_difference"]] * 2, color="black", lw=2)
    ax.axhline(0.0, color="tab:grey", lw=1, ls="--")
    ax.set_xticks(positions)
    ax.set_xticklabels(["%s%s" % (x, " (all)" if row["count"] == ALL else "") for x, row in zip(xs, summary)])
    ax.set_xlim(-0.6, len(summary) - 0.4)
    ax.set_xlabel("labelled training cases")
    ax.set_ylabel("Dice Genesis − scratch (per seed and test case)")
    ax.set_title("paired differences (bar: mean; above 0: Genesis better)", fontsize=9)
    ax.grid(alpha=0.3)
    figure.tight_layout()
    return save_figure_atomic(figure, path, dpi=110)


# --------------------------------------------------------------------------------------------
# The study
# --------------------------------------------------------------------------------------------
def check_same_weights(fold_dir: str, weights: str, run_name: str) -> None:
    """Refuse to resume a Genesis run that was fine-tuned from other weights: the study's runs are kept
    by trainer and fold, not by checkpoint, so reusing it would silently mix two pretrainings. The
    weights a run started from are the ``source`` of its ``transfer_report.json``."""
    report_file = os.path.join(fold_dir, TRANSFER_REPORT_FILE)
    if not os.path.isfile(report_file):
        return
    with open(report_file) as f:
        source = json.load(f).get("source")
    if source and os.path.abspath(source) != os.path.abspath(weights):
        raise StudyError("run %s in %s was fine-tuned from %s, not from %s: use another -o (or move that run away)"
                         % (run_name, fold_dir, source, os.path.abspath(weights)))


def run_study(task: str, weights: str, out_dir: str, test_images: Optional[str], test_labels: str,
              fold: int = 0, counts: Sequence[str] = ("2", "4", ALL), seeds: Sequence[int] = (0, 1, 2),
              scratch_trainer: str = "nnUNetTrainerV2", genesis_trainer: str = "nnUNetTrainerV2_Genesis",
              labels: Optional[Sequence[int]] = None, tolerance_mm: Optional[float] = None,
              env: Optional[Dict[str, str]] = None, console=None) -> dict:
    """Run (or resume) the study; returns the contents of study.json. See the module docstring."""
    from tqdm import tqdm
    from evaluation.evaluate import evaluate_folders
    env = dict(os.environ if env is None else env)
    console = console or sys.stdout
    for key in (layout.PREPROCESSED_VARIABLE,):
        if not env.get(key):
            raise StudyError("environment variable %s is not set: nnU-Net does not know where its folders are" % key)
    counts = [str(c) for c in counts]
    for count in counts:
        if count != ALL and not (count.isdigit() and int(count) > 0):
            raise StudyError("labelled-case count %r is neither a positive number nor 'all'" % count)
    if not os.path.isfile(weights):
        raise StudyError("%s: pretrained weights file does not exist" % weights)
    preprocessed = env[layout.PREPROCESSED_VARIABLE]
    task_name = str(task) if layout.is_task_name(task) else None
    if task_name is None:
        matches = [d for d in os.listdir(preprocessed) if d.startswith(layout.task_prefix(task))]
        if len(matches) != 1:
            raise StudyError("task id %s: %d planned task(s) in %s" % (task, len(matches), preprocessed))
        task_name = matches[0]
    task_dir = os.path.join(preprocessed, task_name)
    if not os.path.isfile(layout.plans_file(task_dir)):
        raise StudyError("%s: no 3D plans (run nnUNet_plan_and_preprocess first)" % task_dir)
    if test_images is None:
        test_images = os.path.join(env.get(layout.RAW_BASE_VARIABLE, ""), layout.RAW_DATA_FOLDER, task_name, "imagesTs")
    test_cases = list_images(test_images)
    if not os.path.isdir(test_labels):
        raise StudyError("%s: test label folder does not exist" % test_labels)
    out_dir = os.path.abspath(out_dir)
    for sub in ("logs", "predictions", "evaluation", "nnUNet_results"):
        make_dirs(os.path.join(out_dir, sub))

    train_cases, val_cases, split_source = user_fold(task_dir, fold)
    label_names = task_label_names(task_dir)
    runs = build_study_workspace(task_dir, out_dir, plan_runs(train_cases, counts, seeds), val_cases)
    study_env = dict(env, **{layout.PREPROCESSED_VARIABLE: os.path.join(out_dir, "nnUNet_preprocessed"),
                             layout.RESULTS_VARIABLE: os.path.join(out_dir, "nnUNet_results")})
    bin_dir = os.path.dirname(sys.executable)
    trainers = {"scratch": scratch_trainer, "genesis": genesis_trainer}
    print("study: %s fold %d (%s): %d training cases; counts %s x seeds %s x 2 arms = %d runs; %d test cases"
          % (task_name, fold, split_source, len(train_cases), ", ".join(counts), ", ".join(map(str, seeds)),
             len(runs), len(test_cases)), file=console, flush=True)

    results = []
    bar = tqdm(runs, desc="study runs", unit="run", file=console)
    for run in bar:
        bar.set_postfix_str(run.name)
        trainer = trainers[run.arm]
        fold_dir = layout.fold_folder(os.path.join(study_env[layout.RESULTS_VARIABLE], layout.RESULTS_SUBFOLDER),
                                      NETWORK, task_name, trainer, run.fold_index)
        log_path = os.path.join(out_dir, "logs", "%s__%s.log" % (run.name, trainer))
        if run.arm == "genesis":
            check_same_weights(fold_dir, weights, run.name)
        if not os.path.isfile(os.path.join(fold_dir, layout.FINAL_CHECKPOINT)):
            command = [os.path.join(bin_dir, "nnUNet_train"), NETWORK, trainer, task_name, str(run.fold_index),
                       "--disable_postprocessing_on_folds"]
            if os.path.isfile(os.path.join(fold_dir, "model_latest.model")):
                command.append("-c")
            elif run.arm == "genesis":
                command += ["-pretrained_weights", os.path.abspath(weights)]
            epochs = tqdm(desc="  %s: training" % run.name, unit="epoch", file=console, leave=False)
            try:
                run_logged(command, study_env, log_path, progress=lambda: epochs.update(1))
            finally:
                epochs.close()
        pred_dir = os.path.join(out_dir, "predictions", trainer, run.name)
        if not all(os.path.isfile(os.path.join(pred_dir, c + ".nii.gz")) for c in test_cases):
            run_logged([os.path.join(bin_dir, "nnUNet_predict"), "-i", test_images, "-o", pred_dir, "-t", task_name,
                        "-m", NETWORK, "-tr", trainer, "-f", str(run.fold_index), "--disable_tta",
                        "-chk", os.path.splitext(layout.FINAL_CHECKPOINT)[0], "--num_threads_preprocessing", "1",
                        "--num_threads_nifti_save", "1"], study_env, log_path)
        eval_dir = os.path.join(out_dir, "evaluation", trainer, run.name)
        per_case = os.path.join(eval_dir, "per_case.csv")
        if not os.path.isfile(per_case):
            evaluate_folders(test_labels, pred_dir, labels=labels, tolerance_mm=tolerance_mm, out_dir=eval_dir,
                             num_processes=1, label_names=label_names, verbose=False)
        with open(os.path.join(eval_dir, "summary.json")) as f:
            scored_labels = [int(k) for k in json.load(f)["labels"]]
        dice = per_case_mean_dice(per_case, scored_labels)
        results.append({"arm": run.arm, "count": run.count, "seed": run.seed, "fold_index": run.fold_index,
                        "num_labelled": len(run.train_cases), "train_cases": list(run.train_cases),
                        "trainer": trainer, "per_case_dice": dice, "mean_dice": float(np.mean(list(dice.values()))),
                        "validation_dice": nnunet_validation_dice(fold_dir),
                        "evaluation": eval_dir, "predictions": pred_dir, "fold_dir": fold_dir})
    bar.close()

    summary = summarise_study(results, counts)
    config = {"task": task_name, "fold": fold, "split_source": split_source, "counts": counts,
              "seeds": list(seeds), "weights": os.path.abspath(weights), "scratch_trainer": scratch_trainer,
              "genesis_trainer": genesis_trainer, "labels": scored_labels, "test_images": test_images,
              "test_labels": test_labels, "num_test_cases": len(test_cases), "validation_cases": val_cases}
    study = {"config": config, "runs": results, "summary": summary}
    write_json_atomic(study, os.path.join(out_dir, "study.json"))
    write_text_atomic(format_study_markdown(summary, config), os.path.join(out_dir, "study.md"))
    plot_study(summary, os.path.join(out_dir, "study.png"),
               "%s: scratch vs Genesis, %d seeds, %d test cases" % (task_name, len(seeds), len(test_cases)))
    return study
