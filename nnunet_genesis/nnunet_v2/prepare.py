"""Unlabeled volumes -> an nnU-Net v2 pretraining dataset preprocessed with a *target* dataset's plans.

The v2 counterpart of :mod:`nnunet_genesis.nnunet_v1.prepare` (v1), with the same idea: the unlabeled volumes are
preprocessed exactly as nnU-Net v2 preprocessed the target's labelled cases, so that the network pretrained on
them is the network nnU-Net fine-tunes, fed data that look alike:

* the sources are found by :func:`nnunet_genesis.io.unlabeled_sources.discover_cases`, unchanged (Decathlon
  folders, nnU-Net raw folders, plain folders, single files, .mhd ...; bad files skipped with the reason);
* every case goes through nnunetv2 2.8.1's own preprocessor, the class the target's configuration names
  (normally ``DefaultPreprocessor``, ``nnunetv2/preprocessing/preprocessors/default_preprocessor.py``), with
  ``run_case_save``: the target's reader, transpose, cropping to the nonzero region, the configuration's spacing
  and resampling, and the plans' normalisation schemes with the *target's* foreground intensity properties (CT:
  clip to the target's p0.5/p99.5, minus its mean, over its sd -- never re-estimated from the unlabeled data);
* unlabeled volumes have no label map, so each case is given an all-background one on the image's grid: nnU-Net
  then stores what it stores for a labelled case without foreground (seg 0 inside the nonzero region, -1 outside,
  every class location empty, so its data loader draws random patches), in its own on-disk format
  (``nnUNetDatasetBlosc2.save_case``: ``<case>.b2nd``, ``<case>_seg.b2nd``, ``<case>.pkl``);
* the new ``nnUNet_preprocessed/Dataset<id>_Genesis<TargetName>/`` holds the target's plans under the same plans
  identifier with only ``dataset_name`` changed (plus a ``genesis_pretraining`` provenance entry), a
  dataset.json with the target's channel names, labels and file ending (numTraining = the cases), the target's
  dataset_fingerprint.json (where its intensity properties come from; nnU-Net's trainer copies it), the cases in
  the configuration's data folder and ``prepare_report.json``.  No raw dataset is written: nnU-Net v2 trains
  from the preprocessed folder only, and the sources are named in the report.

Each case is written under a temporary folder beside the data folder and renamed into place, ``.b2nd`` last (the
file whose name makes it a case for nnU-Net's dataset class); a re-run keeps finished cases (verified by content,
source files and preprocessing settings) and ``overwrite`` redoes them.
"""
import contextlib
import copy
import hashlib
import io
import json
import os
import pickle
import shutil
import tempfile
from collections import OrderedDict
from dataclasses import dataclass

from nnunet_genesis.io import safe_pickle
from nnunet_genesis.io.atomic import as_write_error, is_write_failure, make_dirs
from nnunet_genesis.io.integrity import error_text
from nnunet_genesis.nnunet_v2 import layout
from nnunet_genesis.nnunet_v1.prepare import (REPORT_NAME, case_entries, finished_case_ids, print_skipped, print_summary,
                                      refuse_nothing_prepared, refuse_outputs_inside_sources, run_warnings,
                                      write_json_lenient)
from nnunet_genesis.nnunet_v1.prepare_cases import (check_resampled_size, run_case_jobs, source_signature,
                                            write_raw_channels)
from nnunet_genesis.io.unlabeled_sources import Case, PrepareError, discover_cases

PRETRAIN_TRAINER = "nnUNetTrainer_GenesisPretrain"
DEFAULT_PLANS_IDENTIFIER = layout.DEFAULT_PLANS_IDENTIFIER
DEFAULT_CONFIGURATION = layout.DEFAULT_CONFIGURATION
SOURCE_KEY = "genesis_source"                 # in each case's .pkl: the source files it was made from
PREPROCESSING_KEY = "genesis_preprocessing"   # in each case's .pkl: digest of the settings it was made with
PROVENANCE_KEY = "genesis_pretraining"        # in the plans: which target they were copied from
# the configuration entries that decide what a preprocessed case holds (others, e.g. batch size, do not)
_PREPROCESSING_ENTRIES = ("data_identifier", "preprocessor_name", "spacing", "normalization_schemes",
                          "use_mask_for_norm", "resampling_fn_data", "resampling_fn_data_kwargs",
                          "resampling_fn_seg", "resampling_fn_seg_kwargs")


# ----------------------------------------------------------------------------------------------------------------
# the target
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class Target:
    """A planned v2 dataset: its name, preprocessed folder, plans (file and dict) and dataset.json."""
    name: str
    folder: str
    plans_file: str
    plans: dict
    dataset_json: dict


def _layout_call(function, *args):
    try:
        return function(*args)
    except layout.LayoutError as err:
        raise PrepareError(str(err)) from None


def load_target(target, plans_identifier=DEFAULT_PLANS_IDENTIFIER, configuration=DEFAULT_CONFIGURATION) -> Target:
    """The planned target dataset (id or name); PrepareError in one line when it is not planned as asked."""
    preprocessed = _layout_call(layout.require_folder, layout.PREPROCESSED_VARIABLE)
    name = _layout_call(layout.resolve_dataset_name, target)
    folder = os.path.join(preprocessed, name)
    plans_file = layout.plans_file(folder, plans_identifier)
    plan_it = "plan it first: nnUNetv2_plan_and_preprocess -d %d -c %s" % (layout.dataset_id_of(name), configuration)
    if not os.path.isfile(plans_file):
        raise PrepareError("no plans %s for the target %s (%s); %s"
                           % (layout.plans_file_name(plans_identifier), name, plans_file, plan_it))
    for needed in (layout.dataset_json_file(folder), layout.fingerprint_file(folder)):
        if not os.path.isfile(needed):
            raise PrepareError("the target %s has no %s; %s" % (name, needed, plan_it))
    plans = layout.load_json(plans_file)
    _layout_call(layout.configuration_manager, plans, configuration)
    return Target(name, folder, plans_file, plans, layout.load_json(layout.dataset_json_file(folder)))


def pretraining_dataset_name(dataset_id, target_name) -> str:
    """Dataset<id>_Genesis<TargetName>."""
    return _layout_call(layout.dataset_name, dataset_id, "Genesis" + layout.short_name_of(target_name))


def pretraining_plans(target: Target, dataset_name, configuration) -> dict:
    """The target's plans with ``dataset_name`` changed (and where they came from): same configurations, so the
    same network, patch size, spacing and normalisation."""
    plans = copy.deepcopy(target.plans)
    plans["dataset_name"] = dataset_name
    plans[PROVENANCE_KEY] = {"target_dataset": target.name, "target_plans_file": target.plans_file,
                             "preprocessed_configurations": [configuration]}
    return plans


def pretraining_dataset_json(target: Target, dataset_name, case_ids) -> dict:
    """The target's dataset.json for the new cases: its channel names, labels and file ending (so nnU-Net builds
    the target's network) and numTraining = the cases; the target's explicit file list ('dataset') is dropped."""
    dataset_json = OrderedDict([
        ("name", layout.short_name_of(dataset_name)),
        ("description", "Unlabeled volumes for Models Genesis pretraining, preprocessed with the plans of %s; "
                        "their label maps are all background." % target.name),
        ("channel_names", target.dataset_json["channel_names"]),
        ("labels", target.dataset_json["labels"]),
        ("numTraining", len(case_ids)),
        ("file_ending", layout.file_ending(target.dataset_json))])
    for key, value in target.dataset_json.items():
        if key not in dataset_json and key not in ("dataset", "numTest", "training", "test"):
            dataset_json[key] = value
    return dataset_json


def preprocessing_digest(plans, configuration) -> str:
    """Digest of what decides a preprocessed case's content: the configuration's preprocessing entries, the
    transpose, the reader and the intensity properties.  A case made with other settings is redone."""
    manager = layout.plans_manager(plans)
    config = layout.configuration_manager(manager, configuration).configuration
    settings = {key: config.get(key) for key in _PREPROCESSING_ENTRIES}
    settings.update(transpose_forward=plans.get("transpose_forward"), reader=plans.get("image_reader_writer"),
                    intensity=manager.foreground_intensity_properties_per_channel)
    return hashlib.sha1(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


# ----------------------------------------------------------------------------------------------------------------
# one case
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class CaseJob:
    """Everything a worker process needs to prepare one case."""
    case: Case
    data_dir: str
    plans: dict
    configuration: str
    dataset_json: dict
    digest: str


def case_files(case_id, data_dir):
    """(<case>.b2nd, <case>_seg.b2nd, <case>.pkl): nnUNetDatasetBlosc2's files of one case."""
    stem = os.path.join(data_dir, case_id)
    return stem + ".b2nd", stem + "_seg.b2nd", stem + ".pkl"


def b2nd_problem(path):
    """Why a blosc2 array file cannot be read to its end, or None if it can."""
    import blosc2
    try:
        blosc2.open(urlpath=path, mode="r", dparams={"nthreads": 1})[...]
    except Exception as err:   # blosc2 raises several types for a cut or damaged file
        return "truncated or damaged (%s: %s)" % (type(err).__name__, error_text(err))
    return None


def unfinished_reason(case: Case, data_dir, digest):
    """None when the case is finished, else why not ("missing", "sources changed", "plans changed", or the
    damaged file and its fault)."""
    data, seg, pkl = case_files(case.case_id, data_dir)
    if not all(os.path.isfile(f) for f in (data, seg, pkl)):
        return "missing"
    try:
        properties = safe_pickle.load(pkl)
    except Exception as err:   # an unreadable properties file means an unfinished case
        return "%s: unreadable (%s)" % (pkl, type(err).__name__)
    if properties.get(SOURCE_KEY) != source_signature(case):
        return "sources changed"
    if properties.get(PREPROCESSING_KEY) != digest:
        return "plans changed"
    for path in (data, seg):
        problem = b2nd_problem(path)
        if problem is not None:
            return "%s: %s" % (path, problem)
    return None


def remove_case(case_id, data_dir):
    """Delete a case's files, the .b2nd first (without it nnU-Net no longer sees the case)."""
    for path in case_files(case_id, data_dir):
        if os.path.isfile(path):
            os.remove(path)


def _background_seg(image_file, seg_file):
    """An all-background (0) uint8 label map on ``image_file``'s grid, written to ``seg_file``."""
    import SimpleITK as sitk
    reader = sitk.ImageFileReader()
    reader.SetFileName(image_file)
    reader.ReadImageInformation()
    seg = sitk.Image([int(s) for s in reader.GetSize()], sitk.sitkUInt8)
    seg.SetSpacing(reader.GetSpacing())
    seg.SetOrigin(reader.GetOrigin())
    seg.SetDirection(reader.GetDirection())
    sitk.WriteImage(seg, seg_file, True)
    return seg_file


def prepare_case(job: CaseJob):
    """One case through nnU-Net v2's preprocessor, made atomic; returns (case_id, error or None).

    In a temporary folder beside the data folder: the case's channels as 3D NIfTI files (``write_raw_channels``,
    which also refuses truncated files), an all-background label map, then the configuration's preprocessor's
    ``run_case_save`` (what ``DefaultPreprocessor.run`` runs per case).  The source signature and settings digest
    are added to the .pkl, and the files are renamed into the data folder, the .b2nd last.
    """
    case = job.case
    work = tempfile.mkdtemp(prefix=".preparing_%s_" % case.case_id, dir=os.path.dirname(job.data_dir))
    try:
        with contextlib.redirect_stdout(io.StringIO()):   # nnU-Net prints several lines per case
            images = write_raw_channels(case, work)
            seg_file = _background_seg(images[0], os.path.join(work, "background_seg.nii.gz"))
            manager = layout.plans_manager(job.plans)
            config = manager.get_configuration(job.configuration)
            check_resampled_size(case, config.spacing)   # no empty case from a 1e-6 mm spacing (v1's check)
            preprocessor = config.preprocessor_class(verbose=False)
            preprocessor.run_case_save(os.path.join(work, case.case_id), images, seg_file, manager, config,
                                       job.dataset_json)
        written = case_files(case.case_id, work)
        properties = safe_pickle.load(written[2])
        properties[SOURCE_KEY] = source_signature(case)
        properties[PREPROCESSING_KEY] = job.digest
        with open(written[2], "wb") as f:
            pickle.dump(properties, f)
        remove_case(case.case_id, job.data_dir)
        final = case_files(case.case_id, job.data_dir)
        for index in (1, 2, 0):   # seg, properties, then the data file that makes it a case
            os.replace(written[index], final[index])
        return case.case_id, None
    except Exception as err:  # one bad file must not stop the others; it is reported instead
        remove_case(case.case_id, job.data_dir)
        if is_write_failure(err):   # no space, size limit, read-only: not the file's fault; it would fail every case
            raise as_write_error(err, job.data_dir) from None
        reason = error_text(err) if isinstance(err, PrepareError) else \
            "%s: %s" % (type(err).__name__, error_text(err))
        return case.case_id, reason
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ----------------------------------------------------------------------------------------------------------------
# the whole dataset
# ----------------------------------------------------------------------------------------------------------------

def next_command(dataset_id, plans_identifier=DEFAULT_PLANS_IDENTIFIER, configuration=DEFAULT_CONFIGURATION):
    command = "nnUNetv2_train %d %s all -tr %s" % (int(dataset_id), configuration, PRETRAIN_TRAINER)
    if plans_identifier != DEFAULT_PLANS_IDENTIFIER:
        command += " -p " + plans_identifier
    return command


def _check_output_id(dataset_id, dataset_name, target_name):
    if int(dataset_id) == layout.dataset_id_of(target_name):
        raise PrepareError("output dataset id %s is the target's own id" % dataset_id)
    clash = [f for f in layout.folders_from_env().dataset_folders(dataset_id) if os.path.basename(f) != dataset_name]
    if clash:
        raise PrepareError("dataset id %03d is already used by %s; choose another -o" % (int(dataset_id), clash[0]))


def prepare_pretraining_dataset(target, sources, dataset_id, num_processes=2, overwrite=False, channels=None,
                                plans_identifier=DEFAULT_PLANS_IDENTIFIER,
                                configuration=DEFAULT_CONFIGURATION) -> dict:
    """Build and preprocess Dataset<id>_Genesis<TargetName> from unlabeled ``sources`` with the target's plans.

    Returns the report (also written as prepare_report.json into the new preprocessed dataset folder):
    dataset_name, target_dataset, cases [{case_id, files, status}], skipped [{file, reason}], warnings,
    next_command and the folders.  Raises PrepareError when nothing usable is left, on a channel mismatch or a
    target that is not planned.
    """
    sources = [str(sources)] if isinstance(sources, (str, os.PathLike)) else [str(s) for s in sources]
    if not sources:
        raise PrepareError("no sources given")
    target_ = load_target(target, plans_identifier, configuration)
    dataset_name = pretraining_dataset_name(dataset_id, target_.name)
    _check_output_id(dataset_id, dataset_name, target_.name)
    dataset_dir = os.path.join(layout.require_folder(layout.PREPROCESSED_VARIABLE), dataset_name)
    data_dir = layout.configuration_folder(dataset_dir, target_.plans, configuration)

    refuse_outputs_inside_sources([dataset_dir], sources, dataset_id)
    channel_names = layout.channel_names(target_.dataset_json)
    discovery = discover_cases(sources, len(channel_names), channels, exclude_folder=dataset_dir,
                               target_modalities=channel_names)
    if not discovery.cases:
        print_skipped(discovery.skipped)
        raise PrepareError("nothing usable in the sources (%d file(s) skipped): %s"
                           % (len(discovery.skipped), ", ".join(sources)))
    created = [f for f in (dataset_dir, data_dir) if not os.path.isdir(f)]
    make_dirs(data_dir)

    digest = preprocessing_digest(target_.plans, configuration)
    done_before = finished_case_ids(discovery, lambda case: unfinished_reason(case, data_dir, digest), overwrite)
    jobs = [CaseJob(c, data_dir, target_.plans, configuration, target_.dataset_json, digest)
            for c in discovery.cases if c.case_id not in done_before]
    print("%s: %d case(s) to prepare, %d already prepared, %d file(s) skipped"
          % (dataset_name, len(jobs), len(done_before), len(discovery.skipped)))
    failures = dict((cid, err) for cid, err in run_case_jobs(jobs, num_processes, worker=prepare_case)
                    if err is not None)

    cases, skipped = case_entries(discovery, failures, done_before)
    from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2   # the cases nnU-Net will see
    known = {c["case_id"] for c in cases}
    stale = sorted(set(nnUNetDatasetBlosc2.get_identifiers(data_dir)) - known)
    warnings = run_warnings(discovery, stale, data_dir)
    config = layout.configuration_manager(target_.plans, configuration)
    report = OrderedDict([
        ("dataset_name", dataset_name), ("dataset_id", int(dataset_id)), ("target_dataset", target_.name),
        ("plans_identifier", plans_identifier), ("configuration", configuration),
        ("data_identifier", config.data_identifier), ("spacing", list(config.spacing)),
        ("patch_size", list(config.patch_size)), ("num_channels", len(channel_names)),
        ("channels", list(channels) if channels is not None else None),
        ("preprocessed_dir", dataset_dir), ("data_dir", data_dir),
        ("sources", [os.path.abspath(s) for s in sources]),
        ("cases", cases), ("skipped", skipped), ("stale_cases", stale), ("warnings", warnings),
        ("next_command", next_command(dataset_id, plans_identifier, configuration)),
    ])
    if not cases:
        refuse_nothing_prepared(skipped, created)
    _write_dataset_files(report, target_, configuration)
    print_summary(report, dataset_name)
    return dict(report)


def _write_dataset_files(report, target: Target, configuration):
    """Plans, dataset.json, the target's fingerprint and the report (each atomically)."""
    dataset_dir = report["preprocessed_dir"]
    all_ids = sorted({c["case_id"] for c in report["cases"]} | set(report["stale_cases"]))
    write_json_lenient(pretraining_plans(target, report["dataset_name"], configuration),
                       layout.plans_file(dataset_dir, report["plans_identifier"]))
    write_json_lenient(pretraining_dataset_json(target, report["dataset_name"], all_ids),
                       layout.dataset_json_file(dataset_dir))
    write_json_lenient(layout.load_json(layout.fingerprint_file(target.folder)), layout.fingerprint_file(dataset_dir))
    write_json_lenient(report, os.path.join(dataset_dir, REPORT_NAME))
