"""The study's seam to nnU-Net v1: everything the study needs to know about nnU-Net v1, in one object
(:class:`NnUNetV1`, on the logic both versions share: ``competition/study_backend.py``; v2's is
``competition/study_nnunet_v2.py``).

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
import os
import re
from typing import Dict, List, Optional, Sequence

import numpy as np

from competition.study_backend import StudyBackend
from competition.study_inputs import StudyError
from nnunet_genesis.io import raw_dataset, safe_pickle
from nnunet_genesis.io.atomic import write_pickle_atomic
from nnunet_genesis.nnunet_v1 import layout

NETWORK = "3d_fullres"   # the configuration every run trains and predicts with
SPLITS_FILE = "splits_final.pkl"


def nnunet_default_splits(case_ids: Sequence[str]) -> List[dict]:
    """nnU-Net v1's own 5-fold split (nnUNetTrainer.do_split: KFold(5, shuffle, random_state=12345)
    over the sorted case ids), for a task that has no splits_final.pkl yet."""
    from sklearn.model_selection import KFold
    keys = np.sort(np.array(list(case_ids)))
    splits = []
    for train, val in KFold(n_splits=5, shuffle=True, random_state=12345).split(keys):
        splits.append({"train": np.array(keys[train]), "val": np.array(keys[val])})
    return splits


class NnUNetV1(StudyBackend):
    name = "nnU-Net v1"
    network = NETWORK
    results_variable = layout.RESULTS_VARIABLE
    splits_file = SPLITS_FILE
    final_checkpoint = layout.FINAL_CHECKPOINT
    latest_checkpoint = layout.LATEST_CHECKPOINT
    validation_summary = layout.VALIDATION_SUMMARY
    epoch_done = re.compile(r"This epoch took")  # nnU-Net v1 logs it after every finished epoch
    scratch_trainer, genesis_trainer = "nnUNetTrainerV2_Seeded", "nnUNetTrainerV2_Genesis"

    # ------------------------------------------------------------------------------------------ the task
    def is_task_name(self, text: str) -> bool:
        return layout.is_task_name(text)

    def task_prefix(self, task_id: str) -> str:
        return layout.task_prefix(task_id)

    def check_planned(self, task_dir: str) -> None:
        if not os.path.isfile(self.plans_file(task_dir)):
            raise StudyError("%s: no 3D plans (run nnUNet_plan_and_preprocess first)" % task_dir)

    def plans_file(self, task_dir: str) -> str:
        return layout.plans_file(task_dir)

    def training_cases(self, task_dir: str) -> List[str]:
        return sorted(os.path.basename(e["image"]).split(".nii")[0] for e in self.dataset(task_dir)["training"])

    def labels(self, task_dir: str) -> Dict[int, str]:
        """{label: name} of the task's foreground labels (dataset.json)."""
        labels = self.dataset(task_dir).get("labels", {})
        return {int(k): str(v) for k, v in labels.items() if str(k).isdigit() and int(k) != 0}

    def num_modalities(self, task_dir: str) -> int:
        return len(self.dataset(task_dir).get("modality", {"0": ""}))

    def default_test_images(self, task_name: str) -> str:
        return raw_dataset.images_ts(os.path.join(self.raw_folder(layout.RAW_BASE_VARIABLE), layout.RAW_DATA_FOLDER,
                                                  task_name))

    def read_splits(self, path: str) -> list:
        return safe_pickle.load(path)

    def write_splits(self, splits: List[dict], path: str) -> None:
        """As nnU-Net v1 writes them (``nnUNetTrainer.do_split``): numpy arrays of case ids, pickled."""
        write_pickle_atomic([dict(s, train=np.array(s["train"]), val=np.array(s["val"])) for s in splits], path)

    def default_splits(self, task_dir: str) -> List[dict]:
        return nnunet_default_splits(self.training_cases(task_dir))

    # ------------------------------------------------------------------------------------------ runs
    def fold_dir(self, task_name: str, trainer: str, fold_index: int) -> str:
        results = os.path.join(self.out_dir, "nnUNet_results", layout.RESULTS_SUBFOLDER)
        return layout.fold_folder(results, NETWORK, task_name, trainer, fold_index)

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

    def validation_means(self, summary: dict) -> List[float]:
        """nnU-Net v1's ``validation_raw/summary.json``: ``results.mean`` per label."""
        return [float(v["Dice"]) for k, v in summary["results"]["mean"].items() if str(k) != "0" and "Dice" in v]
