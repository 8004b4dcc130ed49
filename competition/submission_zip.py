"""The submission zip, written atomically and checked.

The zip stores every file byte-identical to its prediction, uncompressed (ZIP_STORED): a ``.nii.gz``
is already deflate-compressed, deflating it again gains nothing and costs time. It is written to a
temporary file beside the target (``nnunet_genesis.io.atomic``), its CRCs checked, then renamed into
place, so a reader never sees half a zip and a failed write leaves an earlier zip intact.
Predictions are only ever read.
"""
import os
import zipfile
from typing import Sequence, Tuple

from nnunet_genesis.io.atomic import atomic_write


def write_zip_atomically(entries: Sequence[Tuple[str, str]], out_zip: str) -> None:
    """Write ``entries`` [(name in the zip, source file)] into ``out_zip``, stored byte-identical
    (ZIP_STORED). The zip is built under a temporary name in the target folder
    (nnunet_genesis.io.atomic.atomic_write: same file system, so the rename is atomic), its CRCs and sizes
    checked against the sources, then renamed into place; on any failure the temporary file is removed
    and an earlier zip at ``out_zip`` is left as it was."""
    def write(tmp):
        with open(tmp, "w+b") as fh:
            # strict_timestamps=False: a file dated before 1980 (zip's epoch) must not abort the run.
            with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED, allowZip64=True,
                                 strict_timestamps=False) as archive:
                for name, source in entries:
                    archive.write(source, name)
            fh.flush()
            os.fsync(fh.fileno())
        _verify_zip(tmp, entries)

    atomic_write(out_zip, write)


def _verify_zip(path: str, entries: Sequence[Tuple[str, str]]) -> None:
    """The zip has exactly the planned names, each of its source's size and with an intact CRC
    (zipfile computed the CRC while reading the source, testzip recomputes it from the zip)."""
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        if names != [name for name, _ in entries]:
            raise RuntimeError("zip %s does not hold the planned entries" % path)
        for name, source in entries:
            if archive.getinfo(name).file_size != os.path.getsize(source):
                raise RuntimeError("%s changed size while it was being zipped" % source)
        bad = archive.testzip()
        if bad is not None:
            raise RuntimeError("zip entry %s of %s has a bad CRC" % (bad, path))
