"""Medical Segmentation Decathlon leaderboard submission: validate prediction folders, then pack one zip.

A submission is one zip holding, for each task, a folder named as the Decathlon names the task
(``Task04_Hippocampus``) with one label map per test image, named like the image
(``Task04_Hippocampus/hippocampus_267.nii.gz``). The test images of a task are the ``test`` list of
its ``dataset.json`` in the Decathlon download (DECATHLON_ROOT/TaskXX_Name/dataset.json).

Prediction folders under PRED_ROOT may be named as the Decathlon (``Task04_Hippocampus``) or as
nnU-Net names the converted task (``Task004_Hippocampus``); both at once is ambiguous and refused.

The parts: :mod:`competition.submission_checks` (the rules, every problem collected before anything is written)
and :mod:`competition.submission_zip` (the zip, stored byte-identical and written atomically); here, building the
submission from the two. Every name this module offered before the split is still importable from it.
"""
import os
from typing import Iterable, Optional

from competition.submission_checks import (GEOMETRY_TOLERANCE, NNUNET_BY_PRODUCT_FILES,  # noqa: F401 (re-exported)
                                           NNUNET_SOFTMAX_SUFFIXES, Problem, SubmissionError, TaskSummary,
                                           ValidationResult, case_faults, check_geometry, find_prediction_folder,
                                           read_header, read_test_cases, resolve_tasks, validate_submission)
from competition.submission_zip import _verify_zip, write_zip_atomically  # noqa: F401 (re-exported)
from nnunet_genesis.io.atomic import refuse_output_inside_inputs


def build_submission(pred_root: str, decathlon_root: str, out_zip: Optional[str], tasks: Optional[Iterable] = None,
                     check_only: bool = False, overwrite: bool = False, progress: bool = True) -> ValidationResult:
    """Validate, then (unless ``check_only``) write the submission zip atomically.

    Raises SubmissionError listing every problem when the submission is invalid or ``out_zip``
    cannot be written (exists without ``overwrite``, or its folder does not exist), and
    OutputInsideInputError when ``out_zip`` lies inside ``pred_root`` or ``decathlon_root`` (or is a
    prediction); nothing is written then. Returns the ValidationResult (summary, warnings, the files zipped)."""
    if not check_only and out_zip is not None:   # the zip never lands among (or over) the predictions or test images
        refuse_output_inside_inputs(out_zip, {"-i": pred_root, "-d": decathlon_root})
    result = validate_submission(pred_root, decathlon_root, tasks, progress=progress)
    if not check_only:
        if out_zip is None:
            result.problems.append(Problem("-o", "no output zip given (or use --check_only)"))
        else:
            directory = os.path.dirname(os.path.abspath(out_zip))
            if os.path.isdir(out_zip):
                result.problems.append(Problem(out_zip, "is a folder; give the path of the zip to write"))
            elif os.path.lexists(out_zip) and not overwrite:
                result.problems.append(Problem(out_zip, "already exists; pass --overwrite to replace it"))
            if not os.path.isdir(directory):
                result.problems.append(Problem(directory, "output folder does not exist"))
    if result.problems:
        raise SubmissionError(result)
    if not check_only:
        write_zip_atomically(result.files, out_zip)
    return result
