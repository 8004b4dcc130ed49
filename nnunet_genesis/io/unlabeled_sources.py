"""Finding the cases of ``nnUNet_genesis_prepare``'s sources, from file headers only (nothing is read in full).

A source is a Decathlon task folder (``imagesTr`` without its labels, ``imagesTs``; the files its
``dataset.json`` lists), an nnU-Net raw task folder (``<case>_XXXX.nii.gz`` per channel), a plain folder of
volumes or a single file, in any format SimpleITK reads.  Each case gets a stable id and its channels in the
target's modality order; files that cannot be a 3D case are skipped with the reason.  Preparing the cases:
:mod:`nnunet_genesis.nnunet_v1.prepare_cases`; the task they make: :mod:`nnunet_genesis.nnunet_v1.prepare`.
"""
import hashlib
import json
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import SimpleITK as sitk

from nnunet_genesis.io import raw_dataset
from nnunet_genesis.io.integrity import error_text

IMAGE_EXTENSIONS = (".nii.gz", ".nii", ".mhd", ".mha", ".nrrd", ".nhdr")
_MODALITY_SUFFIX = raw_dataset.CHANNEL_FILE   # CASE_0000.nii.gz


class PrepareError(ValueError):
    """Bad input that stops the preparation (the message names the file and the fault).

    The error of the whole preparation (discovery, cases, task); defined here, in the first of its modules."""


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
        if _strip_image_extension(name) is None:
            continue
        if not os.path.isfile(path):
            if os.path.islink(path):
                discovery.skipped.append({"file": path, "reason": "a broken or looping link, no file behind it"})
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
    json_file = raw_dataset.dataset_json(task_folder)
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
    if os.path.basename(source) == raw_dataset.LABELS_TR:
        raise PrepareError("source %s holds label maps, not images: give the task folder or imagesTr/imagesTs"
                           % source)

    task_subfolders = [s for s in raw_dataset.IMAGE_FOLDERS if os.path.isdir(os.path.join(source, s))]
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


_DETACHED_DATA_KEYS = {".mhd": "elementdatafile", ".nhdr": "datafile"}   # MetaImage, detached NRRD header


def _bytes_per_value(pixel_id) -> Optional[int]:
    """Bytes of one value of a SimpleITK pixel type (scalar or vector), None for others (complex, labels)."""
    for names, size in ((("UInt8", "Int8"), 1), (("UInt16", "Int16"), 2), (("UInt32", "Int32", "Float32"), 4),
                        (("UInt64", "Int64", "Float64"), 8)):
        for name in names:
            if pixel_id in (getattr(sitk, "sitk" + name, None), getattr(sitk, "sitkVector" + name, None)):
                return size
    return None


def detached_data_fault(path, header) -> Optional[str]:
    """For a header whose voxels lie in another file (.mhd -> ElementDataFile, .nhdr -> 'data file'): why that
    file cannot hold the volume (missing, or fewer bytes than the header announces uncompressed), naming it;
    None when it is fine or the header holds its data (LOCAL), lists several files or is compressed."""
    key = _DETACHED_DATA_KEYS.get(os.path.splitext(path)[1].lower())
    if key is None:
        return None
    entries = {}
    with open(path, "rb") as f:
        for raw_line in f.read(65536).decode("latin-1").splitlines():
            for separator in ("=", ":"):
                if separator in raw_line:
                    name, value = raw_line.split(separator, 1)
                    entries.setdefault(name.strip().lower().replace(" ", ""), value.strip())
                    break
    data = entries.get(key)
    if not data or data.upper() in ("LOCAL", "LIST") or "%" in data or " " in data:
        return None
    data_file = os.path.join(os.path.dirname(path), data)
    if not os.path.isfile(data_file):
        return "its data file %s is missing (the header %s names it)" % (data_file, os.path.basename(path))
    compressed = entries.get("compresseddata", "false").lower() == "true" or \
        entries.get("encoding", "raw").lower() not in ("raw", "")
    if not compressed:
        bytes_per_value = _bytes_per_value(header.GetPixelID())
        if bytes_per_value:
            expected = bytes_per_value * header.GetNumberOfComponents()
            for extent in header.GetSize():
                expected *= int(extent)
            if os.path.getsize(data_file) < expected:
                return "its data file %s is cut short (%d of %d bytes)" % (data_file, os.path.getsize(data_file),
                                                                         expected)
    return None


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
            return None, (path, "unreadable: %s" % error_text(err))
        detached = detached_data_fault(path, header)
        if detached is not None:
            return None, (path, detached)
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
