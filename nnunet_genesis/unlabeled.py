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
"""
import contextlib
import copy
import hashlib
import io
import json
import os
import pickle
import re
import shutil
from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field
from multiprocessing import Pool
from typing import List, Optional, Sequence, Tuple

import SimpleITK as sitk

PRETRAIN_TRAINER = "nnUNetTrainerV2_GenesisPretrain"
DEFAULT_PLANS_IDENTIFIER = "nnUNetPlansv2.1"
REPORT_NAME = "prepare_report.json"
IMAGE_EXTENSIONS = (".nii.gz", ".nii", ".mhd", ".mha", ".nrrd", ".nhdr")
_MODALITY_SUFFIX = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})\.nii\.gz$")


class PrepareError(ValueError):
    """Bad input that stops the preparation (the message names the file and the fault)."""


# ----------------------------------------------------------------------------------------------------------------
# nnU-Net folders and the target task
# ----------------------------------------------------------------------------------------------------------------

def _nnunet_folders():
    """(raw data, cropped data, preprocessed) folders from nnU-Net's environment variables."""
    from nnunet import paths
    missing = [name for name, value in (("nnUNet_raw_data_base", paths.nnUNet_raw_data),
                                        ("nnUNet_preprocessed", paths.preprocessing_output_dir)) if value is None]
    if missing:
        raise PrepareError("environment variable(s) %s not set: nnU-Net does not know where its folders are"
                           % ", ".join(missing))
    return paths.nnUNet_raw_data, paths.nnUNet_cropped_data, paths.preprocessing_output_dir


def resolve_task_name(task):
    """'901', 901 or 'Task901_FakeCT' -> 'Task901_FakeCT' (via nnU-Net's own id lookup)."""
    from nnunet.utilities.task_name_id_conversion import convert_id_to_task_name
    text = str(task)
    if text.startswith("Task"):
        return text
    if not text.isdigit():
        raise PrepareError("target task %r is neither a task id nor a TaskNNN_Name" % task)
    try:
        return convert_id_to_task_name(int(text))
    except RuntimeError as err:
        raise PrepareError(str(err)) from None


def load_target_plans(target_task_name, plans_identifier=DEFAULT_PLANS_IDENTIFIER):
    """The target's 3D plans dict; PrepareError if the target has not been planned."""
    _, _, preprocessed = _nnunet_folders()
    plans_file = os.path.join(preprocessed, target_task_name, plans_identifier + "_plans_3D.pkl")
    if not os.path.isfile(plans_file):
        raise PrepareError("no 3D plans for the target at %s: plan it first (nnUNet_plan_and_preprocess -t %s)"
                           % (plans_file, target_task_name[4:7]))
    with open(plans_file, "rb") as f:
        return pickle.load(f)


def pretraining_task_name(task_id, target_task_name):
    """TaskMMM_Genesis<TargetName>, where TargetName is the target's name without 'TaskNNN_'."""
    return "Task%03d_Genesis%s" % (int(task_id), target_task_name.split("_", 1)[1])


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
                                    "preprocessed_stages": [max(plans["plans_per_stage"].keys())]}
    return plans


# ----------------------------------------------------------------------------------------------------------------
# finding cases in the sources (headers only)
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class Channel:
    """One channel of a case: a file and, for 4D or multi-component files, which volume/component."""
    path: str
    index: Optional[int] = None      # None: the whole (3D, scalar) file
    kind: str = "file"               # "file", "4d" or "component"


@dataclass
class Case:
    """A case: its id and its channels in the target's modality order; spacing and size (x, y, z) from the
    first file's header."""
    case_id: str
    channels: List[Channel]
    spacing: Tuple[float, ...] = ()
    size: Tuple[int, ...] = ()

    @property
    def files(self):
        return sorted({c.path for c in self.channels})


@dataclass
class Discovery:
    """What the sources hold: usable cases, skipped files with the reason, warnings."""
    cases: List[Case] = field(default_factory=list)
    skipped: List[dict] = field(default_factory=list)   # {"file": ..., "reason": ...}
    warnings: List[str] = field(default_factory=list)


def _strip_image_extension(name):
    for ext in IMAGE_EXTENSIONS:
        if name.lower().endswith(ext):
            return name[:-len(ext)]
    return None


def _safe(text):
    """Characters nnU-Net's file-name parsing copes with everywhere: letters, digits, '.', '_' and '-'."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)


def _image_files(folder, discovery):
    """Image files in ``folder`` (sorted); hidden files (e.g. macOS '._x.nii.gz') are skipped and reported."""
    files = []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if not os.path.isfile(path) or _strip_image_extension(name) is None:
            continue
        if name.startswith("."):
            discovery.skipped.append({"file": path, "reason": "hidden file (e.g. macOS metadata), not an image"})
            continue
        files.append(path)
    return files


def _group_by_modality_suffix(files, expected_channels):
    """nnU-Net raw layout: {case: [file_0000, file_0001, ...]} or None if the files are not in that layout.

    The layout is accepted only when every file is ``<case>_XXXX.nii.gz`` and every case has the same
    channels 0..k-1; a lone case must have exactly the expected number of channels, so that files merely
    numbered ``scan_0000, scan_0001, ...`` are not glued into one many-channel case.
    """
    groups = defaultdict(dict)
    for path in files:
        match = _MODALITY_SUFFIX.match(os.path.basename(path))
        if match is None:
            return None
        groups[match.group("case")][int(match.group("channel"))] = path
    channel_sets = {tuple(sorted(g)) for g in groups.values()}
    if len(channel_sets) != 1:
        return None
    channels = channel_sets.pop()
    if channels != tuple(range(len(channels))):
        return None
    if len(groups) == 1 and len(channels) != expected_channels:
        return None
    return {case: [g[i] for i in channels] for case, g in sorted(groups.items())}


def _read_dataset_json(task_folder):
    """A task folder's dataset.json as a dict, or {} when it has none (or an unreadable one)."""
    json_file = os.path.join(task_folder, "dataset.json")
    try:
        with open(json_file) as f:
            dataset = json.load(f)
    except (OSError, ValueError):
        return {}
    return dataset if isinstance(dataset, dict) else {}


def _decathlon_listed_files(dataset):
    """Basenames of the images a Decathlon dataset.json lists (training and test)."""
    listed = [t["image"] for t in dataset.get("training", []) if isinstance(t, dict) and "image" in t]
    listed += [t for t in dataset.get("test", []) if isinstance(t, str)]
    return {os.path.basename(p) for p in listed}


def _check_modalities(source, dataset, channels, target_modalities, discovery):
    """Warn when a task folder's dataset.json names other modalities than the target's (e.g. MRI for CT)."""
    modality = dataset.get("modality")
    if not isinstance(modality, dict) or not target_modalities:
        return
    names = [str(modality[k]) for k in sorted(modality, key=lambda k: int(k))] if all(
        str(k).isdigit() for k in modality) else list(map(str, modality.values()))
    if channels is not None:
        names = [names[c] for c in channels if 0 <= c < len(names)]
    if [n.lower() for n in names] != [str(n).lower() for n in target_modalities]:
        discovery.warnings.append("%s has modalities %s, the target has %s: check that pretraining on it makes "
                                  "sense (and --channels)" % (source, names, list(target_modalities)))


def _source_groups(source, expected_channels, discovery, channels=None, target_modalities=None):
    """(tag, [(stem, [files...]), ...]) for one source: a task folder, a plain folder or a single file."""
    source = os.path.abspath(source)
    if os.path.isfile(source):
        if _strip_image_extension(os.path.basename(source)) is None:
            discovery.skipped.append({"file": source, "reason": "not a known image extension %s"
                                      % ", ".join(IMAGE_EXTENSIONS)})
            return os.path.basename(os.path.dirname(source)), []
        return os.path.basename(os.path.dirname(source)), \
            [(_strip_image_extension(os.path.basename(source)), [source])]
    if not os.path.isdir(source):
        raise PrepareError("source %s does not exist" % source)
    if os.path.basename(source) == "labelsTr":
        raise PrepareError("source %s holds label maps, not images: give the task folder or imagesTr/imagesTs"
                           % source)

    task_subfolders = [s for s in ("imagesTr", "imagesTs") if os.path.isdir(os.path.join(source, s))]
    folders = [os.path.join(source, s) for s in task_subfolders] or [source]
    dataset = _read_dataset_json(source) if task_subfolders else {}
    decathlon_listed = _decathlon_listed_files(dataset)
    _check_modalities(source, dataset, channels, target_modalities, discovery)
    groups = []
    for folder in folders:
        files = _image_files(folder, discovery)
        grouped = None
        # a Decathlon task lists its own files in dataset.json: one (possibly 4D) file per case
        if not any(os.path.basename(f) in decathlon_listed for f in files):
            grouped = _group_by_modality_suffix(files, expected_channels)
        if grouped is not None:
            groups += list(grouped.items())
        else:
            groups += [(_strip_image_extension(os.path.basename(f)), [f]) for f in files]
    return os.path.basename(source.rstrip(os.sep)), groups


def _read_header(path):
    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    reader.ReadImageInformation()
    return reader


def _inspect_case(case_id, files, channels_wanted, expected_channels):
    """Case from its files' headers, or (None, reason) for a file that cannot be a 3D case.

    Raises PrepareError on a channel-count mismatch (a user error that skipping would hide).
    """
    available = []
    spacing = size = None
    for path in files:
        try:
            header = _read_header(path)
        except RuntimeError as err:
            return None, (path, "unreadable: %s" % _error_text(err))
        dim, shape = header.GetDimension(), header.GetSize()
        components = header.GetNumberOfComponents()
        if dim == 4 and components == 1:
            available += [Channel(path, t, "4d") for t in range(shape[3])]
        elif dim == 3:
            available += [Channel(path)] if components == 1 else \
                [Channel(path, c, "component") for c in range(components)]
        else:
            return None, (path, "%dD image with %d component(s); a 3D volume (or 4D: 3D x channels) is needed"
                          % (dim, components))
        if min(shape[:3]) < 2:
            return None, (path, "a single slice (size %s), not a 3D volume" % (tuple(shape[:3]),))
        if spacing is None:
            spacing, size = tuple(header.GetSpacing()[:3]), tuple(int(s) for s in shape[:3])
    if channels_wanted is not None:
        bad = [c for c in channels_wanted if not 0 <= c < len(available)]
        if bad:
            raise PrepareError("%s has %d channel(s); --channels %s asks for channel(s) %s that it does not have"
                               % (", ".join(files), len(available), " ".join(map(str, channels_wanted)), bad))
        available = [available[c] for c in channels_wanted]
    if len(available) != expected_channels:
        raise PrepareError("%s has %d channel(s) but the target task has %d modalities; pick channels from "
                           "multi-channel sources with --channels (0-based indices, in the target's order)"
                           % (", ".join(files), len(available), expected_channels))
    return Case(case_id, available, spacing, size), None


def _describe_channel(channel: Channel):
    """'x.nii.gz' for a whole file, 'x.nii.gz[1]' for volume/component 1 of a 4D/multi-component file."""
    name = os.path.basename(channel.path)
    return name if channel.index is None else "%s[%d]" % (name, channel.index)


def _error_text(err):
    """The informative end of an error message (ITK puts its reason in the last one or two lines)."""
    text = str(err).split("sitk::ERROR:")[-1]    # drop SimpleITK's source-file prefix
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " ".join(lines[-2:])[-300:] if lines else type(err).__name__


def discover_cases(sources: Sequence[str], expected_channels: int, channels: Optional[Sequence[int]] = None,
                   exclude_folder: Optional[str] = None, target_modalities: Sequence[str] = ()) -> Discovery:
    """Find the cases in ``sources`` from file headers only.

    Case ids are ``<source tag>_<file stem>``: the tag is the source folder's name (for a single file, its
    folder's name); sources with equal names get a short hash of their absolute path appended, so ids are
    unique across sources and stay the same between runs.
    """
    discovery = Discovery()
    per_source = []
    for source in sources:
        source = str(source)
        if exclude_folder and os.path.commonpath([os.path.abspath(source), os.path.abspath(exclude_folder)]) \
                == os.path.abspath(exclude_folder):
            raise PrepareError("source %s lies inside the output task %s" % (source, exclude_folder))
        tag, groups = _source_groups(source, expected_channels, discovery, channels, target_modalities)
        per_source.append((os.path.abspath(source), _safe(tag) or "src", groups))

    tag_counts = defaultdict(int)
    for _, tag, _ in per_source:
        tag_counts[tag] += 1
    used_ids, seen_files = set(), set()
    for source, tag, groups in per_source:
        if tag_counts[tag] > 1:
            tag = "%s-%s" % (tag, hashlib.sha1(source.encode()).hexdigest()[:6])
        for stem, files in groups:
            if tuple(files) in seen_files:   # the same file given twice (e.g. a folder and a file inside it)
                continue
            seen_files.add(tuple(files))
            case_id, n = "%s_%s" % (tag, _safe(stem)), 2
            while case_id in used_ids:
                case_id, n = "%s_%s_%d" % (tag, _safe(stem), n), n + 1
            used_ids.add(case_id)
            case, problem = _inspect_case(case_id, files, channels, expected_channels)
            if case is None:
                discovery.skipped.append({"file": problem[0], "reason": problem[1]})
            else:
                discovery.cases.append(case)
    return discovery


# ----------------------------------------------------------------------------------------------------------------
# one case: raw NIfTI -> nnU-Net cropping -> nnU-Net preprocessing with the target's preprocessor
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class CaseJob:
    """Everything a worker process needs to prepare one case."""
    case: Case
    raw_images_dir: str
    cropped_dir: str
    stage_dir: str
    preprocessor: object
    target_spacing: Sequence[float]
    all_classes: Sequence[int]
    use_mask_for_norm: dict


def case_outputs(case_id, stage_dir):
    """The files whose existence means the case is finished (nnU-Net writes the .pkl after the .npz)."""
    return os.path.join(stage_dir, case_id + ".npz"), os.path.join(stage_dir, case_id + ".pkl")


def nifti_truncation(path):
    """Why a .nii/.nii.gz file holds fewer voxel bytes than its header promises, or None if it is complete.

    ITK's NIfTI reader silently fills a truncated file (an interrupted download) with zeros, so the byte
    count is checked here: expected = vox_offset + prod(dim[1..dim[0]]) * bitpix / 8, read from the NIfTI-1
    (348-byte) or NIfTI-2 (540-byte) header, against the length of the (decompressed) stream.
    """
    import gzip
    import struct
    opener = gzip.open if path.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            header = f.read(540)
            total = len(header)
            while True:
                chunk = f.read(1 << 22)
                if not chunk:
                    break
                total += len(chunk)
    except (EOFError, OSError, gzip.BadGzipFile) as err:
        return "truncated or damaged file (%s)" % _error_text(err)
    for endian in "<>":
        if len(header) >= 348 and struct.unpack(endian + "i", header[:4])[0] == 348:
            dims = struct.unpack(endian + "8h", header[40:56])
            bitpix = struct.unpack(endian + "h", header[72:74])[0]
            vox_offset = int(struct.unpack(endian + "f", header[108:112])[0])
            break
        if len(header) >= 540 and struct.unpack(endian + "i", header[:4])[0] == 540:
            dims = struct.unpack(endian + "8q", header[16:80])
            bitpix = struct.unpack(endian + "h", header[14:16])[0]
            vox_offset = struct.unpack(endian + "q", header[168:176])[0]
            break
    else:
        return "not a NIfTI-1/NIfTI-2 header"
    voxels = 1
    for d in dims[1:1 + max(0, min(dims[0], 7))]:
        voxels *= max(int(d), 1)
    expected = max(vox_offset, 348) + voxels * bitpix // 8
    if total < expected:
        return "truncated: %d of the %d bytes its header announces" % (total, expected)
    return None


def source_signature(case: Case):
    """What a prepared case was made from: every channel's file, size, modification time and index.

    Stored in the case's properties; a re-run redoes a case whose signature changed (a replaced source
    file, other --channels) instead of trusting its old output.
    """
    signature = []
    for channel in case.channels:
        stat = os.stat(channel.path)
        signature.append([channel.path, channel.kind, channel.index, stat.st_size, stat.st_mtime_ns])
    return signature


def is_finished(case: Case, stage_dir):
    """True when the case's preprocessed .npz and .pkl exist and were made from the same source files."""
    npz, pkl = case_outputs(case.case_id, stage_dir)
    if not (os.path.isfile(npz) and os.path.isfile(pkl)):
        return False
    try:
        with open(pkl, "rb") as f:
            stored = pickle.load(f).get("genesis_source")
    except Exception:   # an unreadable properties file means an unfinished case
        return False
    return stored == source_signature(case)


def _channel_image(channel: Channel):
    image = sitk.ReadImage(channel.path)
    if channel.kind == "4d":
        size = list(image.GetSize())
        return sitk.Extract(image, size[:3] + [0], [0, 0, 0, channel.index])
    if channel.kind == "component":
        return sitk.VectorIndexSelectionCast(image, channel.index)
    return image


def write_raw_channels(case: Case, raw_images_dir):
    """Write the case as ``<case_id>_XXXX.nii.gz`` files (a 3D .nii.gz file is copied byte for byte)."""
    written = []
    for path in case.files:
        problem = nifti_truncation(path) if path.lower().endswith((".nii", ".nii.gz")) else None
        if problem is not None:
            raise PrepareError(problem)
    for i, channel in enumerate(case.channels):
        out = os.path.join(raw_images_dir, "%s_%04d.nii.gz" % (case.case_id, i))
        if channel.kind == "file" and channel.path.lower().endswith(".nii.gz"):
            shutil.copyfile(channel.path, out)
        else:
            sitk.WriteImage(_channel_image(channel), out, True)
        written.append(out)
    return written


def _remove_unpacked(case_id, stage_dir):
    """Delete the .npy that nnU-Net's trainer unpacked from an earlier .npz of this case.

    nnU-Net unpacks ``x.npz`` to ``x.npy`` only when the .npy is missing, so a stale .npy would silently
    replace the newly prepared data in training.
    """
    npy = os.path.join(stage_dir, case_id + ".npy")
    if os.path.isfile(npy):
        os.remove(npy)


def prepare_case(job: CaseJob):
    """Raw files, cropped npz/pkl and preprocessed npz/pkl of one case; returns (case_id, error or None).

    Cropping is nnU-Net's ImageCropper with seg=None (its nonzero mask becomes the seg channel); resampling
    and normalisation are ``preprocessor._run_internal``, i.e. exactly what nnU-Net ran on the target.
    """
    from nnunet.preprocessing.cropping import ImageCropper
    import numpy as np
    case = job.case
    produced = []
    try:
        with contextlib.redirect_stdout(io.StringIO()):   # nnU-Net prints several lines per case
            raw_files = write_raw_channels(case, job.raw_images_dir)
            produced += raw_files
            data, seg, properties = ImageCropper.crop_from_list_of_files(raw_files, None)
            properties["use_nonzero_mask_for_norm"] = job.use_mask_for_norm
            properties["genesis_source"] = source_signature(case)
            cropped_npz = os.path.join(job.cropped_dir, case.case_id + ".npz")
            cropped_pkl = os.path.join(job.cropped_dir, case.case_id + ".pkl")
            produced += [cropped_npz, cropped_pkl]
            np.savez_compressed(cropped_npz, data=np.vstack((data, seg)))
            with open(cropped_pkl, "wb") as f:
                pickle.dump(properties, f)
            produced += list(case_outputs(case.case_id, job.stage_dir))
            _remove_unpacked(case.case_id, job.stage_dir)
            job.preprocessor._run_internal(job.target_spacing, case.case_id, job.stage_dir, job.cropped_dir,
                                           None, job.all_classes)
        return case.case_id, None
    except Exception as err:  # one bad file must not stop the others; it is reported instead
        for path in produced:
            if os.path.isfile(path):
                os.remove(path)
        reason = _error_text(err) if isinstance(err, PrepareError) else \
            "%s: %s" % (type(err).__name__, _error_text(err))
        return case.case_id, reason


def _run_jobs(jobs, num_processes):
    from tqdm import tqdm
    results = []
    if num_processes <= 1 or len(jobs) <= 1:
        for job in tqdm(jobs, desc="preparing cases", unit="case"):
            results.append(prepare_case(job))
        return results
    with Pool(min(num_processes, len(jobs))) as pool:
        for result in tqdm(pool.imap_unordered(prepare_case, jobs), total=len(jobs), desc="preparing cases",
                           unit="case"):
            results.append(result)
    return results


# ----------------------------------------------------------------------------------------------------------------
# the whole task
# ----------------------------------------------------------------------------------------------------------------

def _find_preprocessor(plans):
    """Instantiate the preprocessor class the target was preprocessed with, as nnU-Net's planner does."""
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
        ("name", task_name.split("_", 1)[1]),
        ("description", "Unlabeled volumes for Models Genesis pretraining, preprocessed with the plans of %s. "
                        "imagesTr has no labels (no labelsTr)." % target_task_name),
        ("reference", "nnunet-genesis"), ("licence", "see the sources"), ("release", "0.0"),
        ("tensorImageSize", "4D" if len(target_dataset_json["modality"]) > 1 else "3D"),
        ("modality", target_dataset_json["modality"]),
        ("labels", {"0": "background"}),
        ("numTraining", len(case_ids)), ("numTest", 0),
        ("training", [{"image": "./imagesTr/%s.nii.gz" % c} for c in case_ids]),
        ("test", []),
    ])


def _write_json(obj, path):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, default=str)


def next_command(task_name, plans_identifier=DEFAULT_PLANS_IDENTIFIER):
    command = "nnUNet_train 3d_fullres %s %s all" % (PRETRAIN_TRAINER, task_name)
    if plans_identifier != DEFAULT_PLANS_IDENTIFIER:
        command += " -p " + plans_identifier
    return command


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
    raw_base, cropped_base, preprocessed_base = _nnunet_folders()
    target_task_name = resolve_task_name(target)
    target_plans = load_target_plans(target_task_name, plans_identifier)
    task_name = pretraining_task_name(task_id, target_task_name)
    if int(task_id) == int(target_task_name[4:7]):
        raise PrepareError("output task id %s is the target's own id" % task_id)
    for base in (raw_base, preprocessed_base):
        clash = [d for d in os.listdir(base) if d.startswith("Task%03d_" % int(task_id)) and d != task_name]
        if clash:
            raise PrepareError("task id %03d is already used by %s in %s; choose another -o"
                               % (int(task_id), clash[0], base))

    num_modalities = int(target_plans["num_modalities"])
    target_modalities = [target_plans["modalities"][i] for i in sorted(target_plans["modalities"])]
    discovery = discover_cases(sources, num_modalities, channels, exclude_folder=os.path.join(raw_base, task_name),
                               target_modalities=target_modalities)
    if not discovery.cases:
        _print_skipped(discovery.skipped)
        raise PrepareError("nothing usable in the sources (%d file(s) skipped): %s"
                           % (len(discovery.skipped), ", ".join(sources)))

    raw_dir = os.path.join(raw_base, task_name)
    cropped_dir = os.path.join(cropped_base, task_name)
    preprocessed_dir = os.path.join(preprocessed_base, task_name)
    stage = max(target_plans["plans_per_stage"].keys())
    stage_dir = os.path.join(preprocessed_dir, "%s_stage%d" % (target_plans["data_identifier"], stage))
    for folder in (os.path.join(raw_dir, "imagesTr"), cropped_dir, stage_dir):
        os.makedirs(folder, exist_ok=True)

    preprocessor = _find_preprocessor(target_plans)
    target_spacing = target_plans["plans_per_stage"][stage]["current_spacing"]
    done_before = set() if overwrite else {c.case_id for c in discovery.cases if is_finished(c, stage_dir)}
    jobs = [CaseJob(c, os.path.join(raw_dir, "imagesTr"), cropped_dir, stage_dir, preprocessor, target_spacing,
                    target_plans["all_classes"], target_plans["use_mask_for_norm"])
            for c in discovery.cases if c.case_id not in done_before]
    print("%s: %d case(s) to prepare, %d already prepared, %d file(s) skipped"
          % (task_name, len(jobs), len(done_before), len(discovery.skipped)))
    failures = dict((cid, err) for cid, err in _run_jobs(jobs, num_processes) if err is not None)

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
    known = {c["case_id"] for c in cases}
    stale = sorted(f[:-4] for f in os.listdir(stage_dir) if f.endswith(".npz") and f[:-4] not in known)
    warnings = list(discovery.warnings)
    if stale:
        warnings.append("%d preprocessed case(s) in %s come from an earlier run with other sources and will be "
                        "used for training too: %s" % (len(stale), stage_dir, ", ".join(stale)))
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
        _write_json(report, os.path.join(raw_dir, REPORT_NAME))
        _print_skipped(skipped)
        raise PrepareError("nothing usable in the sources: every case failed (see %s)"
                           % os.path.join(raw_dir, REPORT_NAME))

    _write_task_files(report, target_plans, target_task_name, plans_identifier, cropped_dir, preprocessed_dir,
                      raw_dir, preprocessed_base)
    _print_summary(report)
    return dict(report)


def _write_task_files(report, target_plans, target_task_name, plans_identifier, cropped_dir, preprocessed_dir,
                      raw_dir, preprocessed_base):
    """dataset.json, dataset_properties.pkl, plans (3D, and 2D if the target has them) and the report."""
    target_dir = os.path.join(preprocessed_base, target_task_name)
    with open(os.path.join(target_dir, "dataset.json")) as f:
        target_dataset_json = json.load(f)
    all_ids = sorted({c["case_id"] for c in report["cases"]} | set(report["stale_cases"]))
    dataset_json = _dataset_json(report["task_name"], target_task_name, target_dataset_json, all_ids)
    cropped_npz = [os.path.join(cropped_dir, c + ".npz") for c in all_ids]
    for folder in (raw_dir, preprocessed_dir):
        _write_json(dataset_json, os.path.join(folder, "dataset.json"))
    # the intensity properties used for normalisation are the target's: keep the fingerprint they came from
    with open(os.path.join(preprocessed_dir, "dataset_properties.pkl"), "wb") as f:
        pickle.dump(target_plans["dataset_properties"], f)
    for suffix in ("_plans_3D.pkl", "_plans_2D.pkl"):
        target_plans_file = os.path.join(target_dir, plans_identifier + suffix)
        if not os.path.isfile(target_plans_file):
            continue
        with open(target_plans_file, "rb") as f:
            plans = pickle.load(f)
        plans = pretraining_plans(plans, preprocessed_dir, cropped_npz, target_task_name, target_plans_file)
        with open(os.path.join(preprocessed_dir, plans_identifier + suffix), "wb") as f:
            pickle.dump(plans, f)
    for folder in (raw_dir, preprocessed_dir):
        _write_json(report, os.path.join(folder, REPORT_NAME))


def _print_skipped(skipped):
    for item in skipped:
        print("  skipped %s: %s" % (item["file"], item["reason"]))


def _print_summary(report):
    new = sum(c["status"] == "prepared" for c in report["cases"])
    print("\n%s: %d case(s) ready (%d new, %d already prepared), %d skipped"
          % (report["task_name"], len(report["cases"]), new, len(report["cases"]) - new, len(report["skipped"])))
    _print_skipped(report["skipped"])
    for warning in report["warnings"]:
        print("  warning: " + warning)
    print("report: %s" % os.path.join(report["preprocessed_dir"], REPORT_NAME))
    print("next, pretrain with:\n  %s" % report["next_command"])
