"""Reading nnU-Net checkpoints under torch >= 2.6, where ``torch.load`` is weights-only by default.

nnU-Net v1 stores numpy scalars in its checkpoints (losses in ``plot_stuff``, ``best_stuff``), which
the weights-only unpickler refuses. We allow-list exactly the numpy types that scalars need
(``numpy._core.multiarray.scalar``, ``numpy.dtype`` and the concrete dtype classes) and nothing
else: arrays, arbitrary objects and code stay refused, so weights-only keeps protecting users from
malicious checkpoint files.
"""
import numpy as np
import torch

_allowed = False


def numpy_scalar_globals():
    """The numpy callables/classes that unpickling a numpy scalar refers to."""
    try:
        from numpy._core.multiarray import scalar  # numpy >= 2
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import scalar
    dtype_classes = [type(np.dtype(t)) for t in (np.float16, np.float32, np.float64, np.int8, np.int16,
                                                 np.int32, np.int64, np.uint8, np.uint16, np.uint32,
                                                 np.uint64, np.bool_)]
    return [scalar, np.dtype] + dtype_classes


def allow_nnunet_checkpoint_globals():
    """Allow-list the numpy scalar types for weights-only loading (idempotent, cheap)."""
    global _allowed
    if _allowed or not hasattr(torch.serialization, "add_safe_globals"):  # torch < 2.4: nothing to do
        return
    torch.serialization.add_safe_globals(numpy_scalar_globals())
    _allowed = True
