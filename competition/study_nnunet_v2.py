"""The study's seam to nnU-Net v2: everything the study needs to know about nnU-Net v2, in one object
(:class:`NnUNetV2`, on the logic both versions share: ``competition/study_backend.py``; v1's is
``competition/study_nnunet_v1.py``). Every name and folder comes from ``nnunet_genesis/nnunet_v2/layout.py``
(the one owner of v2's names); what nnunetv2 2.8.1 does is cited beside each part:

* the dataset: ``$nnUNet_preprocessed/DatasetXXX_Name`` (an id or the full name), planned with the plans
  ``<plans identifier>.json`` and preprocessed for the configuration (its data folder, the configuration's
  ``data_identifier``); a cascade stage and region-based labels are refused (the study trains one stage and
  scores label maps); its training cases are the cases of that data folder, as nnU-Net's trainer reads them
  (``training/dataloading/nnunet_dataset.py``: ``infer_dataset_class``, ``get_identifiers``);
* the user's fold: ``splits_final.json`` in the preprocessed dataset folder, or nnU-Net v2's own default split
  when there is none (``training/nnUNetTrainer/nnUNetTrainer.py: do_split`` calls
  ``utilities/crossval_split.py: generate_crossval_split`` on the sorted case ids, 5 folds, seed 12345);
* the study's workspace: as v1's, with ``splits_final.json`` (a JSON list of ``{'train', 'val'}``, as
  ``do_split`` reads it) and the results in ``OUT/nnUNet_results``;
* the stock commands (``run/run_training.py``, ``inference/predict_from_raw_data.py: predict_entry_point``):
  ``nnUNetv2_train DATASET CONFIG FOLD -tr TRAINER -p PLANS -device D [--c | -pretrained_weights W]`` and
  ``nnUNetv2_predict -i -o -d -c -p -tr -f --disable_tta -chk checkpoint_final.pth``; results in
  ``nnUNet_results/DATASET/TRAINER__PLANS__CONFIG/fold_N`` (``checkpoint_final.pth``, ``checkpoint_latest.pth``
  of a started training, the end-of-training validation in ``validation/summary.json``, whose
  ``foreground_mean`` is ``evaluation/evaluate_predictions.py: compute_metrics_on_folder``'s mean over the
  foreground labels); the trainer logs ``Epoch time: ... s`` after every epoch (``nnUNetTrainer.on_epoch_end``).

The device is CUDA where torch sees one, else the CPU (nnU-Net v2's commands default to CUDA).
"""
import json
import os
import re
from typing import Dict, List, Optional

from competition.study_backend import StudyBackend
from competition.study_inputs import StudyError
from nnunet_genesis.io import raw_dataset
from nnunet_genesis.io.atomic import write_json_atomic
from nnunet_genesis.nnunet_v2 import layout

SPLITS_FILE = "splits_final.json"
IMAGE_SUFFIX = raw_dataset.NIFTI_ENDING   # the test set (competition/study_inputs.py) and the evaluation read NIfTI


def default_device() -> str:
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


class NnUNetV2(StudyBackend):
    kind = "dataset"
    name_form = "DatasetXXX_Name"
    preprocessed_variable = layout.PREPROCESSED_VARIABLE
    results_variable = layout.RESULTS_VARIABLE
    splits_file = SPLITS_FILE
    final_checkpoint = layout.FINAL_CHECKPOINT
    latest_checkpoint = layout.LATEST_CHECKPOINT
    validation_summary = layout.VALIDATION_SUMMARY
    image_suffix = IMAGE_SUFFIX
    epoch_done = re.compile(r"Epoch time: ")
    scratch_trainer, genesis_trainer = "nnUNetTrainer_Seeded", "nnUNetTrainer_Genesis"

    def __init__(self, env: Dict[str, str], out_dir: str, configuration: Optional[str] = None,
                 plans: Optional[str] = None, device: Optional[str] = None):
        self.configuration = configuration or layout.DEFAULT_CONFIGURATION
        self.plans = plans or layout.DEFAULT_PLANS_IDENTIFIER
        # the study record names them: resuming a study with another configuration or plans is refused
        self.name = "nnU-Net v2 (%s, %s)" % (self.configuration, self.plans)
        super().__init__(env, out_dir)
        self.device = device or default_device()

    # ------------------------------------------------------------------------------------------ the dataset
    def is_task_name(self, text: str) -> bool:
        return layout.is_dataset_name(text)

    def task_prefix(self, task_id: str) -> str:
        try:
            return layout.dataset_prefix(task_id)
        except layout.LayoutError as error:
            raise StudyError(str(error)) from None

    def plans_file(self, task_dir: str) -> str:
        return layout.plans_file(task_dir, self.plans)

    def configuration_manager(self, task_dir: str):
        """nnunetv2's ConfigurationManager of the study's configuration (StudyError in one line)."""
        path = self.plans_file(task_dir)
        try:
            plans = layout.load_json(path)
            return layout.configuration_manager(plans, self.configuration)
        except (OSError, ValueError, KeyError, RuntimeError) as error:   # LayoutError is a ValueError
            raise StudyError("%s: %s" % (path, error)) from None

    def check_planned(self, task_dir: str) -> None:
        dataset_id = layout.dataset_id_of(os.path.basename(task_dir))
        if not os.path.isfile(self.plans_file(task_dir)):
            raise StudyError("%s: no plans %s (plan it first: nnUNetv2_plan_and_preprocess -d %d -c %s)" % (
                task_dir, layout.plans_file_name(self.plans), dataset_id, self.configuration))
        manager = self.configuration_manager(task_dir)
        if manager.previous_stage_name is not None:
            raise StudyError("%s: configuration %s is a cascade stage after %s: the study trains and predicts one "
                             "stage; choose another -c" % (self.plans_file(task_dir), self.configuration,
                                                          manager.previous_stage_name))
        dataset = self.dataset(task_dir)
        if dataset.get("file_ending") != IMAGE_SUFFIX:
            raise StudyError("%s: file_ending %r: the study's test sets and scores are NIfTI (%s)"
                             % (layout.dataset_json_file(task_dir), dataset.get("file_ending"), IMAGE_SUFFIX))
        self.labels(task_dir)
        if not self.training_cases(task_dir):
            raise StudyError("%s: no preprocessed cases of configuration %s (preprocess them: nnUNetv2_preprocess "
                             "-d %d -plans_name %s -c %s)" % (
                                 layout.configuration_folder(task_dir, self.plans_file(task_dir), self.configuration),
                                 self.configuration, dataset_id, self.plans, self.configuration))

    def training_cases(self, task_dir: str) -> List[str]:
        """The cases of the configuration's data folder, as nnU-Net's dataset class lists them."""
        from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
        folder = os.path.join(task_dir, self.configuration_manager(task_dir).data_identifier)
        if not os.path.isdir(folder) or not os.listdir(folder):
            return []
        try:
            return sorted(infer_dataset_class(folder).get_identifiers(folder))
        except (AssertionError, KeyError) as error:
            raise StudyError("%s: not one nnU-Net data format (%s)" % (folder, error)) from None

    def labels(self, task_dir: str) -> Dict[int, str]:
        """{label: name} of the dataset's foreground labels (dataset.json ``labels``: name -> value; the
        ``ignore`` label is not a class). Region-based labels are refused."""
        labels = self.dataset(task_dir).get("labels", {})
        regions = sorted(str(k) for k, v in labels.items() if isinstance(v, (list, tuple)))
        if regions:
            raise StudyError("%s: region-based labels (%s): the study scores label maps, not regions" % (
                layout.dataset_json_file(task_dir), ", ".join(regions)))
        return {int(v): str(k) for k, v in labels.items() if k != "ignore" and int(v) != 0}

    def num_modalities(self, task_dir: str) -> int:
        return len(layout.channel_names(self.dataset(task_dir)))

    def default_test_images(self, task_name: str) -> str:
        return raw_dataset.images_ts(os.path.join(self.raw_folder(layout.RAW_VARIABLE), task_name))

    def read_splits(self, path: str) -> list:
        with open(path) as f:
            return json.load(f)

    def write_splits(self, splits: List[dict], path: str) -> None:
        write_json_atomic(splits, path)

    def default_splits(self, task_dir: str) -> List[dict]:
        from nnunetv2.utilities.crossval_split import generate_crossval_split
        return generate_crossval_split(self.training_cases(task_dir), seed=12345, n_splits=5)

    # ------------------------------------------------------------------------------------------ runs
    def fold_dir(self, task_name: str, trainer: str, fold_index: int) -> str:
        return layout.fold_folder(task_name, trainer, fold_index, self.plans, self.configuration,
                                  results=os.path.join(self.out_dir, "nnUNet_results"))

    def train_command(self, task_name: str, trainer: str, fold_index: int, weights: Optional[str],
                      resume: bool) -> List[str]:
        command = [os.path.join(self.bin_dir, "nnUNetv2_train"), task_name, self.configuration, str(fold_index),
                   "-tr", trainer, "-p", self.plans, "-device", self.device]
        if resume:
            command.append("--c")     # run_training.py refuses --c together with -pretrained_weights
        elif weights is not None:
            command += ["-pretrained_weights", os.path.abspath(weights)]
        return command

    def predict_command(self, images: str, out: str, task_name: str, trainer: str, fold_index: int) -> List[str]:
        return [os.path.join(self.bin_dir, "nnUNetv2_predict"), "-i", images, "-o", out, "-d", task_name,
                "-c", self.configuration, "-p", self.plans, "-tr", trainer, "-f", str(fold_index), "--disable_tta",
                "-chk", layout.FINAL_CHECKPOINT, "-npp", "1", "-nps", "1", "-device", self.device,
                "--disable_progress_bar"]

    def validation_means(self, summary: dict) -> List[float]:
        """nnU-Net v2's ``validation/summary.json``: its ``foreground_mean`` Dice."""
        return [float(summary["foreground_mean"]["Dice"])]
