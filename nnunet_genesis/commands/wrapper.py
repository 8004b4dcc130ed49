"""The wrapper every ``nnUNet_genesis_*`` entry point wears (those of nnunet_genesis/commands/cli.py,
evaluation/cli.py and competition/cli.py): standard library and our io helpers only, so a command that needs
no nnU-Net (evaluation) imports none through it.

A file that cannot be written or read (no space, file-size limit, permission, missing folder, a path whose
parent is a file) ends the command with one line ``<command>: error: cannot write <path>: <cause>`` and exit
status ``EXIT_FILE_ERROR`` (4), distinct from the commands' own statuses (1 refused/invalid, 2 bad input,
3 collapse). The traceback is shown only with the debug switch: environment variable ``NNUNET_GENESIS_DEBUG=1``.
"""
import functools
import os
import sys

EXIT_BAD_INPUT = 2
EXIT_FILE_ERROR = 4
DEBUG_ENV = "NNUNET_GENESIS_DEBUG"


def debugging() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "no", "false")


def file_error_line(prog: str, error: OSError) -> str:
    """The one line for a failed file operation: 'PROG: error: cannot write PATH: CAUSE'."""
    from nnunet_genesis.io.atomic import WRITE_FAILURE_ERRNOS, WriteError
    if isinstance(error, WriteError):
        return "%s: error: %s" % (prog, error)
    path = error.filename if error.filename is not None else "?"
    cause = error.strerror or str(error) or type(error).__name__
    verb = "cannot write" if error.errno in WRITE_FAILURE_ERRNOS else "cannot access"
    return "%s: error: %s %s: %s" % (prog, verb, path, cause)


def command(prog: str):
    """Decorator for a ``main(argv) -> int``: an OSError becomes one line on stderr and EXIT_FILE_ERROR; an
    output inside an input (``atomic.OutputInsideInputError``) and a pickle that is cut, damaged or not plain
    data (``safe_pickle.UnsafePickleError``, naming the file) one line and EXIT_BAD_INPUT. Re-raised with its
    traceback when NNUNET_GENESIS_DEBUG is set."""
    from nnunet_genesis.io.atomic import OutputInsideInputError
    from nnunet_genesis.io.safe_pickle import UnsafePickleError

    def wrap(main):
        @functools.wraps(main)
        def run(argv=None):
            try:
                return main(argv)
            except OSError as error:
                if debugging():
                    raise
                print(file_error_line(prog, error), file=sys.stderr)
                return EXIT_FILE_ERROR
            except (OutputInsideInputError, UnsafePickleError) as error:
                if debugging():
                    raise
                print("%s: error: %s" % (prog, error), file=sys.stderr)
                return EXIT_BAD_INPUT
        return run
    return wrap
