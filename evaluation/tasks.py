"""The ten Medical Segmentation Decathlon tasks: modalities, labels and NSD tolerances.

Here, in ``evaluation/``, because scoring needs the label names and tolerances and must stand without
``competition/``; the submission builder and the pipeline import the table from here.

Counts and names of test cases are *not* listed here on purpose: they are read from each
task's ``dataset.json`` (its ``test`` list), as the Decathlon distributes it.
"""
import json
import os
from dataclasses import dataclass
from typing import Dict, Optional

from nnunet_genesis.io import raw_dataset
from nnunet_genesis.nnunet_v1 import names as v1_names
from nnunet_genesis.nnunet_v2 import names as v2_names


@dataclass(frozen=True)
class MSDTask:
    number: int
    name: str                      # e.g. "Task01_BrainTumour", as on the leaderboard
    modalities: Dict[int, str]
    labels: Dict[int, str]         # including 0: background
    nsd_tolerance_mm: Optional[float]  # None where no official value could be sourced

    @property
    def short_name(self) -> str:
        return v1_names.short_name_of(self.name)

    @property
    def nnunet_name(self) -> str:
        """The name nnUNet_convert_decathlon_task gives the task (Task01_X -> Task001_X)."""
        return v1_names.task_name(self.number, self.short_name)

    @property
    def nnunet_v2_name(self) -> str:
        """The name nnUNetv2_convert_MSD_dataset gives the task (Task01_X -> Dataset001_X)."""
        return v2_names.dataset_name(self.number, self.short_name)

    @property
    def folder_names(self):
        """Every name a prediction folder of this task may have: the Decathlon's, nnU-Net v1's, v2's."""
        return (self.name, self.nnunet_name, self.nnunet_v2_name)


MSD_TASKS = {t.name: t for t in [
    MSDTask(1, "Task01_BrainTumour", {0: "FLAIR", 1: "T1w", 2: "t1gd", 3: "T2w"},
            {0: "background", 1: "edema", 2: "non-enhancing tumor", 3: "enhancing tumour"}, None),
    MSDTask(2, "Task02_Heart", {0: "MRI"}, {0: "background", 1: "left atrium"}, None),
    MSDTask(3, "Task03_Liver", {0: "CT"}, {0: "background", 1: "liver", 2: "cancer"}, None),
    MSDTask(4, "Task04_Hippocampus", {0: "MRI"}, {0: "background", 1: "Anterior", 2: "Posterior"}, None),
    MSDTask(5, "Task05_Prostate", {0: "T2", 1: "ADC"}, {0: "background", 1: "PZ", 2: "TZ"}, None),
    MSDTask(6, "Task06_Lung", {0: "CT"}, {0: "background", 1: "cancer"}, None),
    MSDTask(7, "Task07_Pancreas", {0: "CT"}, {0: "background", 1: "pancreas", 2: "cancer"}, 5.0),
    MSDTask(8, "Task08_HepaticVessel", {0: "CT"}, {0: "background", 1: "Vessel", 2: "Tumour"}, None),
    MSDTask(9, "Task09_Spleen", {0: "CT"}, {0: "background", 1: "spleen"}, None),
    MSDTask(10, "Task10_Colon", {0: "CT"}, {0: "background", 1: "colon cancer primaries"}, None),
]}


def find_msd_task(name_or_number) -> MSDTask:
    """Look a task up by leaderboard name (Task01_BrainTumour), nnU-Net name (Task001_BrainTumour),
    short name (BrainTumour) or number (1 / "01" / "001")."""
    key = str(name_or_number)
    for task in MSD_TASKS.values():
        if key in task.folder_names + (task.short_name,) or \
                (key.isdigit() and int(key) == task.number):
            return task
    raise KeyError("%r is not one of the ten Decathlon tasks (%s)" % (name_or_number, ", ".join(MSD_TASKS)))


def task_from_dataset_json(task_dir, nsd_tolerance_mm=None) -> MSDTask:
    """An MSDTask for a Decathlon-format folder ``TaskXX_Name`` that is not one of the ten (for example
    the demo's), read from its dataset.json (modality and labels), so the same submission and
    evaluation rules apply to it."""
    name = os.path.basename(os.path.normpath(task_dir))
    if not (name.startswith("Task") and name[4:6].isdigit() and name[6:7] == "_"):
        raise ValueError("%s: a Decathlon task folder is named TaskXX_Name" % task_dir)
    with open(raw_dataset.dataset_json(task_dir)) as f:
        dataset = json.load(f)
    return MSDTask(int(name[4:6]), name, {int(k): v for k, v in dataset["modality"].items()},
                   {int(k): v for k, v in dataset["labels"].items()}, nsd_tolerance_mm)
