"""The pipeline's done-checks: whether a step's output is complete, read from the files on disk only.

Each check is a pure function of a :class:`~competition.pipeline_config.PipelineConfig` and the disk; what
each step's check requires is listed with the steps in :mod:`competition.pipeline_steps`.
"""
import json
import os
from typing import Tuple

from competition.pipeline_config import PipelineConfig
from nnunet_genesis.io import raw_dataset
from nnunet_genesis.io.integrity import npz_problem
from nnunet_genesis.nnunet_v1 import layout
from nnunet_genesis.nnunet_v1.prepare import REPORT_NAME as PREPARE_REPORT   # what nnUNet_genesis_prepare writes

FINAL_CHECKPOINT = layout.FINAL_CHECKPOINT
VALIDATION_SUMMARY = layout.VALIDATION_SUMMARY         # written by nnUNet_train after training
RESUMABLE_CHECKPOINTS = layout.RESUMABLE_CHECKPOINTS   # what nnUNet_train -c loads, in order


def _cases_without_data(folder, case_ids):
    """Case ids lacking ``<id>.npz`` or ``<id>.pkl`` in ``folder`` (nnU-Net's preprocessed pair)."""
    return [c for c in case_ids if not (os.path.isfile(os.path.join(folder, c + ".npz"))
                                        and os.path.isfile(os.path.join(folder, c + ".pkl")))]


def _load_json(path):
    with open(path) as f:
        return json.load(f)


def _strip_nii_gz(name):
    return name[:-len(".nii.gz")] if name.endswith(".nii.gz") else os.path.splitext(name)[0]


def convert_status(config: PipelineConfig) -> Tuple[bool, str]:
    dataset_json = raw_dataset.dataset_json(config.raw_task_dir)
    if os.path.isfile(dataset_json):
        return True, "%s exists" % dataset_json
    return False, "no %s" % dataset_json


def _stage_status(config, plans_file, what):
    """(done, why) for one plans file and the data of its last stage."""
    if not os.path.isfile(plans_file):
        return False, "no %s plans %s" % (what, plans_file)
    try:
        plans = layout.load_plans(plans_file)
        stage_dir = layout.stage_folder(config.preprocessed_task_dir, plans, layout.last_stage(plans))
    except Exception as err:  # a damaged plans file means: plan again
        return False, "%s unreadable (%s: %s)" % (plans_file, type(err).__name__, err)
    try:
        training = _load_json(raw_dataset.dataset_json(config.raw_task_dir))["training"]
        cases = [_strip_nii_gz(os.path.basename(t["image"])) for t in training]
    except (OSError, ValueError, KeyError, TypeError):
        return False, "no readable training list in %s" % raw_dataset.dataset_json(config.raw_task_dir)
    missing = _cases_without_data(stage_dir, cases)
    if missing:
        return False, "%d of %d training case(s) not preprocessed in %s (e.g. %s)" % (
            len(missing), len(cases), stage_dir, missing[0])
    return True, "%s and %d preprocessed case(s) in %s" % (os.path.basename(plans_file), len(cases), stage_dir)


def plan_status(config: PipelineConfig) -> Tuple[bool, str]:
    kinds = [("3D", 3)] + ([("2D", 2)] if config.plan_2d else [])
    reasons = []
    for what, dims in kinds:
        done, why = _stage_status(config, layout.plans_file(config.preprocessed_task_dir, config.plans_identifier,
                                                            dims), what)
        if not done:
            return False, why
        reasons.append(why)
    return True, "; ".join(reasons)


def prepare_status(config: PipelineConfig) -> Tuple[bool, str]:
    report_file = os.path.join(config.pretrain_preprocessed_dir, PREPARE_REPORT)
    if not os.path.isfile(report_file):
        return False, "no %s" % report_file
    try:
        report = _load_json(report_file)
        sources = sorted(os.path.abspath(s) for s in report["sources"])
        cases = [c["case_id"] for c in report["cases"]]
        data_dir = report["data_dir"]
        target, plans_identifier = report["target_task"], report["plans_identifier"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        return False, "%s unreadable (%s)" % (report_file, err)
    if target != config.task_name or plans_identifier != config.plans_identifier:
        return False, "%s was prepared for %s with %s" % (report_file, target, plans_identifier)
    if sources != sorted(config.prepare_sources):
        added = sorted(set(config.prepare_sources) - set(sources))
        return False, "other sources than last time (%s)" % (
            "new: " + ", ".join(added) if added else "last time: " + ", ".join(sources))
    plans_file = layout.plans_file(config.pretrain_preprocessed_dir, config.plans_identifier)
    if not os.path.isfile(plans_file):
        return False, "no %s" % plans_file
    missing = _cases_without_data(data_dir, cases)
    if missing:
        return False, "%d of %d prepared case(s) missing in %s" % (len(missing), len(cases), data_dir)
    for case in cases:   # finished means readable to the end, as nnUNet_genesis_prepare itself judges it
        npz = os.path.join(data_dir, case + ".npz")
        problem = npz_problem(npz)
        if problem:
            return False, "%s: %s" % (npz, problem)
    return True, "%s: %d case(s) from the same source(s) in %s" % (PREPARE_REPORT, len(cases), data_dir)


def _training_status(output_dir):
    """('done', file) / ('started', file) / ('new', None) for one nnUNet_train output (fold) folder."""
    final = os.path.join(output_dir, FINAL_CHECKPOINT)
    if os.path.isfile(final):
        return "done", final
    for name in RESUMABLE_CHECKPOINTS:
        if os.path.isfile(os.path.join(output_dir, name)):
            return "started", os.path.join(output_dir, name)
    return "new", None


def _predictions_state(config):
    """(missing predictions, stale predictions, why): stale = older than a fold's final checkpoint or the
    postprocessing.json used (or a checkpoint is missing: that fold is still to be trained, so whatever
    prediction is there came from another model)."""
    outputs = [os.path.join(config.prediction_dir, name) for name in config.test_images]
    missing = [p for p in outputs if not os.path.isfile(p)]
    present = [p for p in outputs if os.path.isfile(p)]
    checkpoints = [os.path.join(config.fold_dir(f), FINAL_CHECKPOINT) for f in config.folds]
    absent = [c for c in checkpoints if not os.path.isfile(c)]
    if absent:
        why = "no final checkpoint %s yet, so the existing predictions come from another model" % absent[0]
        return missing, present, why if present else ""
    models = checkpoints + ([config.postprocessing_file] if config.all_five_folds and
                            os.path.isfile(config.postprocessing_file) else [])
    newest = max(os.stat(m).st_mtime_ns for m in models) if models else 0
    stale = [p for p in present if os.stat(p).st_mtime_ns < newest]
    why = "%d prediction(s) older than the model (final checkpoints, postprocessing.json)" % len(stale) \
        if stale else ""
    return missing, stale, why

