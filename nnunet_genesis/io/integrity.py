"""Is a file complete? One owner for the checks that readers cannot be trusted to make.

* ITK's NIfTI reader (and so SimpleITK) silently fills a truncated file -- an interrupted download or
  copy, a gzip stream cut short -- with zeros: the image "reads" and scores. ``nifti_truncation`` reads
  the whole (decompressed) stream and compares its length with what the header announces.
* A ``.npz`` (nnU-Net's preprocessed cases) cut short or damaged opens -- the zip directory may be
  intact -- and only fails when an array is read ("EOF: reading array data"), at training start-up,
  naming no case. ``npz_problem`` reads every array to its end.

Both return ``None`` for a complete file and otherwise a short reason ("truncated: ..."), which callers
put after the file's path in their one-line messages.
"""
import gzip
import struct
import zipfile
from typing import Optional


def error_text(err):
    """The informative end of an exception's message, one line (ITK puts its reason in the last one or
    two lines; SimpleITK's source-file prefix is dropped)."""
    text = str(err).split("sitk::ERROR:")[-1]
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " ".join(lines[-2:])[-300:] if lines else type(err).__name__


def nifti_truncation(path) -> Optional[str]:
    """Why a .nii/.nii.gz file holds fewer voxel bytes than its header promises, or None if it is complete.

    ITK's NIfTI reader silently fills a truncated file (an interrupted download) with zeros, so the byte
    count is checked here: expected = vox_offset + prod(dim[1..dim[0]]) * bitpix / 8, read from the NIfTI-1
    (348-byte) or NIfTI-2 (540-byte) header, against the length of the (decompressed) stream. A gzip stream
    that ends early or fails its CRC is reported as well.
    """
    path = str(path)
    try:
        with open(path, "rb") as f:
            compressed = f.read(2) == b"\x1f\x8b"    # by content: a plain file may be misnamed .gz
    except OSError as err:
        return "cannot be opened (%s)" % error_text(err)
    opener = gzip.open if compressed else open
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
        return "truncated or damaged file (%s)" % error_text(err)
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


def image_file_problem(path) -> Optional[str]:
    """``nifti_truncation`` for .nii/.nii.gz files; None for other formats (their readers fail loudly)."""
    return nifti_truncation(path) if str(path).lower().endswith((".nii", ".nii.gz")) else None


def npz_problem(path) -> Optional[str]:
    """Why a .npz file cannot be read to its end (every array), or None if it can."""
    import numpy as np
    try:
        with np.load(str(path), allow_pickle=False) as npz:
            if not npz.files:
                return "damaged: holds no array"
            for key in npz.files:
                npz[key]   # decompresses and reads the whole array; a short file fails here
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError, RuntimeError) as err:
        return "truncated or damaged (%s: %s)" % (type(err).__name__, error_text(err))
    return None
