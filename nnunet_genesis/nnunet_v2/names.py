"""nnU-Net v2's names that need no lookup: its environment variables, how it names a dataset, and the files a
fold folder holds.  Standard library only (no ``nnunetv2``, nothing of ours), so that code which reads nnU-Net's
output without running it (``evaluation/``) can use them; :mod:`nnunet_genesis.nnunet_v2.layout` re-exports every
name here and adds what asks nnunetv2 (dataset lookup, plans, configurations).

Each name follows nnunetv2 2.8.1's own code:

* folders: ``nnunetv2/paths.py`` (``nnUNet_raw``, ``nnUNet_preprocessed``, ``nnUNet_results``);
* datasets: ``DatasetXXX_Name`` with a three-digit id (``utilities/dataset_name_id_conversion.py``);
* a fold folder: ``checkpoint_final.pth``, ``checkpoint_latest.pth``, ``checkpoint_best.pth``
  (``nnUNetTrainer.__init__``, ``on_train_end``, ``on_epoch_end``) and ``validation/`` with ``summary.json``
  (``nnUNetTrainer.perform_actual_validation``).
"""
import os
import re

RAW_VARIABLE = "nnUNet_raw"
PREPROCESSED_VARIABLE = "nnUNet_preprocessed"
RESULTS_VARIABLE = "nnUNet_results"
FOLDER_VARIABLES = (RAW_VARIABLE, PREPROCESSED_VARIABLE, RESULTS_VARIABLE)

FINAL_CHECKPOINT = "checkpoint_final.pth"
LATEST_CHECKPOINT = "checkpoint_latest.pth"
BEST_CHECKPOINT = "checkpoint_best.pth"
VALIDATION_FOLDER = "validation"                                       # a fold's validation predictions
VALIDATION_SUMMARY = os.path.join(VALIDATION_FOLDER, "summary.json")

DATASET_NAME = re.compile(r"^Dataset(\d{3})_(.+)$")


class LayoutError(ValueError):
    """A name or folder nnU-Net v2 does not know (one line: the fault and what to do)."""


def _check_id(dataset_id) -> int:
    dataset_id = int(dataset_id)
    if not 0 < dataset_id < 1000:
        raise LayoutError("dataset id %d is not a three-digit id (1..999)" % dataset_id)
    return dataset_id


def dataset_prefix(dataset_id) -> str:
    """'Dataset004_' for id 4: what every folder of that dataset id starts with."""
    return "Dataset%03d_" % _check_id(dataset_id)


def dataset_name(dataset_id, short_name: str) -> str:
    """DatasetXXX_Name."""
    return dataset_prefix(dataset_id) + short_name


def is_dataset_name(text) -> bool:
    return DATASET_NAME.match(str(text)) is not None
