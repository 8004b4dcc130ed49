"""``nnUNet_genesis_study``: does pretraining help, and with how many labels? Scratch against Genesis
fine-tuning, at several labelled-case counts and seeds, through the stock ``nnUNet_train`` and
``nnUNet_predict``, scored on held-out test cases with our metrics.

The design (the Models Genesis paper's low-label figure; asked for by nnU-Net's maintainers):

* **Same everything but the start.** For each count ``n`` and seed ``s`` both arms train on the
  same ``n`` cases, drawn from the training cases of the user's fold ``F`` by
  ``numpy.random.default_rng([s, n])`` (``n = all`` takes every training case), with the same
  trainer budget and schedule; the Genesis arm adds ``-pretrained_weights``. **Common random numbers:** both
  arms of the pair train with one seed (:func:`training_seed_of`, handed over in ``nnUNet_genesis_training_seed``),
  so a trainer that honours it (our fine-tuning trainers and the default scratch arm, ``nnUNetTrainerV2_Seeded`` /
  ``nnUNetTrainer_Seeded``: ``nnunet_genesis/training_seed.py``) draws the same cases, patches and augmentations in
  both arms; the paired difference then measures the start, not the draw. Whether each run's log confirms its
  seed is recorded and reported; a trainer that ignores it trains with nnU-Net's own unseeded draws.
* **The user's splits are never changed.** The study works in its own nnU-Net folders inside ``OUT``
  (``competition/study_nnunet_v1.py``, the one module that knows nnU-Net v1's commands and folders;
  ``competition/study_nnunet_v2.py`` for v2's ``nnUNetv2_train`` / ``nnUNetv2_predict``, ``backend=``).
* **Held-out test cases only.** Every run predicts the test images (no test-time augmentation, the
  same for both arms) and is scored against the test labels (``evaluation.evaluate``, the task's labels
  or ``-l``); nothing is chosen on them.
* **Checked before training** (``competition/study_inputs.py``): options, the fold, the test set (images
  and label maps one to one, geometry, label values), the output folder.
* **Statistics over seeds** (``competition/study_stats.py``); the report (``competition/study_report.py``)
  is written as one set.

**Resume: the numbers always match the recorded inputs** (``competition/study_records.py``). Each
training, prediction and evaluation records what produced it; on a re-run a step is reused only when its
record matches the current inputs. Per input:

====================================  ==================================================================
input changed                          what the study does
====================================  ==================================================================
test label maps (names or contents),   scores again (the evaluation only)
``-l``, ``--tolerance``
test images (names or contents)        predicts again, then scores again
the weights' contents (same path or    trains the Genesis arm again (the earlier run is moved to
another)                               ``OUT/superseded/``), then predicts and scores
a run's checkpoint                     predicts again, then scores again
a prediction missing or damaged (a     predicts that run again (into a temporary folder, swapped into
truncated file of an interrupted       place when complete)
``nnUNet_predict``)
the task's plans file, the task, the   refused, one line naming what changed: start afresh with a new
fold, its training or validation       ``-o`` (every run of both arms depends on them; recomputing
cases, a trainer of a recorded run     would be a new study)
a training with no record in OUT       refused (made by an earlier version or copied in)
====================================  ==================================================================

Counts or seeds added to an existing study extend it; runs it has are reused after the checks above.
Outputs: ``study.json`` (configuration with the test set's fingerprint, every run with its records,
cases and per-case scores, the summary), ``study.md`` and ``study.png``. Progress: one bar over the
runs and, per training, the epochs nnU-Net reports finished.
"""
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from competition.output_set import replace_folder
from competition.study_inputs import (ALL, StepFailed, StudyError, check_counts, check_counts_against_fold, check_label_option,
                                      check_output_folder, check_seeds, check_test_set, check_tolerance, check_trainers)
from competition.study_nnunet_v1 import NETWORK, NnUNetV1
from competition.study_records import (EVALUATION_RECORD, PREDICTION_RECORD, STUDY_RECORD, TRAINING_RECORD,
                                       check_study_record, decide, read_record, write_record)
from competition.study_report import (STUDY_FILES, common_random_numbers, format_study_markdown, pretraining_verdict,
                                      write_study_outputs)
from competition.study_stats import summarise_study
from nnunet_genesis.io.atomic import make_dirs
from nnunet_genesis.io.fingerprint import file_sha256, folder_fingerprint
from nnunet_genesis.training_seed import MAX_SEED, VARIABLE as SEED_VARIABLE, logged_seed

__all__ = ["ALL", "ARMS", "NETWORK", "STUDY_FILES", "Run", "StepFailed", "StudyError", "draw_subset", "format_study_markdown",
           "plan_runs", "run_logged", "run_study", "summarise_study"]

ARMS = ("scratch", "genesis")
FRESH = "start afresh with a new -o"


@dataclass(frozen=True)
class Run:
    arm: str
    count: str       # "2", "4", ... or "all"
    seed: int
    fold_index: int  # fold of the study's own splits
    train_cases: tuple

    @property
    def name(self):
        return "%s_n%s_s%d" % (self.arm, self.count, self.seed)


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


def training_seed_of(seed: int, num_labelled: int) -> int:
    """The training seed both arms of the pair (``seed``, ``num_labelled`` cases) share: numpy's
    ``SeedSequence([seed, num_labelled, 1])``, so the subset's draw (``default_rng([seed, n])``) and the
    training's draws come from different streams."""
    return int(np.random.SeedSequence([int(seed), int(num_labelled), 1]).generate_state(1)[0]) % (MAX_SEED + 1)


def logged_training_seed(fold_dir: str) -> Optional[int]:
    """The seed the training in ``fold_dir`` says it used, from nnU-Net's own training logs (v1 and v2 both
    write ``training_log_*.txt`` into the fold folder; the last one that names a seed), or None."""
    import glob
    seed = None
    for path in sorted(glob.glob(os.path.join(fold_dir, "training_log_*.txt"))):
        with open(path, errors="replace") as f:
            in_file = logged_seed(f.read())
        seed = seed if in_file is None else in_file
    return seed


def plan_runs(train_cases: Sequence[str], counts: Sequence[str], seeds: Sequence[int]) -> List[Run]:
    """Every (count, seed) in order, both arms on the same subset (fold indices -1 until the workspace
    assigns them)."""
    return [Run(arm, count, seed, -1, draw_subset(train_cases, count, seed))
            for count in counts for seed in seeds for arm in ARMS]


def run_logged(command: List[str], env: Dict[str, str], log_path: str, progress=None, epoch_done=None) -> None:
    """Run ``command``, appending its output to ``log_path``; ``progress()`` is called on every line that
    matches ``epoch_done`` (default: nnU-Net v1's end-of-epoch line). StudyError naming the command and
    log on failure."""
    epoch_done = epoch_done or NnUNetV1.epoch_done
    with open(log_path, "a") as log:
        log.write("$ %s\n" % " ".join(command))
        log.flush()
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   bufsize=1)
        for line in process.stdout:
            log.write(line)
            if progress is not None and epoch_done.search(line):
                progress()
        status = process.wait()
    if status != 0:
        raise StepFailed("failed (exit status %d): %s; its output is in %s" % (status, " ".join(command), log_path))


def _complete(path: str) -> bool:
    from nnunet_genesis.io.integrity import image_file_problem
    return os.path.isfile(path) and image_file_problem(path) is None


def _read_own_record(path: str):
    """(record or None, reasons to redo): a damaged record of a prediction or an evaluation (the study's own
    output) is repaired by redoing that step."""
    try:
        return read_record(path), []
    except StudyError:
        return None, ["its record %s is damaged" % path]


def _claim(out_dir: str) -> None:
    """A new or empty folder, or a study folder (it has a study record)."""
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not os.path.isfile(os.path.join(out_dir, STUDY_RECORD)):
        raise StudyError("-o %s is not empty and holds no %s (not a study folder, or one made by an earlier version "
                         "that recorded nothing): choose a new or empty folder" % (out_dir, STUDY_RECORD))


def _supersede(folder: str, out_dir: str, name: str) -> str:
    """Move a run's folder that no longer matches its inputs to OUT/superseded/ (nothing is deleted)."""
    parent = make_dirs(os.path.join(out_dir, "superseded"))
    index = 1
    while os.path.lexists(os.path.join(parent, "%s_%d" % (name, index))):
        index += 1
    target = os.path.join(parent, "%s_%d" % (name, index))
    os.rename(folder, target)
    return target


class StudyRunner:
    """One study invocation: the checked inputs and the three steps of a run (train, predict, evaluate)."""

    def __init__(self, nn, task_name, weights, out_dir, test_set, labels, label_names, tolerance_mm, hashes, say):
        self.nn, self.task_name, self.weights, self.out_dir = nn, task_name, weights, out_dir
        self.test_set, self.labels, self.label_names = test_set, labels, label_names
        self.tolerance_mm, self.hashes, self.say = tolerance_mm, hashes, say
        self.env = nn.study_env()

    def log(self, run, trainer):
        return os.path.join(self.out_dir, "logs", "%s__%s.log" % (run.name, trainer))

    def train(self, run: Run, trainer: str, val_cases, epochs) -> dict:
        fold_dir = self.nn.fold_dir(self.task_name, trainer, run.fold_index)
        current = {"backend": self.nn.name, "arm": run.arm, "trainer": trainer, "count": run.count,
                   "seed": run.seed, "train_cases": list(run.train_cases), "validation_cases": list(val_cases),
                   "training_seed": training_seed_of(run.seed, len(run.train_cases)), "plans_sha256": self.hashes["plans"],
                   "weights_sha256": self.hashes["weights"] if run.arm == "genesis" else None}
        path = os.path.join(fold_dir, TRAINING_RECORD)
        recorded = read_record(path)
        if recorded is None and os.path.isdir(fold_dir) and os.listdir(fold_dir):
            raise StudyError("%s holds a training this study did not record (an earlier version's, or copied in): "
                             "move it away, or %s" % (fold_dir, FRESH))
        changed = decide(recorded, current, path, FRESH)
        if changed:
            moved = _supersede(fold_dir, self.out_dir, "%s__%s" % (trainer, run.name))
            self.say("%s: %s changed: training again (the earlier run is kept in %s)" % (run.name, "; ".join(changed),
                                                                                          moved))
            recorded = None
        if not os.path.isfile(self.nn.checkpoint(fold_dir)):
            resume = recorded is not None and self.nn.started(fold_dir)
            make_dirs(fold_dir)
            write_record(dict(current, weights=os.path.abspath(self.weights) if run.arm == "genesis" else None), path)
            run_logged(self.nn.train_command(self.task_name, trainer, run.fold_index,
                                             self.weights if run.arm == "genesis" else None, resume),
                       dict(self.env, **{SEED_VARIABLE: str(current["training_seed"])}), self.log(run, trainer),
                       progress=epochs, epoch_done=self.nn.epoch_done)
            if not os.path.isfile(self.nn.checkpoint(fold_dir)):
                raise StepFailed("%s: training ended without %s; its output is in %s" % (
                    run.name, self.nn.checkpoint(fold_dir), self.log(run, trainer)))
        return dict(current, fold_dir=fold_dir, logged_seed=logged_training_seed(fold_dir))

    def redo(self, run: Run, final: str, reasons: List[str], doing: str, produce, record: dict, record_name: str):
        """A step's whole output made anew: ``produce(FINAL.new)``, its record written into it, then swapped
        into the place of ``final`` (competition/output_set.replace_folder: all old or all new)."""
        if reasons:
            self.say("%s: %s: %s again" % (run.name, "; ".join(reasons), doing))
        tmp = final + ".new"
        if os.path.lexists(tmp):
            shutil.rmtree(tmp)
        make_dirs(os.path.dirname(final))
        produce(tmp)
        write_record(record, os.path.join(tmp, record_name))
        replace_folder(tmp, final)

    def predict(self, run: Run, trainer: str, fold_dir: str) -> str:
        pred_dir = os.path.join(self.out_dir, "predictions", trainer, run.name)
        current = {"checkpoint_sha256": file_sha256(self.nn.checkpoint(fold_dir)), "test_images": self.test_set.images}
        recorded, reasons = _read_own_record(os.path.join(pred_dir, PREDICTION_RECORD))
        reasons += decide(recorded, current, os.path.join(pred_dir, PREDICTION_RECORD), FRESH)
        damaged = [c for c in self.test_set.cases if not _complete(os.path.join(pred_dir, c + self.nn.image_suffix))]
        if recorded is not None and damaged:
            reasons.append("prediction(s) missing or damaged: %s" % ", ".join(damaged[:3]))
        if recorded is None and not reasons and os.path.isdir(pred_dir):
            reasons.append("no record of what they were predicted from")
        if recorded is None or reasons:
            def produce(tmp):
                run_logged(self.nn.predict_command(self.test_set.images_dir, tmp, self.task_name, trainer,
                                                   run.fold_index), self.env, self.log(run, trainer))
                bad = [c for c in self.test_set.cases if not _complete(os.path.join(tmp, c + self.nn.image_suffix))]
                if bad:
                    raise StepFailed("%s: the prediction of %s is missing or damaged after prediction; its output is "
                                     "in %s" % (run.name, ", ".join(bad[:3]), self.log(run, trainer)))
            self.redo(run, pred_dir, reasons, "predicting", produce, current, PREDICTION_RECORD)
        return pred_dir

    def evaluate(self, run: Run, trainer: str, pred_dir: str) -> str:
        from evaluation.evaluate import PER_CASE_FILE, SUMMARY_FILE, EvaluationError, evaluate_folders
        eval_dir = os.path.join(self.out_dir, "evaluation", trainer, run.name)
        current = {"predictions": folder_fingerprint(pred_dir, keep=lambda n: n.endswith(self.nn.image_suffix)),
                   "test_labels": self.test_set.labels, "labels": self.labels, "tolerance_mm": self.tolerance_mm}
        path = os.path.join(eval_dir, EVALUATION_RECORD)
        recorded, reasons = _read_own_record(path)
        reasons += decide(recorded, current, path, FRESH)
        if recorded is not None and not all(os.path.isfile(os.path.join(eval_dir, f)) for f in (PER_CASE_FILE,
                                                                                               SUMMARY_FILE)):
            reasons.append("its scores are missing")
        if recorded is None or reasons:
            def produce(tmp):
                try:
                    evaluate_folders(self.test_set.labels_dir, pred_dir, labels=self.labels,
                                     tolerance_mm=self.tolerance_mm, out_dir=tmp, num_processes=1,
                                     label_names=self.label_names, verbose=False)
                except EvaluationError as error:
                    raise StepFailed("%s: %s" % (run.name, error)) from None
            self.redo(run, eval_dir, reasons, "scoring", produce, current, EVALUATION_RECORD)
        return eval_dir


def per_case_mean_dice(per_case_csv: str, labels: Sequence[int]) -> Dict[str, float]:
    """Per test case, the mean Dice over ``labels``."""
    from evaluation.evaluate import read_per_case_csv
    rows = read_per_case_csv(per_case_csv)
    cases = sorted({r["case"] for r in rows})
    return {c: float(np.mean([r["dice"] for r in rows if r["case"] == c and r["label"] in labels])) for c in cases}


def run_study(task: str, weights: str, out_dir: str, test_images: Optional[str], test_labels: str,
              fold: int = 0, counts: Sequence[str] = ("2", "4", ALL), seeds: Sequence[int] = (0, 1, 2),
              scratch_trainer: Optional[str] = None, genesis_trainer: Optional[str] = None,
              labels: Optional[Sequence[int]] = None, tolerance_mm: Optional[float] = None,
              env: Optional[Dict[str, str]] = None, console=None, backend=NnUNetV1,
              read_pretraining_record: Optional[Callable[[str], Optional[dict]]] = None) -> dict:
    """Run (or resume) the study; returns the contents of study.json. See the module docstring."""
    from tqdm import tqdm
    from evaluation.evaluate import EvaluationError, resolve_tolerance
    env = dict(os.environ if env is None else env)
    console = console or sys.stdout

    def say(text):
        print(text, file=console, flush=True)

    # ---- everything checkable before the first training
    counts, seeds = check_counts(counts), check_seeds(seeds)
    requested_tolerance = check_tolerance(tolerance_mm)
    if not os.path.isfile(weights):
        raise StudyError("%s: pretrained weights file does not exist" % weights)
    out_dir = os.path.abspath(out_dir)
    nn = backend(env, out_dir)
    scratch_trainer, genesis_trainer = scratch_trainer or nn.scratch_trainer, genesis_trainer or nn.genesis_trainer
    check_trainers(scratch_trainer, genesis_trainer)
    task_dir = nn.find_task(task)
    task_name = os.path.basename(task_dir)
    task_labels = nn.labels(task_dir)
    scored = check_label_option(labels, task_labels, task_name) or sorted(task_labels)
    if not scored:
        raise StudyError("%s: dataset.json names no foreground label: pass -l" % task_dir)
    tolerance = resolve_tolerance(requested_tolerance)[0]
    test_images = test_images or nn.default_test_images(task_name)
    check_output_folder(out_dir, {"the test image folder": test_images, "the test label folder": test_labels,
                                  "the preprocessed task": task_dir})
    _claim(out_dir)
    train_cases, val_cases, split_source = nn.user_fold(task_dir, fold)
    check_counts_against_fold(counts, train_cases, split_source)
    planned = plan_runs(train_cases, counts, seeds)
    test_set = check_test_set(test_images, test_labels, nn.num_modalities(task_dir), task_labels,
                              nn.training_cases(task_dir), console=console)
    hashes = {"weights": file_sha256(weights), "plans": file_sha256(nn.plans_file(task_dir))}
    study_key = {"backend": nn.name, "task": task_name, "fold": int(fold), "plans_sha256": hashes["plans"],
                 "validation_cases": sorted(val_cases)}
    check_study_record(out_dir, study_key, write=False)

    # ---- the study folder, then the runs
    for sub in ("logs", "predictions", "evaluation", "nnUNet_results"):
        make_dirs(os.path.join(out_dir, sub))
    check_study_record(out_dir, study_key)
    runs = nn.build_workspace(task_dir, planned, val_cases)
    runner = StudyRunner(nn, task_name, weights, out_dir, test_set, scored, task_labels, tolerance, hashes, say)
    trainers = {"scratch": scratch_trainer, "genesis": genesis_trainer}
    say("study: %s fold %d (%s): %d training cases; counts %s x seeds %s x 2 arms = %d runs; %d test cases"
        % (task_name, fold, split_source, len(train_cases), ", ".join(counts), ", ".join(map(str, seeds)),
           len(runs), len(test_set.cases)))
    # the marked place for the weights' own pretraining record (competition/study_report.py), said up front too
    record = pretraining_verdict(weights, read_pretraining_record)
    say("pretraining record of the weights: %s" % record["text"])

    results = []
    bar = tqdm(runs, desc="study runs", unit="run", file=console)
    for run in bar:
        bar.set_postfix_str(run.name)
        trainer = trainers[run.arm]
        with tqdm(desc="  %s: training" % run.name, unit="epoch", file=console, leave=False) as epochs:
            training = runner.train(run, trainer, val_cases, lambda: epochs.update(1))
        pred_dir = runner.predict(run, trainer, training["fold_dir"])
        eval_dir = runner.evaluate(run, trainer, pred_dir)
        try:
            dice = per_case_mean_dice(os.path.join(eval_dir, "per_case.csv"), scored)
        except EvaluationError as error:
            raise StepFailed("%s: %s" % (run.name, error)) from None
        if sorted(dice) != test_set.cases:
            raise StudyError("%s: %s scored cases %s, not the test cases %s" % (
                run.name, eval_dir, ", ".join(sorted(dice)), ", ".join(test_set.cases)))
        results.append({"arm": run.arm, "count": run.count, "seed": run.seed, "fold_index": run.fold_index,
                        "num_labelled": len(run.train_cases), "train_cases": list(run.train_cases),
                        "trainer": trainer, "training_seed": training["training_seed"],
                        "seeded": training["logged_seed"] == training["training_seed"], "per_case_dice": dice,
                        "mean_dice": float(np.mean(list(dice.values()))),
                        "validation_dice": nn.validation_dice(training["fold_dir"]), "evaluation": eval_dir,
                        "predictions": pred_dir, "fold_dir": training["fold_dir"],
                        "records": {"training": read_record(os.path.join(training["fold_dir"], TRAINING_RECORD)),
                                    "prediction": read_record(os.path.join(pred_dir, PREDICTION_RECORD)),
                                    "evaluation": read_record(os.path.join(eval_dir, EVALUATION_RECORD))}})
    bar.close()

    summary = summarise_study(results, counts)
    config = {"backend": nn.name, "task": task_name, "fold": fold, "split_source": split_source, "counts": counts,
              "seeds": seeds, "weights": os.path.abspath(weights), "weights_sha256": hashes["weights"],
              "plans_sha256": hashes["plans"], "scratch_trainer": scratch_trainer, "genesis_trainer": genesis_trainer,
              "labels": scored, "labels_requested": labels, "tolerance_mm": tolerance,
              "tolerance_requested": requested_tolerance, "test_images": os.path.abspath(test_images),
              "test_labels": os.path.abspath(test_labels), "test_cases": test_set.cases,
              "num_test_cases": len(test_set.cases), "test_set": test_set.fingerprint(), "validation_cases": val_cases,
              "pretraining_record": record, "common_random_numbers": common_random_numbers(results)}
    say("common random numbers: %s" % config["common_random_numbers"]["text"])
    study = {"config": config, "runs": results, "summary": summary}
    write_study_outputs(study, out_dir, "%s: scratch vs Genesis, %d seeds, %d test cases"
                        % (task_name, len(seeds), len(test_set.cases)))
    return study
