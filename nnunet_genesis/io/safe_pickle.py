"""One safe reader for the pickles our commands open: nnU-Net's plans, ``.model.pkl``, splits and case properties.

Plain ``pickle.load`` runs whatever a file asks for (an object whose ``__reduce__`` names ``os.system`` runs
a command on load). nnU-Net's own pickles hold only data: dicts, OrderedDicts, lists, tuples, sets,
strings, bytes, numbers, booleans, None, and numpy arrays, scalars and dtypes. :class:`RestrictedUnpickler`
resolves exactly those globals and refuses every other one before anything is called, so a hostile file
fails with :class:`UnsafePickleError` naming the file and the global it asked for; a cut or damaged file
fails with the same error class naming the file and the fault.

Follows the "Restricting Globals" recipe of Python's ``pickle`` documentation. Stock nnU-Net commands
(``nnUNet_train``, ``nnUNet_predict``) unpickle with plain ``pickle``: that is out of this package's hands.
"""
import _compat_pickle
import io
import os
import pickle
from typing import Any

# (module, name) pairs a pickle of plain data may name. numpy moved its pickling helpers from
# ``numpy.core`` to ``numpy._core`` in 2.0; files written under either name are read.
_ALLOWED = {
    ("builtins", name) for name in (
        "dict", "list", "tuple", "set", "frozenset", "str", "bytes", "bytearray", "int", "float", "complex",
        "bool", "slice", "range")
} | {
    ("collections", "OrderedDict"), ("collections", "defaultdict"),
    ("_codecs", "encode"),  # how protocol-2 pickles store bytes (numpy arrays pickled by Python 2 / protocol 2)
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
}


class UnsafePickleError(ValueError):
    """A pickle that names a global outside plain data, or that cannot be read: the message names the file."""


def _allowed(module: str, name: str) -> bool:
    if (module, name) in _ALLOWED:
        return True
    # numpy 2 pickles a dtype's class (numpy.dtypes.Float64DType ...): data types, no user code
    return module == "numpy.dtypes" and name.endswith("DType")


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the plain-data globals listed above."""

    def find_class(self, module, name):
        # Python 2 names (``__builtin__.set`` in protocols 0-2), mapped as pickle's own find_class does; the
        # tables hold only Python 2 names, so a Python 3 name passes unchanged
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if not _allowed(module, name):
            raise pickle.UnpicklingError("it asks for %s.%s, which is not plain data (nnU-Net's pickles hold "
                                         "only dicts, lists, tuples, strings, numbers and numpy arrays)"
                                         % (module, name))
        if module.startswith("numpy.core.") or module.startswith("numpy._core."):
            import numpy as np
            core = np._core if hasattr(np, "_core") else np.core
            return getattr(getattr(core, module.rsplit(".", 1)[1]), name)
        return super().find_class(module, name)


def loads(data: bytes, source: str = "<bytes>") -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler`; ``source`` names it in the error."""
    try:
        return RestrictedUnpickler(io.BytesIO(data)).load()
    except UnsafePickleError:
        raise
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError, TypeError,
            ValueError, KeyError, MemoryError) as error:
        detail = str(error) or type(error).__name__
        if isinstance(error, EOFError) or "truncated" in detail or "ran out of input" in detail.lower():
            detail = "the file is cut short (truncated)"
        raise UnsafePickleError("%s: not a readable pickle of plain data: %s" % (source, detail)) from None


def load(path) -> Any:
    """The object pickled in ``path``, read with :class:`RestrictedUnpickler` (see module doc)."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        return loads(f.read(), source=path)
