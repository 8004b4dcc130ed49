"""Content fingerprints: what a result was made from, by content rather than by name or date.

A file replaced at the same path (new weights, re-drawn labels) keeps its name and may keep its date;
its SHA-256 changes. ``file_sha256`` reads the file in 4 MiB blocks (constant memory, ~0.5-1 GB/s);
``folder_fingerprint`` gives ``{file name: sha256}`` for the chosen files of one folder, the form in
which records store sets of files (the names say which cases, the hashes what they hold).
Standard library only.
"""
import hashlib
import os
from typing import Callable, Dict, Iterable, Optional

BLOCK = 1 << 22


def file_sha256(path: str) -> str:
    """Hex SHA-256 of the file's bytes (OSError if it cannot be read)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def files_sha256(paths: Iterable[str]) -> Dict[str, str]:
    """{base name: sha256} of each path."""
    return {os.path.basename(p): file_sha256(p) for p in paths}


def folder_fingerprint(folder: str, keep: Optional[Callable[[str], bool]] = None) -> Dict[str, str]:
    """{file name: sha256} of the plain files directly in ``folder`` whose name ``keep`` accepts (all when
    ``keep`` is None), sorted by name."""
    names = sorted(n for n in os.listdir(folder)
                   if os.path.isfile(os.path.join(folder, n)) and (keep is None or keep(n)))
    return {n: file_sha256(os.path.join(folder, n)) for n in names}


def short(digest: Optional[str], length: int = 12) -> str:
    """The first ``length`` hex digits, for messages ('none' for a missing digest)."""
    return digest[:length] if digest else "none"
