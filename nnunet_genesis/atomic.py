"""Atomic file writes: a temporary file in the same folder, renamed over the target.

A failed write (an exception, a full disk) leaves the previous file intact and no temporary file
behind; readers never see a half-written file. ``os.replace`` is atomic within one file system,
which the same folder guarantees. The temporary name keeps the target's extension, so writers that
pick a format from it (matplotlib's ``savefig``) still do.
"""
import json
import os
import pickle
from typing import Callable


def atomic_write(path: str, write: Callable[[str], None]) -> str:
    """Call ``write(temporary_path)``, then rename the result over ``path``; returns ``path``."""
    directory, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(directory, ".%s.%d.tmp%s" % (name, os.getpid(), os.path.splitext(name)[1]))
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def _write_with(mode: str, dump: Callable) -> Callable[[str], None]:
    def write(tmp):
        with open(tmp, mode) as f:
            dump(f)
    return write


def write_json_atomic(data, path: str) -> str:
    """``json.dump(data, indent=2)`` to ``path``, atomically."""
    return atomic_write(path, _write_with("w", lambda f: json.dump(data, f, indent=2)))


def write_text_atomic(text: str, path: str) -> str:
    return atomic_write(path, _write_with("w", lambda f: f.write(text)))


def write_pickle_atomic(obj, path: str) -> str:
    return atomic_write(path, _write_with("wb", lambda f: pickle.dump(obj, f)))


def save_figure_atomic(figure, path: str, **savefig_kwargs) -> str:
    """``figure.savefig(path)``, atomically."""
    return atomic_write(path, lambda tmp: figure.savefig(tmp, **savefig_kwargs))
