"""Reading nnU-Net and Models Genesis checkpoints under torch >= 2.6 (weights-only ``torch.load``).

nnU-Net v1 stores numpy scalars in its checkpoints (v2 too, in ``logging`` and ``_best_ema``), which the
weights-only unpickler refuses.
:func:`allow_nnunet_checkpoint_globals` allow-lists exactly the numpy data types involved (never
arbitrary objects: weights-only keeps protecting users from malicious files); the integration hook
calls it when nnU-Net loads, so stock ``nnUNet_predict``, ``-c`` and ``-val`` work.
:func:`load_state_dict_from_checkpoint` reads any of the checkpoint formats users bring.
"""
import os
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

class CheckpointError(ValueError):
    """A file or object that does not hold a usable state dict."""


_NNUNET_GLOBALS_ALLOWED = False


def allow_nnunet_checkpoint_globals() -> None:
    """Allow-list, for ``torch.load``'s default weights-only mode, the numpy types nnU-Net checkpoints hold.

    nnU-Net v1 ``.model`` files keep training curves (``plot_stuff``) and best-epoch bookkeeping
    (``best_stuff``) as numpy scalars, e.g. ``np.mean(...)`` of float32 losses.  Unpickling a numpy
    scalar needs ``numpy._core.multiarray.scalar`` and ``numpy.dtype``; under numpy 2 the dtype that
    ``numpy.dtype(...)`` returns is an instance of a concrete class (``numpy.dtypes.Float32DType`` ...)
    whose state the unpickler then sets, so those classes must be allowed too (found by saving a
    checkpoint dict with numpy scalars and reading it back weights-only); 0-d arrays need
    ``_reconstruct`` and ``ndarray``.  All are data containers that run no user code.  Checkpoints written under numpy 1.x
    name the same functions ``numpy.core.multiarray.*``; those names are allowed as aliases.  Object
    arrays and arbitrary classes stay forbidden.  Idempotent and cheap.
    """
    global _NNUNET_GLOBALS_ALLOWED
    if _NNUNET_GLOBALS_ALLOWED:
        return
    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    dtype_codes = "?" + np.typecodes["AllInteger"] + np.typecodes["AllFloat"]
    dtype_classes = {type(np.dtype(code)) for code in dtype_codes} - {np.dtype}
    safe: list = [np.dtype, np.ndarray, multiarray.scalar, multiarray._reconstruct, *sorted(dtype_classes, key=str)]
    for name in ("scalar", "_reconstruct"):
        for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            safe.append((getattr(multiarray, name), f"{module}.{name}"))
    torch.serialization.add_safe_globals(safe)
    _NNUNET_GLOBALS_ALLOWED = True


# Where trainers keep the weights inside a checkpoint dict: nnU-Net v1 and Models Genesis use
# 'state_dict'; nnU-Net v2 'network_weights'; common PyTorch scripts 'model_state_dict' / 'model'.
_STATE_DICT_KEYS = ("state_dict", "network_weights", "model_state_dict", "model")
# Wrappers whose key prefixes are stripped: DataParallel / DistributedDataParallel and torch.compile.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def read_checkpoint_file(path: str) -> Any:
    """``torch.load`` of a checkpoint file on the CPU, weights-only, with errors naming the file."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    if os.path.isdir(path):
        raise CheckpointError(f"checkpoint {path!r} is a directory, not a checkpoint file")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"checkpoint {path!r} is an empty file")
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if magic == b"PK\x03\x04":
        if not zipfile.is_zipfile(path):
            raise CheckpointError(f"checkpoint {path!r} is truncated or damaged: torch.save's zip archive has no "
                                  f"central directory (an interrupted copy, download or save?)")
    elif not magic.startswith(b"\x80"):
        raise CheckpointError(f"{path!r} is not a PyTorch checkpoint: neither torch.save's zip format nor a "
                              f"pickle (it starts with {magic!r})")
    allow_nnunet_checkpoint_globals()
    try:
        # map_location: checkpoints saved on a GPU must open on machines without one.
        return torch.load(path, map_location="cpu")
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError, ... depending on the fault
        message = str(error).strip().splitlines()
        detail = next((line for line in message if "GLOBAL" in line or "got <class" in line), message[0] if message else "")
        if "Weights only load failed" in str(error):
            raise CheckpointError(
                f"checkpoint {path!r} contains Python objects that a weights-only load does not execute "
                f"(only tensors, containers and numpy scalars are allowed): {detail}") from error
        fault = f"{type(error).__name__}: {detail}" if detail else type(error).__name__
        raise CheckpointError(f"{path!r} is not a PyTorch checkpoint written by torch.save "
                              f"(reading it failed with {fault})") from error


def _strip_wrapper_prefixes(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix):], True
    return key


def load_state_dict_from_checkpoint(source, name: str = None) -> dict[str, torch.Tensor]:
    """The network weights held by ``source``, as ``{key: CPU tensor}`` with wrapper prefixes removed.

    ``source`` may be a path (nnU-Net v1 ``.model`` file, published Models Genesis ``.pt`` file with
    ``{'epoch', 'state_dict', 'optimizer_state_dict'}``, nnU-Net v2 ``checkpoint_*.pth`` file with
    ``{'network_weights', 'optimizer_state', 'grad_scaler_state', 'logging', '_best_ema', 'current_epoch',
    'init_args', 'trainer_name', 'inference_allowed_mirroring_axes'}`` as nnunetv2's
    ``nnUNetTrainer.save_checkpoint`` writes it, or a bare saved state dict), an already
    loaded checkpoint dict or state dict, or an ``nn.Module``.  A v2 state dict keeps its alias keys
    (``all_modules``, ``decoder.encoder``; :func:`nnunet_genesis.transfer.rules.canonical_keys`), and
    ``torch.load`` keeps their shared storage.  Files are always read with
    ``torch.load(map_location='cpu')`` in torch's weights-only mode (see
    :func:`allow_nnunet_checkpoint_globals`).  ``module.`` (DataParallel/DDP) and ``_orig_mod.``
    (torch.compile) prefixes are stripped.  Anything else raises :class:`CheckpointError` (or
    ``FileNotFoundError``) naming the file (``name`` names an already loaded one) and the fault, among them
    weights that are not finite (a NaN or inf tensor would otherwise be "transferred 100 %" and train on with
    loss nan).
    """
    name = name or "<in-memory checkpoint>"
    obj = source
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        obj = read_checkpoint_file(name)
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{name!r} holds a {type(obj).__name__}, not a checkpoint dict or state dict")
    if not all(isinstance(value, torch.Tensor) for value in obj.values()):
        container = next((k for k in _STATE_DICT_KEYS if isinstance(obj.get(k), Mapping)), None)
        if container is None:
            raise CheckpointError(
                f"{name!r} is a dict without weights: none of {list(_STATE_DICT_KEYS)} holds a state dict "
                f"(its keys are {sorted(map(str, obj.keys()))[:12]})")
        obj = obj[container]
    state_dict: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{name!r}: state dict entry {key!r} is a {type(value).__name__}, not a tensor")
        clean = _strip_wrapper_prefixes(str(key))
        if clean in state_dict:
            raise CheckpointError(f"{name!r}: key {key!r} collides with another key after removing wrapper prefixes")
        state_dict[clean] = value.detach().cpu()
    if not state_dict:
        raise CheckpointError(f"{name!r} holds an empty state dict")
    non_finite = non_finite_tensors(state_dict)
    if non_finite:
        shown = ", ".join(non_finite[:8]) + (f" and {len(non_finite) - 8} more" if len(non_finite) > 8 else "")
        raise CheckpointError(f"{name!r} holds non-finite weights (NaN or inf) in {len(non_finite)} of "
                              f"{len(state_dict)} tensors: {shown}")
    return state_dict


def non_finite_tensors(state_dict: Mapping) -> list:
    """Names of the floating-point tensors in ``state_dict`` holding a NaN or an infinity."""
    return [key for key, value in state_dict.items()
            if isinstance(value, torch.Tensor) and (value.is_floating_point() or value.is_complex())
            and not bool(torch.isfinite(value).all())]
