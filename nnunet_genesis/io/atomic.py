"""Atomic file writes: a temporary file in the same folder, renamed over the target; output sets written as
a whole (:class:`OutputSet`); outputs never inside inputs (:func:`refuse_output_inside_inputs`).

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
    if os.path.lexists(path) and not os.path.isdir(path):
        raise WriteError(path, "exists and is not a folder")
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


# ------------------------------------------------------------------------------------------------
# Output sets: several files that belong together (a report and its table, a summary and its PNGs)
# ------------------------------------------------------------------------------------------------

class OutputSet:
    """The files of one command's result, replaced together: all old or all new.

    Each file is first written under a temporary name beside its target (``path(name)`` gives that
    name, with the target's extension, to hand to any writer: ``savefig``, ``csv``, SimpleITK); nothing
    at the targets changes while the set is written, so a failed write (a full disk, ``ulimit -f``, an
    exception in the code that computes the next file) leaves the previous set exactly as it was and no
    temporary file behind. :meth:`commit` then moves each earlier file aside, renames each new file into
    place and only then deletes the earlier ones; a rename that fails rolls every target back. ``stale``
    names earlier members the new set may not write again (e.g. a preview of a distortion that is no
    longer scored): they are removed at the commit, so no earlier file survives beside a new set.

    Use it as a context manager (:func:`output_set`): the set is committed when the block ends without
    an exception and discarded otherwise. Names are relative to ``folder`` (subfolders allowed).
    """

    def __init__(self, folder: str, stale=()):
        self.folder = folder
        self.stale = [str(name) for name in stale]
        self._staged = {}   # name -> temporary path

    def target(self, name: str) -> str:
        return os.path.join(self.folder, name)

    def path(self, name: str) -> str:
        """The temporary path to write ``name`` to (created folders included); the target is untouched."""
        if name in self._staged:
            return self._staged[name]
        target = self.target(name)
        directory, base = os.path.split(os.path.abspath(target))
        make_dirs(directory)
        tmp = os.path.join(directory, ".%s.%d.set.tmp%s" % (base, os.getpid(), _extension(base)))
        self._staged[name] = tmp
        return tmp

    def write(self, name: str, write: Callable[[str], None]) -> str:
        """``write(temporary path)`` for the member ``name``; WriteError naming the target on failure."""
        tmp = self.path(name)
        try:
            write(tmp)
        except OSError as error:   # also a WriteError of a nested atomic write: it names our temporary file
            cause = error.cause if isinstance(error, WriteError) else _cause(error, tmp)
            _remove_quietly(tmp)
            raise WriteError(self.target(name), cause, error.errno) from error
        if not os.path.isfile(tmp):
            raise WriteError(self.target(name), "the writer left no file")
        return self.target(name)

    def write_json(self, name: str, data) -> str:
        return self.write(name, _write_with("w", lambda f: json.dump(data, f, indent=2)))

    def write_text(self, name: str, text: str) -> str:
        return self.write(name, _write_with("w", lambda f: f.write(text)))

    def save_figure(self, name: str, figure, **savefig_kwargs) -> str:
        return self.write(name, lambda tmp: figure.savefig(tmp, **savefig_kwargs))

    def discard(self) -> None:
        """Remove every temporary file; the targets stay as they were."""
        for tmp in self._staged.values():
            _remove_quietly(tmp)
        self._staged.clear()

    def commit(self) -> list:
        """Replace the earlier set by the new one (see the class doc); returns the targets written."""
        missing = [name for name, tmp in self._staged.items() if not os.path.isfile(tmp)]
        if missing:
            self.discard()
            raise WriteError(self.target(missing[0]), "was never written")
        names = list(self._staged) + [n for n in self.stale if n not in self._staged]
        moved_aside, placed = [], []
        try:
            for name in names:
                target = self.target(name)
                if os.path.lexists(target):
                    old = os.path.join(os.path.dirname(os.path.abspath(target)),
                                       ".%s.%d.set.old" % (os.path.basename(target), os.getpid()))
                    os.replace(target, old)
                    moved_aside.append((old, target))
            for name, tmp in self._staged.items():
                os.replace(tmp, self.target(name))
                placed.append(self.target(name))
        except OSError as error:
            for target in placed:
                _remove_quietly(target)
            for old, target in reversed(moved_aside):
                try:
                    os.replace(old, target)
                except OSError:
                    pass
            self.discard()
            raise WriteError(error.filename or self.folder, _cause(error), error.errno) from error
        for old, _ in moved_aside:
            _remove_quietly(old)
        self._staged.clear()
        return placed


def _remove_quietly(path: str) -> None:
    try:
        if os.path.lexists(path):
            os.remove(path)
    except OSError:
        pass


class output_set:   # noqa: N801  (used as a context manager, like open)
    """``with output_set(folder, stale=...) as files: files.write_json("summary.json", ...)``: the block's
    files replace the earlier ones together when it ends, or not at all (see :class:`OutputSet`)."""

    def __init__(self, folder: str, stale=()):
        self._set = OutputSet(folder, stale)

    def __enter__(self) -> OutputSet:
        return self._set

    def __exit__(self, kind, value, traceback):
        if kind is None:
            self._set.commit()
        else:
            self._set.discard()
        return False


# ------------------------------------------------------------------------------------------------
# Outputs never inside inputs
# ------------------------------------------------------------------------------------------------

class OutputInsideInputError(ValueError):
    """An output path is an input, or lies inside an input folder (one line naming both)."""


def _inside(path: str, folder: str) -> bool:
    try:
        return os.path.commonpath([path, folder]) == folder
    except ValueError:   # different drives
        return False


def refuse_output_inside_inputs(output: str, inputs, output_option: str = "-o",
                                output_contains_inputs: bool = False) -> None:
    """Raise OutputInsideInputError when the output ``output`` (a file or folder, existing or not) is one
    of ``inputs`` or lies inside one of them (symbolic links resolved), so that a command never writes
    into, or over, what it reads. ``inputs``: {option: path or [paths]}, e.g. {"-i": pred_root}.
    ``output_contains_inputs``: also refuse an input inside the output (an output folder the command fills
    with files it may later read as input, as nnUNet_genesis_prepare's task folders)."""
    real_out = os.path.realpath(output)
    for option, paths in inputs.items():
        for path in ([paths] if paths is None or isinstance(paths, (str, os.PathLike)) else paths):
            if path is None:
                continue
            real_in = os.path.realpath(path)
            if real_out == real_in:
                raise OutputInsideInputError("output %s (%s) is the input %s (%s); choose an output outside the "
                                             "inputs" % (output, output_option, path, option))
            if _inside(real_out, real_in):
                raise OutputInsideInputError("output %s (%s) lies inside the input folder %s (%s); choose an "
                                             "output outside the inputs" % (output, output_option, path, option))
            if output_contains_inputs and _inside(real_in, real_out):
                raise OutputInsideInputError("input %s (%s) lies inside the output %s (%s); choose an output "
                                             "outside the inputs" % (path, option, output, output_option))
