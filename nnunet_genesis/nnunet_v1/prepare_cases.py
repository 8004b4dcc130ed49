"""Preparing one case of ``nnUNet_genesis_prepare``: raw NIfTI channels, then nnU-Net's own cropping and
preprocessing with the target's preprocessor, so the case ends as nnU-Net's ``.npz``/``.pkl`` pair.

Follows nnU-Net 1.7.1's code, not a copy of it: cropping is ``ImageCropper.crop_from_list_of_files``
(``nnunet/preprocessing/cropping.py``) with ``seg=None``, saved as ``ImageCropper.load_crop_save_case`` saves
it (``np.vstack((data, seg))`` in an ``.npz``, the properties in a ``.pkl``); resampling and normalisation are
the target's preprocessor's ``_run_internal`` (``nnunet/preprocessing/preprocessing.py``), the step
``GenericPreprocessor.run`` runs per case.  It departs in what is done per case: a case is checked, redone or
skipped on its own (a re-run keeps finished cases), and one bad file is reported instead of stopping the rest.
"""
import contextlib
import io
import math
import os
import shutil
from dataclasses import dataclass
from multiprocessing import Pool
from typing import Sequence

import SimpleITK as sitk

from nnunet_genesis.io import raw_dataset
from nnunet_genesis.io import safe_pickle
from nnunet_genesis.io.atomic import as_write_error, atomic_write, is_write_failure, write_pickle_atomic
from nnunet_genesis.io.integrity import error_text, nifti_truncation, npz_problem
from nnunet_genesis.io.unlabeled_sources import Case, Channel, PrepareError


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


def unfinished_reason(case: Case, stage_dir):
    """None when the case is finished, else why not ("missing", or the damaged file and its fault).

    Finished means verified by content, not by existence: the .pkl reads and names the same source files,
    and the .npz reads to the end of every array (an interrupted --overwrite or a file damaged later leaves
    a .npz that exists but fails at training start-up with numpy's "EOF: reading array data").
    """
    npz, pkl = case_outputs(case.case_id, stage_dir)
    if not (os.path.isfile(npz) and os.path.isfile(pkl)):
        return "missing"
    try:
        stored = safe_pickle.load(pkl).get("genesis_source")
    except Exception as err:   # an unreadable properties file means an unfinished case
        return "%s: unreadable (%s)" % (pkl, type(err).__name__)
    if stored != source_signature(case):
        return "sources changed"
    problem = npz_problem(npz)
    return None if problem is None else "%s: %s" % (npz, problem)


def is_finished(case: Case, stage_dir):
    """True when the case's preprocessed .npz and .pkl are complete and were made from the same sources."""
    return unfinished_reason(case, stage_dir) is None


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
        out = os.path.join(raw_images_dir, raw_dataset.channel_file_name(case.case_id, i))
        if channel.kind == "file" and channel.path.lower().endswith(".nii.gz"):
            atomic_write(out, lambda tmp: shutil.copyfile(channel.path, tmp))
        else:
            image = _channel_image(channel)
            atomic_write(out, lambda tmp: sitk.WriteImage(image, tmp, True))
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


def preprocess_atomically(job: CaseJob, case_id: str) -> None:
    """nnU-Net's ``preprocessor._run_internal`` for one case, made atomic.

    nnU-Net (``nnunet/preprocessing/preprocessing.py``, ``GenericPreprocessor._run_internal``) writes
    ``<case>.npz`` then ``<case>.pkl`` straight into the stage folder, so an interrupted run leaves a cut
    ``.npz``. Here it writes into a temporary folder next to the stage folder (same file system), and the
    two files are renamed into place, the ``.pkl`` last (nnU-Net's own "finished" order). A failure leaves
    the stage folder as it was and removes the temporary folder.
    """
    import tempfile
    parent = os.path.dirname(os.path.abspath(job.stage_dir))
    tmp_stage = tempfile.mkdtemp(prefix=".preparing_%s_" % case_id, dir=parent)
    try:
        job.preprocessor._run_internal(job.target_spacing, case_id, tmp_stage, job.cropped_dir, None,
                                       job.all_classes)
        for written, final in zip(case_outputs(case_id, tmp_stage), case_outputs(case_id, job.stage_dir)):
            os.replace(written, final)
    finally:
        shutil.rmtree(tmp_stage, ignore_errors=True)


MAX_RESAMPLED_VOXELS = 2 ** 31   # a case larger than this at the target spacing is a wrong spacing, not a scan


def check_resampled_size(case: Case, target_spacing) -> None:
    """PrepareError (the report names the file) when the case, resampled to the target spacing (array order z, y, x as
    nnU-Net's ``current_spacing``), would have no voxel along an axis or more than MAX_RESAMPLED_VOXELS: its
    header's spacing is wrong (1e-6 mm or 1000 mm), and nnU-Net would write an empty case or run out of memory."""
    shape = [size * spacing / float(target)
             for size, spacing, target in zip(case.size[::-1], case.spacing[::-1], target_spacing)]
    if min(shape) < 1 or math.prod(shape) > MAX_RESAMPLED_VOXELS:
        raise PrepareError("size %s at spacing %s mm would be %s voxels at the target spacing %s mm; "
                           "its spacing is implausible" % (tuple(case.size),
                                                           tuple(round(s, 6) for s in case.spacing),
                                                           " x ".join("%.3g" % v for v in shape[::-1]),
                                                           tuple(float(t) for t in target_spacing)[::-1]))


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
        check_resampled_size(case, job.target_spacing)
        with contextlib.redirect_stdout(io.StringIO()):   # nnU-Net prints several lines per case
            raw_files = write_raw_channels(case, job.raw_images_dir)
            produced += raw_files
            data, seg, properties = ImageCropper.crop_from_list_of_files(raw_files, None)
            properties["use_nonzero_mask_for_norm"] = job.use_mask_for_norm
            properties["genesis_source"] = source_signature(case)
            cropped_npz = os.path.join(job.cropped_dir, case.case_id + ".npz")
            cropped_pkl = os.path.join(job.cropped_dir, case.case_id + ".pkl")
            produced += [cropped_npz, cropped_pkl]
            cropped = np.vstack((data, seg))
            atomic_write(cropped_npz, lambda tmp: np.savez_compressed(tmp, data=cropped))
            write_pickle_atomic(properties, cropped_pkl)
            produced += list(case_outputs(case.case_id, job.stage_dir))
            _remove_unpacked(case.case_id, job.stage_dir)
            preprocess_atomically(job, case.case_id)
        return case.case_id, None
    except Exception as err:  # one bad file must not stop the others; it is reported instead
        for path in produced:
            if os.path.isfile(path):
                os.remove(path)
        if is_write_failure(err):   # no space, size limit, read-only: not the file's fault; it would fail every case
            raise as_write_error(err, job.stage_dir) from None
        reason = error_text(err) if isinstance(err, PrepareError) else \
            "%s: %s" % (type(err).__name__, error_text(err))
        if isinstance(err, ValueError) and "zero-size array" in str(err):   # nnU-Net's crop of an empty mask
            reason = "no non-zero, finite voxel (all 0 or NaN): nothing to crop to, nothing to pretrain on"
        return case.case_id, reason


def run_case_jobs(jobs, num_processes, worker=prepare_case):
    """``worker(job)`` for every job (in ``num_processes`` processes) with a progress bar; the results in
    completion order.  ``worker`` is v1's :func:`prepare_case` unless another nnU-Net version's is given."""
    from tqdm import tqdm
    results = []
    if num_processes <= 1 or len(jobs) <= 1:
        for job in tqdm(jobs, desc="preparing cases", unit="case"):
            results.append(worker(job))
        return results
    with Pool(min(num_processes, len(jobs))) as pool:
        for result in tqdm(pool.imap_unordered(worker, jobs), total=len(jobs), desc="preparing cases",
                           unit="case"):
            results.append(result)
    return results
