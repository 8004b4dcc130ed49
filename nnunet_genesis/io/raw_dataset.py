"""A raw task folder as the Medical Segmentation Decathlon and nnU-Net (v1 and v2) lay it out: the one owner of
its names in this repository; every other module asks here.

* ``<task>/imagesTr``: the training images; ``<task>/labelsTr``: their label maps (same file names);
  ``<task>/imagesTs``: the test images; ``<task>/dataset.json``: the task's description (modalities or
  channel names, labels, the ``training`` and ``test`` lists, v2's ``file_ending``).
* an image file of nnU-Net's raw layout holds one channel of one case: ``CASE_XXXX.nii.gz``, channel ``XXXX``
  counted from 0000 (nnU-Net 1.7.1 ``nnunet/dataset_conversion/utils.py``; nnunetv2's ``file_ending`` aside,
  the same rule).

Standard library only.
"""
import os
import re
from typing import Optional

IMAGES_TR = "imagesTr"
LABELS_TR = "labelsTr"
IMAGES_TS = "imagesTs"
TASK_SUBFOLDERS = (IMAGES_TR, LABELS_TR, IMAGES_TS)   # what a Decathlon download of a task holds besides dataset.json
IMAGE_FOLDERS = (IMAGES_TR, IMAGES_TS)
DATASET_JSON = "dataset.json"
NIFTI_ENDING = ".nii.gz"
CHANNEL_FILE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})\.nii\.gz$")   # CASE_0000.nii.gz


def dataset_json(task_dir: str) -> str:
    """``<task_dir>/dataset.json``."""
    return os.path.join(task_dir, DATASET_JSON)


def images_tr(task_dir: str) -> str:
    return os.path.join(task_dir, IMAGES_TR)


def labels_tr(task_dir: str) -> str:
    return os.path.join(task_dir, LABELS_TR)


def images_ts(task_dir: str) -> str:
    return os.path.join(task_dir, IMAGES_TS)


def listed_path(folder: str, name: str) -> str:
    """``./imagesTr/brain_001.nii.gz``: how dataset.json's ``training`` and ``test`` lists name a file."""
    return "./%s/%s" % (folder, name)


def channel_file_name(case: str, channel: int, ending: str = NIFTI_ENDING) -> str:
    """``CASE_0001.nii.gz`` for channel 1 of ``CASE``."""
    return "%s_%04d%s" % (case, channel, ending)


def split_channel_file_name(name: str) -> Optional[tuple]:
    """(case, channel) for ``CASE_0001.nii.gz``; None for a name not in nnU-Net's raw layout."""
    match = CHANNEL_FILE.match(name)
    return (match.group("case"), int(match.group("channel"))) if match else None
