"""The study's seam to nnU-Net, the half both versions share: :class:`StudyBackend`. Each version's module
(``competition/study_nnunet_v1.py``, ``competition/study_nnunet_v2.py``) subclasses it and names its folders,
files and commands; what is written here is the same logic for both:

* the planned task (v1) or dataset (v2) found in the preprocessed folder by id or full name, its
  ``dataset.json`` read (one line when it cannot be);
* the user's fold: their splits file, or nnU-Net's own default 5-fold split when there is none (which needs
  at least 5 training cases);
* the study's own workspace: ``OUT/nnUNet_preprocessed/<task>`` holds links to every file of the user's
  preprocessed folder except the splits file, which the study writes with one fold per (count, seed), each
  validating on the user's fold's validation cases; results go to ``OUT/nnUNet_results``. The user's
  folders are only read;
* a finished training (its final checkpoint), a started one (its latest checkpoint), and nnU-Net's own
  end-of-training validation Dice read from its ``summary.json``.

What the study asks of a backend (``competition/study.py``): ``name``, ``epoch_done`` (regex of the
end-of-epoch log line), ``image_suffix``, ``scratch_trainer`` and ``genesis_trainer`` (the arms' defaults);
``find_task(task) -> task dir``, ``plans_file``, ``training_cases``, ``labels``, ``num_modalities``,
``default_test_images``, ``user_fold(task_dir, fold) -> (train, val, source)``; ``study_env()``,
``build_workspace(task_dir, runs, val)``; ``fold_dir(task, trainer, fold_index)``, ``checkpoint(fold_dir)``,
``started(fold_dir)``, ``train_command(task, trainer, fold_index, weights or None, resume)``,
``predict_command(images, out, task, trainer, fold_index)``, ``validation_dice(fold_dir)``.
"""
import json
import os
import sys
from dataclasses import replace
from typing import Dict, List, Sequence

import numpy as np

from competition.study_inputs import StudyError
from nnunet_genesis.io import raw_dataset
from nnunet_genesis.io.atomic import make_dirs
from nnunet_genesis.nnunet_v1.layout import no_such_line   # the one 'no such ..., nearest existing' line

MIN_CASES_DEFAULT_SPLIT = 5   # nnU-Net's default split is KFold(n_splits=5), in v1 and v2


class StudyBackend:
    """What the study needs to know about one nnU-Net version. Subclasses set the class attributes and the
    methods marked 'version' below."""
    name = ""                       # 'nnU-Net v1', recorded in every record (a study is one version's)
    kind = "task"                   # what the version calls a planned data set: 'task' (v1), 'dataset' (v2)
    name_form = "TaskNNN_Name"
    preprocessed_variable = "nnUNet_preprocessed"
    results_variable = ""
    splits_file = ""
    final_checkpoint = ""           # in a fold folder: the finished training's checkpoint
    latest_checkpoint = ""          # in a fold folder: a started training's (continued with the resume flag)
    validation_summary = ""         # in a fold folder: nnU-Net's end-of-training validation scores
    image_suffix = ".nii.gz"
    epoch_done = None               # the regular expression of the line nnU-Net logs after every epoch
    scratch_trainer = genesis_trainer = ""   # the arms' default trainers

    def __init__(self, env: Dict[str, str], out_dir: str):
        self.env, self.out_dir = env, out_dir
        if not env.get(self.preprocessed_variable):
            raise StudyError("environment variable %s is not set: %s does not know where its folders are"
                             % (self.preprocessed_variable, self.name))
        self.preprocessed = env[self.preprocessed_variable]
        self.bin_dir = os.path.dirname(sys.executable)

    # ------------------------------------------------------------------------------------------ version
    def is_task_name(self, text: str) -> bool:
        raise NotImplementedError

    def task_prefix(self, task_id: str) -> str:
        """What every folder of the id starts with (StudyError for an id the version does not know)."""
        raise NotImplementedError

    def check_planned(self, task_dir: str) -> None:
        """StudyError in one line unless the task is planned (and preprocessed) as the study trains it."""
        raise NotImplementedError

    def read_splits(self, path: str) -> list:
        raise NotImplementedError

    def write_splits(self, splits: List[dict], path: str) -> None:
        raise NotImplementedError

    def default_splits(self, task_dir: str) -> List[dict]:
        """nnU-Net's own default split of the task, as its trainer would make it."""
        raise NotImplementedError

    def validation_means(self, summary: dict) -> List[float]:
        """Per foreground label, the mean Dice of a validation ``summary.json``."""
        raise NotImplementedError

    # ------------------------------------------------------------------------------------------ the task
    def raw_folder(self, variable: str) -> str:
        """The raw data folder the default test images lie in (StudyError when the variable is unset)."""
        if not self.env.get(variable):
            raise StudyError("--test_images is not given and %s is not set: name the test image folder" % variable)
        return self.env[variable]

    def find_task(self, task) -> str:
        """The planned task's folder for an id or a full name."""
        text = str(task).strip()
        if not os.path.isdir(self.preprocessed):
            raise StudyError("%s (%s) is not a folder" % (self.preprocessed, self.preprocessed_variable))
        planned = sorted(d for d in os.listdir(self.preprocessed) if self.is_task_name(d))
        if self.is_task_name(text):
            name = text
        elif text.isdigit():
            matches = [d for d in planned if d.startswith(self.task_prefix(text))]
            if not matches:
                raise StudyError(no_such_line("planned " + self.kind, text, planned, self.preprocessed))
            if len(matches) > 1:
                raise StudyError("%s id %s: %d planned %ss in %s (%s)" % (
                    self.kind, text, len(matches), self.kind, self.preprocessed, ", ".join(matches)))
            name = matches[0]
        else:
            raise StudyError("%s %r is neither a %s id nor a %s" % (self.kind, text, self.kind, self.name_form))
        task_dir = os.path.join(self.preprocessed, name)
        if not os.path.isdir(task_dir):
            raise StudyError(no_such_line("planned " + self.kind, name, planned, self.preprocessed))
        self.check_planned(task_dir)
        return task_dir

    def dataset(self, task_dir: str) -> dict:
        path = raw_dataset.dataset_json(task_dir)
        try:
            with open(path) as f:
                return json.load(f)
        except (OSError, ValueError) as error:
            raise StudyError("%s cannot be read (%s)" % (path, error)) from None

    def user_fold(self, task_dir: str, fold: int):
        """(train cases, val cases, where they came from) of ``fold`` in the user's splits, or nnU-Net's
        default split when the task has none (which needs at least 5 training cases)."""
        splits_file = os.path.join(task_dir, self.splits_file)
        if os.path.isfile(splits_file):
            try:
                folds = [([str(c) for c in s["train"]], [str(c) for c in s["val"]])
                         for s in self.read_splits(splits_file)]
            except (KeyError, TypeError, ValueError) as error:
                raise StudyError("%s is not an nnU-Net splits file (%s)" % (splits_file, error)) from None
            source = splits_file
        else:
            ids = self.training_cases(task_dir)
            if len(ids) < MIN_CASES_DEFAULT_SPLIT:
                raise StudyError(
                    "%s has %d training case(s) and no %s: nnU-Net's default 5-fold split needs at least %d; "
                    "write a %s (a list of {'train': [...], 'val': [...]}) into %s" % (
                        task_dir, len(ids), self.splits_file, MIN_CASES_DEFAULT_SPLIT, self.splits_file, task_dir))
            folds = [([str(c) for c in s["train"]], [str(c) for c in s["val"]]) for s in self.default_splits(task_dir)]
            source = "nnU-Net's default 5-fold split (%s does not exist)" % splits_file
        if not 0 <= fold < len(folds):
            raise StudyError("%s: fold %d does not exist (%d folds)" % (source, fold, len(folds)))
        return folds[fold][0], folds[fold][1], source

    # ------------------------------------------------------------------------------------------ the workspace
    def study_env(self) -> Dict[str, str]:
        return dict(self.env, **{self.preprocessed_variable: os.path.join(self.out_dir, "nnUNet_preprocessed"),
                                 self.results_variable: os.path.join(self.out_dir, "nnUNet_results")})

    def build_workspace(self, task_dir: str, runs: Sequence, val_cases: Sequence[str]) -> List:
        """Links to the user's task files and the study's own splits file with one fold per (count, seed). A
        study folder grows: a re-run with more counts or seeds keeps every fold it has (same index, same
        cases) and appends the new ones. Returns ``runs`` with their fold indices."""
        task = os.path.basename(os.path.normpath(task_dir))
        study_task = make_dirs(os.path.join(self.out_dir, "nnUNet_preprocessed", task))
        for entry in sorted(os.listdir(task_dir)):
            link = os.path.join(study_task, entry)
            if entry == self.splits_file or os.path.lexists(link):
                continue
            os.symlink(os.path.abspath(os.path.join(task_dir, entry)), link)
        path = os.path.join(study_task, self.splits_file)
        splits = self.read_splits(path) if os.path.isfile(path) else []
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
                splits.append({"train": list(run.train_cases), "val": list(val), "count": run.count,
                               "seed": int(run.seed)})
            elif tuple(str(c) for c in splits[known[key]]["train"]) != tuple(run.train_cases):
                raise StudyError("%s: fold %d (count %s, seed %d) holds other cases than this study draws (the "
                                 "fold's training cases changed): choose another output folder"
                                 % (path, known[key], run.count, run.seed))
            assigned.append(replace(run, fold_index=known[key]))
        self.write_splits(splits, path)
        return assigned

    # ------------------------------------------------------------------------------------------ runs
    def checkpoint(self, fold_dir: str) -> str:
        return os.path.join(fold_dir, self.final_checkpoint)

    def started(self, fold_dir: str) -> bool:
        """A training that can be continued."""
        return os.path.isfile(os.path.join(fold_dir, self.latest_checkpoint))

    def validation_dice(self, fold_dir: str) -> float:
        """Mean foreground Dice of nnU-Net's own end-of-training validation: what fine-tuning recipes are
        chosen on. NaN if absent."""
        path = os.path.join(fold_dir, self.validation_summary)
        if not os.path.isfile(path):
            return float("nan")
        with open(path) as f:
            values = self.validation_means(json.load(f))
        return float(np.mean(values)) if values else float("nan")
