"""Everything the study can check before its first training, and the fingerprint of its test set.

Each check raises :class:`StudyError` with one line naming the file or option and the fault:

* options: seeds (integers >= 0, no duplicate), counts (positive integers or ``all``, no duplicate, at
  most the fold's training cases, not ``all`` twice under two spellings), ``-l`` (positive labels of
  the task, no duplicate), ``--tolerance`` (finite, >= 0), the two trainers (different names: the arms
  would otherwise share their nnU-Net folders), the output folder (not inside an input, not a file);
* the test set (:func:`check_test_set`): the image folder holds nnU-Net-format images only
  (``CASE_XXXX.nii.gz``, every modality of the task for every case); images and label maps are one to one
  by case name (missing and extra label files are named); no test case is one of the task's training
  cases; every image is complete (``nnunet_genesis.io.integrity``) and readable; every label map passes the
  shared validator (``evaluation/labelmaps.py``): complete, 3-D, integral values from the task's label
  set, on its image's voxel grid.

The test set's fingerprint (each image's and each label map's name and SHA-256) is what the study's
records compare on a resume.
"""
import math
import os
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from nnunet_genesis.io import raw_dataset
from nnunet_genesis.io.fingerprint import file_sha256

ALL = "all"


class StudyError(RuntimeError):
    """Bad input or a failed step: one line naming the file or command and the fault."""


class StepFailed(StudyError):
    """A stock command failed, or left no complete result (exit status 1 of the command line, not 2)."""


def _short_list(names: Sequence[str], limit: int = 5) -> str:
    names = list(names)
    return ", ".join(names[:limit]) + (" and %d more" % (len(names) - limit) if len(names) > limit else "")


# ------------------------------------------------------------------------------------------------ options
def check_seeds(seeds: Sequence) -> List[int]:
    """Seeds as integers >= 0, in the order given; refused: non-integers, negatives, duplicates, none."""
    parsed = []
    for seed in seeds:
        text = str(seed).strip()
        if not re.fullmatch(r"[+-]?\d+", text):
            raise StudyError("seed %r is not an integer" % (seed,))
        if int(text) < 0:
            raise StudyError("seed %s is negative: seeds are integers >= 0 (numpy's default_rng)" % text)
        parsed.append(int(text))
    if not parsed:
        raise StudyError("no seeds given")
    duplicates = sorted({s for s in parsed if parsed.count(s) > 1})
    if duplicates:
        raise StudyError("seed(s) %s given twice: each seed is one independent repetition"
                         % ", ".join(map(str, duplicates)))
    return parsed


def check_counts(counts: Sequence) -> List[str]:
    """Counts as '2', '4', ... or 'all', in the order given; refused: anything else, duplicates ('2 02')."""
    parsed = []
    for count in counts:
        text = str(count).strip().lower()
        if text == ALL:
            parsed.append(ALL)
        elif text.isdigit() and int(text) > 0:
            parsed.append(str(int(text)))
        else:
            raise StudyError("labelled-case count %r is neither a positive number nor 'all'" % (count,))
    if not parsed:
        raise StudyError("no labelled-case counts given")
    duplicates = sorted({c for c in parsed if parsed.count(c) > 1})
    if duplicates:
        raise StudyError("labelled-case count(s) %s given twice" % ", ".join(duplicates))
    return parsed


def check_counts_against_fold(counts: Sequence[str], train_cases: Sequence[str], source: str) -> None:
    """Every count fits the fold's training cases; a number equal to their count is 'all' given twice."""
    n = len(train_cases)
    if n == 0:
        raise StudyError("%s: the fold has no training cases" % source)
    for count in counts:
        if count != ALL and int(count) > n:
            raise StudyError("labelled-case count %s is more than the %d training cases of the fold (%s)"
                             % (count, n, source))
        if count != ALL and int(count) == n and ALL in counts:
            raise StudyError("labelled-case counts %s and 'all' are the same %d cases of the fold (%s): give one "
                             "of them" % (count, n, source))


def check_label_option(labels: Optional[Sequence[int]], task_labels: Dict[int, str], task: str) -> Optional[List[int]]:
    """``-l``: positive labels of the task, no duplicate; None (every label of the task) stays None."""
    if labels is None:
        return None
    labels = [int(v) for v in labels]
    duplicates = sorted({v for v in labels if labels.count(v) > 1})
    if duplicates:
        raise StudyError("-l: label(s) %s given twice" % ", ".join(map(str, duplicates)))
    for label in labels:
        if label <= 0:
            raise StudyError("-l: label %d is not a foreground label (0 is background)" % label)
        if task_labels and label not in task_labels:
            raise StudyError("-l: label %d is not one of %s's labels (%s)" % (
                label, task, ", ".join("%d %s" % kv for kv in sorted(task_labels.items()))))
    return sorted(labels)


def check_tolerance(tolerance_mm: Optional[float]) -> Optional[float]:
    if tolerance_mm is not None and (not math.isfinite(tolerance_mm) or tolerance_mm < 0):
        raise StudyError("--tolerance must be a non-negative number of mm, got %r" % tolerance_mm)
    return tolerance_mm


def check_trainers(scratch_trainer: str, genesis_trainer: str) -> None:
    for option, name in (("--scratch_trainer", scratch_trainer), ("--genesis_trainer", genesis_trainer)):
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(name)):
            raise StudyError("%s %r is not a trainer class name" % (option, name))
    if scratch_trainer == genesis_trainer:
        raise StudyError("--scratch_trainer and --genesis_trainer are both %s: the two arms need different "
                         "trainers (their runs are kept per trainer)" % scratch_trainer)


def _inside(path: str, folder: str) -> bool:
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def check_output_folder(out_dir: str, inputs: Dict[str, str]) -> None:
    """The study folder is not a file and lies inside none of the input folders (``{what: path}``)."""
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise StudyError("-o %s exists and is not a folder" % out_dir)
    for what, folder in inputs.items():
        if folder and _inside(out_dir, folder):
            raise StudyError("-o %s lies inside %s %s: the study would write into its own inputs; choose a "
                             "folder outside it" % (out_dir, what, folder))


# ------------------------------------------------------------------------------------------------ the test set
@dataclass
class TestSet:
    images_dir: str
    labels_dir: str
    cases: List[str]
    label_files: Dict[str, str]                              # case -> label map path
    images: Dict[str, str] = field(default_factory=dict)    # image file name -> sha256
    labels: Dict[str, str] = field(default_factory=dict)    # label file name -> sha256

    def fingerprint(self) -> dict:
        return {"images": dict(self.images), "labels": dict(self.labels)}


def list_test_images(images_dir: str, num_modalities: int) -> Dict[str, List[str]]:
    """{case: [image file per modality]} of an nnU-Net-format image folder; refused: no such folder, no
    image, a .nii.gz file not named CASE_XXXX.nii.gz with XXXX < the task's modalities, a missing modality."""
    if not os.path.isdir(images_dir):
        raise StudyError("%s: test image folder does not exist" % images_dir)
    names = sorted(n for n in os.listdir(images_dir) if n.endswith((".nii.gz", ".nii")))
    if not names:
        raise StudyError("%s: no test images (nnU-Net format, CASE_0000.nii.gz)" % images_dir)
    cases: Dict[str, List[str]] = {}
    unexpected = []
    for name in names:
        case_channel = raw_dataset.split_channel_file_name(name)
        if not case_channel or case_channel[1] >= num_modalities:
            unexpected.append(name)
        else:
            cases.setdefault(case_channel[0], []).append(name)
    if unexpected:
        last = raw_dataset.channel_file_name("CASE", num_modalities - 1, ending="")
        raise StudyError("%s: %d file(s) are not nnU-Net test images of this %d-modality task (CASE_%s.nii.gz): %s"
                         % (images_dir, len(unexpected), num_modalities,
                            "0000" if num_modalities == 1 else "0000 ... " + last, _short_list(unexpected)))
    missing = [raw_dataset.channel_file_name(case, m) for case, files in sorted(cases.items())
               for m in range(num_modalities) if raw_dataset.channel_file_name(case, m) not in files]
    if missing:
        raise StudyError("%s: modality file(s) missing: %s" % (images_dir, _short_list(missing)))
    return cases


def check_test_set(images_dir: str, labels_dir: str, num_modalities: int, task_labels: Dict[int, str],
                   training_cases: Sequence[str], console=None) -> TestSet:
    """The test set checked as the module docstring says, and its fingerprint (a progress bar on ``console``,
    none when it is None)."""
    from tqdm import tqdm
    from evaluation import labelmaps
    from evaluation.evaluate import EvaluationError, list_cases
    from nnunet_genesis.io.integrity import image_file_problem
    images = list_test_images(images_dir, num_modalities)
    if not os.path.isdir(labels_dir):
        raise StudyError("%s: test label folder does not exist" % labels_dir)
    try:
        label_files = list_cases(labels_dir)
    except EvaluationError as error:
        raise StudyError(str(error)) from None
    if not label_files:
        raise StudyError("%s: no test label maps (.nii.gz/.nii)" % labels_dir)
    missing = sorted(set(images) - set(label_files))
    if missing:
        raise StudyError("%s: no label map for %d test image case(s) of %s: %s" % (
            labels_dir, len(missing), images_dir, _short_list(missing)))
    extra = sorted(set(label_files) - set(images))
    if extra:
        raise StudyError("%s: %d label map(s) have no test image in %s: %s" % (
            labels_dir, len(extra), images_dir, _short_list([os.path.basename(label_files[c]) for c in extra])))
    leaked = sorted(set(images) & set(training_cases))
    if leaked:
        raise StudyError("%s: test case(s) %s are training cases of the task: test cases must be held out"
                         % (images_dir, _short_list(leaked)))
    allowed = [0] + sorted(task_labels) if task_labels else None
    test_set = TestSet(images_dir, labels_dir, sorted(images), label_files)
    for case in tqdm(test_set.cases, desc="checking test cases", unit="case", file=console, leave=False,
                     disable=console is None):
        for name in images[case]:
            path = os.path.join(images_dir, name)
            problem = image_file_problem(path)
            if problem is not None:
                raise StudyError("test image %s: %s" % (path, problem))
            test_set.images[name] = file_sha256(path)
        first = os.path.join(images_dir, images[case][0])
        try:
            grid = labelmaps.read_header(first)
        except RuntimeError as error:
            raise StudyError("test image %s cannot be read (%s)" % (first, labelmaps.first_line(error))) from None
        faults, _, _ = labelmaps.validate_label_map(label_files[case], role=labelmaps.REFERENCE, grid=grid,
                                                    grid_name="its test image %s" % images[case][0],
                                                    allowed_labels=allowed)
        if faults:
            raise StudyError("test label map %s: %s" % (label_files[case], "; ".join(faults)))
        test_set.labels[os.path.basename(label_files[case])] = file_sha256(label_files[case])
    return test_set
