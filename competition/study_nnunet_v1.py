"""The study's seam to nnU-Net v1: everything the study needs to know about one nnU-Net version, in one
object (:class:`NnUNetV1`). A v2 backend offers the same attributes and methods beside it.

* the task: its folder, plans file, training cases, labels and modalities (``dataset.json``), the user's
  fold (``splits_final.pkl``, or nnU-Net's own default split, ``nnUNetTrainer.do_split``);
* the study's own workspace: ``OUT/nnUNet_preprocessed/TASK`` holds links to every file of the user's
  preprocessed task except ``splits_final.pkl``, which the study writes with one fold per (count, seed),
  each validating on the user's fold's validation cases; results go to ``OUT/nnUNet_results``;
* the stock commands: ``nnUNet_train 3d_fullres TRAINER TASK FOLD [-pretrained_weights W | -c]`` and
  ``nnUNet_predict ... --disable_tta``, and where their results lie (``nnunet_genesis/nnunet_v1/layout.py``).

What the study asks of a backend (``competition/study.py``; a v2 backend offers the same):
``name``, ``epoch_done`` (regex of the end-of-epoch log line), ``image_suffix``; ``find_task(task) -> task dir``,
``plans_file``, ``training_cases``, ``labels``, ``num_modalities``, ``default_test_images``,
``user_fold(task_dir, fold) -> (train, val, source)``; ``study_env()``, ``build_workspace(task_dir, runs, val)``;
``fold_dir(task, trainer, fold_index)``, ``checkpoint(fold_dir)``, ``started(fold_dir)``,
``train_command(task, trainer, fold_index, weights or None, resume)``,
``predict_command(images, out, task, trainer, fold_index)``, ``validation_dice(fold_dir)``.
"""
import json
import os
import re
import sys
from dataclasses import replace
from typing import Dict, List, Optional, Sequence

import numpy as np

from competition.study_inputs import StudyError
from nnunet_genesis import safe_pickle
from nnunet_genesis.atomic import make_dirs, write_pickle_atomic
from nnunet_genesis.nnunet_v1 import layout

NETWORK = "3d_fullres"   # the configuration every run trains and predicts with
SPLITS_FILE = "splits_final.pkl"
MIN_CASES_DEFAULT_SPLIT = 5   # nnU-Net v1's default split is KFold(n_splits=5)


def nnunet_default_splits(case_ids: Sequence[str]) -> List[dict]:
    """nnU-Net v1's own 5-fold split (nnUNetTrainer.do_split: KFold(5, shuffle, random_state=12345)
    over the sorted case ids), for a task that has no splits_final.pkl yet."""
    from sklearn.model_selection import KFold
    keys = np.sort(np.array(list(case_ids)))
    splits = []
    for train, val in KFold(n_splits=5, shuffle=True, random_state=12345).split(keys):
        splits.append({"train": np.array(keys[train]), "val": np.array(keys[val])})
    return splits


class NnUNetV1:
    name = "nnU-Net v1"
    network = NETWORK
    epoch_done = re.compile(r"This epoch took")  # nnU-Net v1 logs it after every finished epoch
    image_suffix = ".nii.gz"

    def __init__(self, env: Dict[str, str], out_dir: str):
        self.env, self.out_dir = env, out_dir
        if not env.get(layout.PREPROCESSED_VARIABLE):
            raise StudyError("environment variable %s is not set: nnU-Net does not know where its folders are"
                             % layout.PREPROCESSED_VARIABLE)
        self.preprocessed = env[layout.PREPROCESSED_VARIABLE]
        self.bin_dir = os.path.dirname(sys.executable)

    # ------------------------------------------------------------------------------------------ the task
    def find_task(self, task) -> str:
        """The planned task's folder for an id or a TaskNNN_Name."""
        text = str(task)
        if not os.path.isdir(self.preprocessed):
            raise StudyError("%s (%s) is not a folder" % (self.preprocessed, layout.PREPROCESSED_VARIABLE))
        planned = sorted(d for d in os.listdir(self.preprocessed) if d.startswith("Task"))
        if layout.is_task_name(text):
            name = text
        elif text.isdigit():
            matches = [d for d in planned if d.startswith(layout.task_prefix(text))]
            if len(matches) != 1:
                raise StudyError("task id %s: %d planned task(s) in %s%s" % (
                    text, len(matches), self.preprocessed, " (%s)" % ", ".join(matches) if matches else ""))
            name = matches[0]
        else:
            raise StudyError("task %r is neither a task id nor a TaskNNN_Name" % text)
        task_dir = os.path.join(self.preprocessed, name)
        if not os.path.isdir(task_dir):
            raise StudyError("no planned task %s in %s (planned: %s)" % (name, self.preprocessed,
                                                                          ", ".join(planned) or "none"))
        if not os.path.isfile(self.plans_file(task_dir)):
            raise StudyError("%s: no 3D plans (run nnUNet_plan_and_preprocess first)" % task_dir)
        return task_dir

    def plans_file(self, task_dir: str) -> str:
        return layout.plans_file(task_dir)

    def dataset(self, task_dir: str) -> dict:
        path = os.path.join(task_dir, "dataset.json")
        try:
            with open(path) as f:
                return json.load(f)
        except (OSError, ValueError) as error:
            raise StudyError("%s cannot be read (%s)" % (path, error)) from None

    def training_cases(self, task_dir: str) -> List[str]:
        return sorted(os.path.basename(e["image"]).split(".nii")[0] for e in self.dataset(task_dir)["training"])

    def labels(self, task_dir: str) -> Dict[int, str]:
        """{label: name} of the task's foreground labels (dataset.json)."""
        labels = self.dataset(task_dir).get("labels", {})
        return {int(k): str(v) for k, v in labels.items() if str(k).isdigit() and int(k) != 0}

    def num_modalities(self, task_dir: str) -> int:
        return len(self.dataset(task_dir).get("modality", {"0": ""}))

    def default_test_images(self, task_name: str) -> str:
        if not self.env.get(layout.RAW_BASE_VARIABLE):
            raise StudyError("--test_images is not given and %s is not set: name the test image folder"
                             % layout.RAW_BASE_VARIABLE)
        return os.path.join(self.env[layout.RAW_BASE_VARIABLE], layout.RAW_DATA_FOLDER, task_name, "imagesTs")

    def user_fold(self, task_dir: str, fold: int):
        """(train cases, val cases, where they came from) of ``fold`` in the user's splits, or nnU-Net's
        default split when the task has none (which needs at least 5 training cases)."""
        splits_file = os.path.join(task_dir, SPLITS_FILE)
        if os.path.isfile(splits_file):
            try:
                splits = safe_pickle.load(splits_file)
                folds = [([str(c) for c in s["train"]], [str(c) for c in s["val"]]) for s in splits]
            except (safe_pickle.UnsafePickleError, KeyError, TypeError, ValueError) as error:
                raise StudyError("%s is not an nnU-Net splits file (%s)" % (splits_file, error)) from None
            source = splits_file
        else:
            ids = self.training_cases(task_dir)
            if len(ids) < MIN_CASES_DEFAULT_SPLIT:
                raise StudyError(
                    "%s has %d training case(s) and no %s: nnU-Net's default 5-fold split needs at least %d; "
                    "write a %s (a list of {'train': [...], 'val': [...]}) into %s" % (
                        task_dir, len(ids), SPLITS_FILE, MIN_CASES_DEFAULT_SPLIT, SPLITS_FILE, task_dir))
            folds = [([str(c) for c in s["train"]], [str(c) for c in s["val"]]) for s in nnunet_default_splits(ids)]
            source = "nnU-Net's default 5-fold split (%s does not exist)" % splits_file
        if not 0 <= fold < len(folds):
            raise StudyError("%s: fold %d does not exist (%d folds)" % (source, fold, len(folds)))
        return folds[fold][0], folds[fold][1], source

    # ------------------------------------------------------------------------------------------ the workspace
    def study_env(self) -> Dict[str, str]:
        return dict(self.env, **{layout.PREPROCESSED_VARIABLE: os.path.join(self.out_dir, "nnUNet_preprocessed"),
                                 layout.RESULTS_VARIABLE: os.path.join(self.out_dir, "nnUNet_results")})

    def build_workspace(self, task_dir: str, runs: Sequence, val_cases: Sequence[str]) -> List:
        """Links to the user's task files and the study's own ``splits_final.pkl`` with one fold per
        (count, seed). A study folder grows: a re-run with more counts or seeds keeps every fold it has
        (same index, same cases) and appends the new ones. Returns ``runs`` with their fold indices."""
        task = os.path.basename(os.path.normpath(task_dir))
        study_task = make_dirs(os.path.join(self.out_dir, "nnUNet_preprocessed", task))
        for entry in sorted(os.listdir(task_dir)):
            link = os.path.join(study_task, entry)
            if entry == SPLITS_FILE or os.path.lexists(link):
                continue
            os.symlink(os.path.abspath(os.path.join(task_dir, entry)), link)
        path = os.path.join(study_task, SPLITS_FILE)
        splits = safe_pickle.load(path) if os.path.isfile(path) else []
        val = sorted(str(c) for c in val_cases)
        if any([str(c) for c in split["val"]] != val for split in splits):
            raise StudyError("%s validates on other cases (an earlier study of another fold): choose another "
                             "output folder" % path)
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
                raise StudyError("%s: fold %d (count %s, seed %d) holds other cases than this study draws (the "
                                 "fold's training cases changed): choose another output folder"
                                 % (path, known[key], run.count, run.seed))
            assigned.append(replace(run, fold_index=known[key]))
        write_pickle_atomic(splits, path)
        return assigned

    # ------------------------------------------------------------------------------------------ runs
    def fold_dir(self, task_name: str, trainer: str, fold_index: int) -> str:
        results = os.path.join(self.out_dir, "nnUNet_results", layout.RESULTS_SUBFOLDER)
        return layout.fold_folder(results, NETWORK, task_name, trainer, fold_index)

    def checkpoint(self, fold_dir: str) -> str:
        return os.path.join(fold_dir, layout.FINAL_CHECKPOINT)

    def started(self, fold_dir: str) -> bool:
        """A training that can be continued (``-c``)."""
        return os.path.isfile(os.path.join(fold_dir, "model_latest.model"))

    def train_command(self, task_name: str, trainer: str, fold_index: int, weights: Optional[str],
                      resume: bool) -> List[str]:
        command = [os.path.join(self.bin_dir, "nnUNet_train"), NETWORK, trainer, task_name, str(fold_index),
                   "--disable_postprocessing_on_folds"]
        if resume:
            command.append("-c")       # nnU-Net ignores -pretrained_weights with -c
        elif weights is not None:
            command += ["-pretrained_weights", os.path.abspath(weights)]
        return command

    def predict_command(self, images: str, out: str, task_name: str, trainer: str, fold_index: int) -> List[str]:
        return [os.path.join(self.bin_dir, "nnUNet_predict"), "-i", images, "-o", out, "-t", task_name,
                "-m", NETWORK, "-tr", trainer, "-f", str(fold_index), "--disable_tta",
                "-chk", os.path.splitext(layout.FINAL_CHECKPOINT)[0], "--num_threads_preprocessing", "1",
                "--num_threads_nifti_save", "1"]

    def validation_dice(self, fold_dir: str) -> float:
        """Mean foreground Dice of nnU-Net's own end-of-training validation (``validation_raw/summary.json``):
        what fine-tuning recipes are chosen on. NaN if absent."""
        path = os.path.join(fold_dir, "validation_raw", "summary.json")
        if not os.path.isfile(path):
            return float("nan")
        with open(path) as f:
            mean = json.load(f)["results"]["mean"]
        values = [float(v["Dice"]) for k, v in mean.items() if str(k) != "0" and "Dice" in v]
        return float(np.mean(values)) if values else float("nan")
