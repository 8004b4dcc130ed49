"""Atomic file writes: a temporary file in the same folder, renamed over the target.

A failed write (an exception, a full disk) leaves the previous file intact and no temporary file
behind; readers never see a half-written file. ``os.replace`` is atomic within one file system,
which the same folder guarantees. A failure is raised as :class:`WriteError` naming the target
(not the temporary name) and the cause, which the command-line entry points print as one line.
The temporary name keeps the target's extension, so writers that pick a format from it
(matplotlib's ``savefig``, SimpleITK's ``WriteImage`` for '.nii.gz') still do.
"""
import errno
import json
import os
import pickle
from typing import Callable


def _extension(name: str) -> str:
    """The file's extension, compound for compressed files ('.nii.gz'), so ITK still recognises the format."""
    stem, ext = os.path.splitext(name)
    if ext.lower() in (".gz", ".bz2", ".xz"):
        ext = os.path.splitext(stem)[1] + ext
    return ext


class WriteError(OSError):
    """A file could not be written: ``path`` is the file the user asked for (never our temporary name),
    ``cause`` the operating system's reason ("No space left on device", "File too large", ...).
    ``str()`` is the one line the command-line entry points print: "cannot write PATH: CAUSE"."""

    def __init__(self, path: str, cause: str, errno_: int = None):
        super().__init__(errno_, cause, path)
        self.path, self.cause = path, cause

    def __str__(self):
        return "cannot write %s: %s" % (self.path, self.cause)

    def __reduce__(self):
        return (type(self), (self.path, self.cause, self.errno))


#: errno values that mean "the file system refused the write" (full disk, file-size limit, read-only, quota)
WRITE_FAILURE_ERRNOS = frozenset([errno.ENOSPC, errno.EFBIG, errno.EROFS, errno.EDQUOT])


def is_write_failure(error: BaseException) -> bool:
    return isinstance(error, WriteError) or (isinstance(error, OSError) and error.errno in WRITE_FAILURE_ERRNOS)


def as_write_error(error: OSError, path: str) -> "WriteError":
    """``error`` as a WriteError naming ``path`` (or the file the error names, if any)."""
    if isinstance(error, WriteError):
        return error
    return WriteError(getattr(error, "filename2", None) or error.filename or path, _cause(error), error.errno)


def _cause(error: OSError, tmp: str = None) -> str:
    cause = error.strerror or str(error) or type(error).__name__
    names = [str(n) for n in (getattr(error, "filename", None), getattr(error, "filename2", None)) if n]
    if tmp is not None and names and not any(os.path.abspath(n) == os.path.abspath(tmp) for n in names):
        cause = "%s: %s" % (names[0], cause)      # e.g. a source file that could not be read while writing
    return cause


def make_dirs(path: str) -> str:
    """``os.makedirs(path, exist_ok=True)``; WriteError naming ``path`` when it cannot be created."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as error:
        raise WriteError(path, _cause(error), error.errno) from error
    if not os.path.isdir(path):
        raise WriteError(path, "exists and is not a folder")
    return path


def atomic_write(path: str, write: Callable[[str], None]) -> str:
    """Call ``write(temporary_path)``, then rename the result over ``path``; returns ``path``.

    An OSError (full disk, file-size limit, missing or read-only folder) becomes WriteError naming
    ``path``; the temporary file is removed and an earlier file at ``path`` is left untouched.
    """
    directory, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(directory, ".%s.%d.tmp%s" % (name, os.getpid(), _extension(name)))
    try:
        write(tmp)
        os.replace(tmp, path)
    except WriteError:
        raise
    except OSError as error:
        raise WriteError(path, _cause(error, tmp), error.errno) from error
    finally:
        try:
            if os.path.lexists(tmp):
                os.remove(tmp)
        except OSError:   # e.g. the folder vanished: the error above is the one to report
            pass
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
