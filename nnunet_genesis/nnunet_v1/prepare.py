"""Unlabeled volumes -> an nnU-Net pretraining task preprocessed with a *target* task's plans.

Models Genesis pretrains on unlabeled scans; the weights only transfer cleanly when the pretraining network
is the one nnU-Net will fine-tune, and when the pretraining data look like the fine-tuning data to that
network.  So instead of fixed constants (the published code clipped CT to [-1000, 1000] and scaled to [0, 1])
this module preprocesses unlabeled volumes exactly as nnU-Net preprocesses the target's labelled cases:

* same plans: the target's ``<plans_identifier>_plans_3D.pkl`` (and ``_plans_2D.pkl`` when present) is
  copied unchanged apart from book-keeping (where the data are, which cases exist) -- so patch size,
  pooling, convolution kernels, number of modalities, base features and data identifier, and therefore the
  Generic_UNet built from them, are the target's;
* same resampling: every case is resampled to the ``current_spacing`` of the last 3D stage (3d_fullres);
* same normalisation: nnU-Net's own preprocessor (``plans['preprocessor_name']``, normally
  GenericPreprocessor) built with the target's normalisation schemes, nonzero-mask flags and
  *intensity properties*.  For CT the voxel value v becomes
  ``(clip(v, p0.5, p99.5) - mean) / sd`` with p0.5, p99.5, mean and sd measured on the target's labelled
  foreground, never re-estimated from the unlabeled volumes.  Non-CT channels are z-scored per case, as
  nnU-Net does for the target.

Labels: unlabeled volumes have none.  nnU-Net's cropping accepts ``seg=None`` and then stores its nonzero mask
as the segmentation channel (0 inside the nonzero region, -1 outside).  That channel therefore is what the
``.npz`` files carry as their last channel; it is never a target for pretraining, and since it has no voxel of
any target class, the class locations are empty and nnU-Net's data loader falls back to random patch
positions.  Only the 3d_fullres stage (the last stage of the 3D plans) is preprocessed; 2D plans are copied
for completeness but no 2D data are written.

The raw task ``TaskMMM_Genesis<TargetName>`` holds one ``<case>_<channel:04d>.nii.gz`` per channel in
``imagesTr`` (no ``labelsTr``), its ``dataset.json`` and ``prepare_report.json``.

The parts: :mod:`nnunet_genesis.io.unlabeled_sources` finds the cases in the sources (headers only),
:mod:`nnunet_genesis.nnunet_v1.prepare_cases` prepares one case, and this module assembles the task (the target's
plans, the jobs, the task's files and report).  Every name this module offered before the split is still
importable from it.
"""
import copy
import json
import os
import pickle
from collections import OrderedDict

from nnunet_genesis.io import raw_dataset
from nnunet_genesis.io.atomic import refuse_output_inside_inputs, write_json_atomic, write_pickle_atomic
from nnunet_genesis.nnunet_v1 import layout
from nnunet_genesis.nnunet_v1.prepare_cases import (CaseJob, run_case_jobs, case_outputs, is_finished,  # noqa: F401
                                            prepare_case, source_signature, unfinished_reason, write_raw_channels)
from nnunet_genesis.io.unlabeled_sources import (IMAGE_EXTENSIONS, Case, Channel, Discovery,  # noqa: F401
                                                PrepareError, _describe_channel, discover_cases)

PRETRAIN_TRAINER = "nnUNetTrainerV2_GenesisPretrain"
DEFAULT_PLANS_IDENTIFIER = layout.DEFAULT_PLANS_IDENTIFIER
REPORT_NAME = "prepare_report.json"


# ----------------------------------------------------------------------------------------------------------------
# nnU-Net folders and the target task
# ----------------------------------------------------------------------------------------------------------------

def _nnunet_folders():
    """(raw data, cropped data, preprocessed) folders nnU-Net uses in this process (layout.process_folders)."""
    missing = layout.unset_process_variables()
    if missing:
        raise PrepareError("environment variable(s) %s not set: nnU-Net does not know where its folders are"
                           % ", ".join(missing))
    folders = layout.process_folders()
    return folders.raw, folders.cropped, folders.preprocessed


def resolve_task_name(task):
    """'901', 901 or 'Task901_FakeCT' -> 'Task901_FakeCT' (via nnU-Net's own id lookup)."""
    try:
        return layout.resolve_task_name(task)
    except layout.NoSuchTask as err:
        raise PrepareError(str(err)) from None
    except ValueError:
        raise PrepareError("target task %r is neither a task id nor a TaskNNN_Name" % (task,)) from None
    except RuntimeError as err:
        raise PrepareError(str(err)) from None


def load_target_plans(target_task_name, plans_identifier=DEFAULT_PLANS_IDENTIFIER):
    """The target's 3D plans dict; PrepareError if the target has not been planned."""
    _, _, preprocessed = _nnunet_folders()
    plans_file = layout.plans_file(os.path.join(preprocessed, target_task_name), plans_identifier)
    if not os.path.isfile(plans_file):
        folder = os.path.dirname(plans_file)
        others = sorted(f[:-len(layout.PLANS_SUFFIX[3])] for f in (os.listdir(folder) if os.path.isdir(folder) else [])
                        if f.endswith(layout.PLANS_SUFFIX[3]))
        raise PrepareError("no 3D plans for the target at %s: %s" % (
            plans_file, ("its plans identifiers are %s (-p)" % ", ".join(others)) if others else
            "plan it first (nnUNet_plan_and_preprocess -t %s)" % target_task_name[4:7]))
    return layout.load_plans(plans_file)


def pretraining_task_name(task_id, target_task_name):
    """TaskMMM_Genesis<TargetName>, where TargetName is the target's name without 'TaskNNN_'."""
    return layout.task_name(task_id, "Genesis" + layout.short_name_of(target_task_name))


def pretraining_plans(target_plans, preprocessed_dir, cropped_npz_files, target_task_name, target_plans_file):
    """The target's plans with only the book-keeping changed: data folder, case list and provenance.

    Everything that shapes the network or the preprocessing (patch size, kernels, spacing, normalisation,
    intensity properties, data identifier, num_classes) stays the target's, so that the network built for
    pretraining is the one nnU-Net builds for the target.
    """
    plans = copy.deepcopy(target_plans)
    plans["preprocessed_data_folder"] = preprocessed_dir
    plans["list_of_npz_files"] = list(cropped_npz_files)
    plans["genesis_pretraining"] = {"target_task": target_task_name, "target_plans_file": target_plans_file,
                                    "preprocessed_stages": [layout.last_stage(plans)]}
    return plans


# ----------------------------------------------------------------------------------------------------------------
# the whole task
# ----------------------------------------------------------------------------------------------------------------

def _find_preprocessor(plans):
    """Instantiate the preprocessor class the target was preprocessed with, as nnU-Net's planner does
    (follows ``ExperimentPlanner.run_preprocessing`` in nnU-Net 1.7.1's
    ``nnunet/experiment_planning/experiment_planner_baseline_3DUNet.py``: same class lookup, same arguments)."""
    import nnunet
    from nnunet.training.model_restore import recursive_find_python_class
    cls = recursive_find_python_class([os.path.join(nnunet.__path__[0], "preprocessing")],
                                      plans["preprocessor_name"], current_module="nnunet.preprocessing")
    if cls is None:
        raise PrepareError("preprocessor %s named in the target's plans not found in nnunet.preprocessing"
                           % plans["preprocessor_name"])
    return cls(plans["normalization_schemes"], plans["use_mask_for_norm"], plans["transpose_forward"],
               plans["dataset_properties"]["intensityproperties"])


def _dataset_json(task_name, target_task_name, target_dataset_json, case_ids):
    return OrderedDict([
        ("name", layout.short_name_of(task_name)),
        ("description", "Unlabeled volumes for Models Genesis pretraining, preprocessed with the plans of %s. "
                        "imagesTr has no labels (no labelsTr)." % target_task_name),
        ("reference", "nnunet-genesis"), ("licence", "see the sources"), ("release", "0.0"),
        ("tensorImageSize", "4D" if len(target_dataset_json["modality"]) > 1 else "3D"),
        ("modality", target_dataset_json["modality"]),
        ("labels", {"0": "background"}),
        ("numTraining", len(case_ids)), ("numTest", 0),
        ("training", [{"image": raw_dataset.listed_path(raw_dataset.IMAGES_TR, c + raw_dataset.NIFTI_ENDING)}
                      for c in case_ids]),
        ("test", []),
    ])


def write_json_lenient(obj, path):
    """``obj`` as JSON, atomically; values JSON cannot hold (paths, numpy scalars) written as strings."""
    write_json_atomic(json.loads(json.dumps(obj, default=str)), path)


def next_command(task_name, plans_identifier=DEFAULT_PLANS_IDENTIFIER):
    command = "nnUNet_train 3d_fullres %s %s all" % (PRETRAIN_TRAINER, task_name)
    if plans_identifier != DEFAULT_PLANS_IDENTIFIER:
        command += " -p " + plans_identifier
    return command


def finished_case_ids(discovery: Discovery, unfinished_reason_of, overwrite=False) -> set:
    """Ids of the cases already prepared (none with ``overwrite``): those ``unfinished_reason_of(case)`` calls
    finished (None).  An earlier output that is damaged or made otherwise is announced and noted in the
    discovery's warnings, as it will be redone.  Shared by v1 and v2 (:mod:`nnunet_genesis.nnunet_v2.prepare`)."""
    done_before = set()
    for case in ([] if overwrite else discovery.cases):
        reason = unfinished_reason_of(case)
        if reason is None:
            done_before.add(case.case_id)
        elif reason not in ("missing", "sources changed"):
            print("  redoing %s: %s" % (case.case_id, reason))
            discovery.warnings.append("redone %s: the earlier output %s" % (case.case_id, reason))
    return done_before


def case_entries(discovery: Discovery, failures: dict, done_before: set):
    """(the report's entries of the prepared cases, the skipped files): a case that failed joins the skipped
    files with its reason ``failures[case_id]``."""
    skipped = list(discovery.skipped)
    cases = []
    for case in discovery.cases:
        if case.case_id in failures:
            skipped.append({"file": ", ".join(case.files), "reason": failures[case.case_id]})
            continue
        cases.append({"case_id": case.case_id, "files": case.files,
                      "channels": [_describe_channel(c) for c in case.channels],
                      "spacing_xyz": case.spacing, "size_xyz": case.size,
                      "status": "already prepared" if case.case_id in done_before else "prepared"})
    return cases, skipped


def run_warnings(discovery: Discovery, stale, data_dir):
    """The discovery's warnings, and one for ``stale`` cases in ``data_dir`` (from an earlier run's sources)."""
    warnings = list(discovery.warnings)
    if stale:
        warnings.append("%d preprocessed case(s) in %s come from an earlier run with other sources and will be "
                        "used for training too: %s" % (len(stale), data_dir, ", ".join(stale)))
    return warnings


def prepare_pretraining_task(target, sources, task_id, num_processes=2, overwrite=False, channels=None,
                             plans_identifier=DEFAULT_PLANS_IDENTIFIER) -> dict:
    """Build and preprocess TaskMMM_Genesis<TargetName> from unlabeled ``sources`` with the target's plans.

    Returns the report (also written as prepare_report.json into the raw and preprocessed task folders):
    task_name, target_task, cases [{case_id, files, status}], skipped [{file, reason}], warnings,
    next_command and the folders.  Raises PrepareError when nothing usable is left or on a channel mismatch.
    """
    sources = [str(sources)] if isinstance(sources, (str, os.PathLike)) else [str(s) for s in sources]
    if not sources:
        raise PrepareError("no sources given")
    try:
        task_id = layout.check_task_id(task_id)
    except ValueError as err:
        raise PrepareError("-o: %s" % err) from None
    raw_base, cropped_base, preprocessed_base = _nnunet_folders()
    target_task_name = resolve_task_name(target)
    target_plans = load_target_plans(target_task_name, plans_identifier)
    task_name = pretraining_task_name(task_id, target_task_name)
    if int(task_id) == layout.task_id_of(target_task_name):
        raise PrepareError("output task id %s is the target's own id" % task_id)
    for base in (raw_base, preprocessed_base):
        clash = [d for d in os.listdir(base) if d.startswith(layout.task_prefix(task_id)) and d != task_name]
        if clash:
            raise PrepareError("task id %03d is already used by %s in %s; choose another -o"
                               % (int(task_id), clash[0], base))

    raw_dir = os.path.join(raw_base, task_name)
    cropped_dir = os.path.join(cropped_base, task_name)
    preprocessed_dir = os.path.join(preprocessed_base, task_name)
    refuse_outputs_inside_sources((raw_dir, cropped_dir, preprocessed_dir), sources, task_id)

    num_modalities = int(target_plans["num_modalities"])
    target_modalities = [target_plans["modalities"][i] for i in sorted(target_plans["modalities"])]
    discovery = discover_cases(sources, num_modalities, channels, exclude_folder=os.path.join(raw_base, task_name),
                               target_modalities=target_modalities)
    if not discovery.cases:
        print_skipped(discovery.skipped)
        raise PrepareError("nothing usable in the sources (%d file(s) skipped): %s"
                           % (len(discovery.skipped), ", ".join(sources)))

    stage = layout.last_stage(target_plans)
    stage_dir = layout.stage_folder(preprocessed_dir, target_plans, stage)
    created = [f for f in (raw_dir, cropped_dir, preprocessed_dir) if not os.path.isdir(f)]
    for folder in (raw_dataset.images_tr(raw_dir), cropped_dir, stage_dir):
        os.makedirs(folder, exist_ok=True)

    preprocessor = _find_preprocessor(target_plans)
    target_spacing = target_plans["plans_per_stage"][stage]["current_spacing"]
    done_before = finished_case_ids(discovery, lambda case: unfinished_reason(case, stage_dir), overwrite)
    jobs = [CaseJob(c, raw_dataset.images_tr(raw_dir), cropped_dir, stage_dir, preprocessor, target_spacing,
                    target_plans["all_classes"], target_plans["use_mask_for_norm"])
            for c in discovery.cases if c.case_id not in done_before]
    print("%s: %d case(s) to prepare, %d already prepared, %d file(s) skipped"
          % (task_name, len(jobs), len(done_before), len(discovery.skipped)))
    try:
        failures = dict((cid, err) for cid, err in run_case_jobs(jobs, num_processes) if err is not None)
    except BaseException:   # a write failure, an interrupt: no empty task folders left behind either
        remove_empty_folders(created)
        raise

    cases, skipped = case_entries(discovery, failures, done_before)
    known = {c["case_id"] for c in cases}
    stale = sorted(f[:-4] for f in os.listdir(stage_dir) if f.endswith(".npz") and f[:-4] not in known)
    warnings = run_warnings(discovery, stale, stage_dir)
    report = OrderedDict([
        ("task_name", task_name), ("task_id", int(task_id)), ("target_task", target_task_name),
        ("plans_identifier", plans_identifier), ("stage", stage), ("target_spacing", list(target_spacing)),
        ("num_modalities", num_modalities), ("channels", list(channels) if channels is not None else None),
        ("raw_dir", raw_dir), ("preprocessed_dir", preprocessed_dir), ("data_dir", stage_dir),
        ("sources", [os.path.abspath(s) for s in sources]),
        ("cases", cases), ("skipped", skipped), ("stale_cases", stale), ("warnings", warnings),
        ("next_command", next_command(task_name, plans_identifier)),
    ])
    if not cases:
        refuse_nothing_prepared(skipped, created)

    _write_task_files(report, target_plans, target_task_name, plans_identifier, cropped_dir, preprocessed_dir,
                      raw_dir, preprocessed_base)
    print_summary(report)
    return dict(report)


def _write_task_files(report, target_plans, target_task_name, plans_identifier, cropped_dir, preprocessed_dir,
                      raw_dir, preprocessed_base):
    """dataset.json, dataset_properties.pkl, plans (3D, and 2D if the target has them) and the report."""
    target_dir = os.path.join(preprocessed_base, target_task_name)
    with open(raw_dataset.dataset_json(target_dir)) as f:
        target_dataset_json = json.load(f)
    all_ids = sorted({c["case_id"] for c in report["cases"]} | set(report["stale_cases"]))
    dataset_json = _dataset_json(report["task_name"], target_task_name, target_dataset_json, all_ids)
    cropped_npz = [os.path.join(cropped_dir, c + ".npz") for c in all_ids]
    for folder in (raw_dir, preprocessed_dir):
        write_json_lenient(dataset_json, raw_dataset.dataset_json(folder))
    # the intensity properties used for normalisation are the target's: keep the fingerprint they came from
    write_pickle_atomic(target_plans["dataset_properties"], os.path.join(preprocessed_dir, "dataset_properties.pkl"))
    for dims in (3, 2):
        target_plans_file = layout.plans_file(target_dir, plans_identifier, dims)
        if not os.path.isfile(target_plans_file):
            continue
        plans = pretraining_plans(layout.load_plans(target_plans_file), preprocessed_dir, cropped_npz,
                                  target_task_name, target_plans_file)
        write_pickle_atomic(plans, layout.plans_file(preprocessed_dir, plans_identifier, dims))
    for folder in (raw_dir, preprocessed_dir):
        write_json_lenient(report, os.path.join(folder, REPORT_NAME))


def refuse_outputs_inside_sources(outputs, sources, output_id):
    """OutputInsideInputError (one line) when an output folder lies inside a source or a source inside it (v1, v2)."""
    for output in outputs:
        refuse_output_inside_inputs(output, {"-i": sources}, "-o %s" % output_id, output_contains_inputs=True)


def remove_empty_folders(folders):
    """Remove each of ``folders`` (made by this run) where it holds only empty folders; never a file."""
    for folder in folders:
        for parent, _, files in os.walk(folder, topdown=False):
            if not files and not os.listdir(parent):
                os.rmdir(parent)


def refuse_nothing_prepared(skipped, created):
    """Every case failed: remove the folders this run ``created`` where they hold no file (a refused run leaves no
    empty task folders behind), list the skipped files and raise PrepareError (v1, v2)."""
    remove_empty_folders(created)
    print_skipped(skipped)
    raise PrepareError("nothing usable in the sources: every case failed (%d file(s) skipped, listed above)"
                       % len(skipped))


def print_skipped(skipped):
    for item in skipped:
        print("  skipped %s: %s" % (item["file"], item["reason"]))


def print_summary(report, name=None):
    """What was prepared, skipped and warned about, where the report is and the next command (``name``: the
    task's, or the v2 dataset's)."""
    new = sum(c["status"] == "prepared" for c in report["cases"])
    print("\n%s: %d case(s) ready (%d new, %d already prepared), %d skipped"
          % (name or report["task_name"], len(report["cases"]), new, len(report["cases"]) - new,
             len(report["skipped"])))
    print_skipped(report["skipped"])
    for warning in report["warnings"]:
        print("  warning: " + warning)
    print("report: %s" % os.path.join(report["preprocessed_dir"], REPORT_NAME))
    print("next, pretrain with:\n  %s" % report["next_command"])
