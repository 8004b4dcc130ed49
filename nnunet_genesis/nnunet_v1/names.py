"""nnU-Net v1's names that need no lookup: its environment variables and folders, how it names a task, and
the files a fold folder holds.  Standard library only (no ``nnunet``, nothing of ours), so that code which
reads nnU-Net's output without running it (``evaluation/``) can use them; :mod:`nnunet_genesis.nnunet_v1.layout`
re-exports every name here and adds what asks nnU-Net (its folders as this process sees them, id lookup, plans).

Each name follows nnU-Net 1.7.1's own code:

* folders: ``nnunet/paths.py`` (``nnUNet_raw_data_base`` with ``nnUNet_raw_data`` and ``nnUNet_cropped_data``
  below it, ``nnUNet_preprocessed``, ``RESULTS_FOLDER`` with its ``nnUNet`` subfolder); the validation
  references a preprocessed task keeps in ``gt_segmentations`` (``experiment_planning/nnUNet_plan_and_preprocess.py``);
* tasks: ``TaskNNN_Name`` with a three-digit id (``nnunet/utilities/task_name_id_conversion.py``);
* a fold folder: ``model_latest.model``, ``model_best.model`` and ``model_final_checkpoint.model`` (with their
  ``.pkl``; ``training/network_training/network_trainer.py``), ``validation_raw/`` with nnU-Net's
  ``summary.json`` (``nnUNetTrainer.validate``).
"""
import os
import re

RAW_BASE_VARIABLE = "nnUNet_raw_data_base"
PREPROCESSED_VARIABLE = "nnUNet_preprocessed"
RESULTS_VARIABLE = "RESULTS_FOLDER"
FOLDER_VARIABLES = (RAW_BASE_VARIABLE, PREPROCESSED_VARIABLE, RESULTS_VARIABLE)
RAW_DATA_FOLDER = "nnUNet_raw_data"           # below $nnUNet_raw_data_base
CROPPED_DATA_FOLDER = "nnUNet_cropped_data"   # below $nnUNet_raw_data_base
RESULTS_SUBFOLDER = "nnUNet"                  # below $RESULTS_FOLDER (nnunet.paths.my_output_identifier)
GT_SEGMENTATIONS_FOLDER = "gt_segmentations"  # below a preprocessed task: the references nnU-Net validates against

FINAL_CHECKPOINT = "model_final_checkpoint.model"
LATEST_CHECKPOINT = "model_latest.model"
BEST_CHECKPOINT = "model_best.model"
RESUMABLE_CHECKPOINTS = (LATEST_CHECKPOINT, BEST_CHECKPOINT)   # what nnUNet_train -c loads, in order
VALIDATION_FOLDER = "validation_raw"                           # a fold's validation predictions
VALIDATION_SUMMARY = os.path.join(VALIDATION_FOLDER, "summary.json")   # written by nnUNet_train after training

TASK_NAME = re.compile(r"^Task\d{3}_.+$")


def task_prefix(task_id) -> str:
    """'Task003_' for id 3: what every folder of that task id starts with."""
    return "Task%03d_" % int(task_id)


def task_name(task_id, short_name: str) -> str:
    """TaskNNN_Name, as nnUNet_convert_decathlon_task and nnU-Net's id lookup spell it."""
    return "%s%s" % (task_prefix(task_id), short_name)


def is_task_name(text) -> bool:
    return str(text).startswith("Task")


def task_id_of(name: str) -> int:
    """3 for 'Task003_Liver'."""
    return int(name[4:7])


def short_name_of(name: str) -> str:
    """'Liver' for 'Task003_Liver' (and for the Decathlon's 'Task03_Liver')."""
    return name.split("_", 1)[1]
