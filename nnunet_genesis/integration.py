"""How the stock nnU-Net v1 and v2 commands find our trainers and load checkpoints under torch >= 2.6.

Mechanism
---------
Installing the package puts one line, ``nnunet_genesis.pth``, into site-packages. Python runs
it at interpreter start; it calls :func:`install`, which only adds a small finder to
``sys.meta_path`` (no torch, no numpy, no nnU-Net is imported: the cost is a fraction of a
millisecond, see ``benchmarks/startup.py``). Whenever, and only when, a process imports one of
the nnU-Net modules below, the finder lets the module load normally and then patches it:

``nnunet.training.network_training.network_trainer``
    torch >= 2.6 loads checkpoints weights-only; nnU-Net's checkpoints hold numpy scalars, so
    the exact numpy types they need are allow-listed with
    ``torch.serialization.add_safe_globals`` (weights-only stays on for everything else).
``nnunet.training.model_restore``
    ``recursive_find_python_class`` (used by ``nnUNet_train``, ``nnUNet_train_DDP``,
    ``nnUNet_predict`` and the cascade) first searches nnU-Net's own folder as before; only a
    trainer name it cannot find is looked up in ``nnunet_genesis.nnunet_v1.trainers`` and then in the
    folders of the environment variable ``nnUNet_extTrainer`` (several joined by
    ``os.pathsep``), as nnU-Net v2 does.
``nnunet.run.load_pretrained_weights``
    ``-pretrained_weights`` is routed to the adaptive transfer of the trainer that built the
    network (our Genesis trainers register themselves in ``pretrained_weights_handlers``); for
    any other trainer the stock all-or-nothing loader runs unchanged except that tensors are
    mapped to the CPU first, so GPU-saved weights load on a CPU-only machine.

``nnUNet_find_best_configuration``, ``nnUNet_ensemble`` and ``nnUNet_determine_postprocessing``
work on trainer *names* and output folders only, so they accept our trainers with no patch.

nnU-Net v2 (``nnunetv2``, installed beside v1 or alone) gets the same two services:

``nnunetv2.utilities.find_objects``
    ``recursive_find_trainer_class_by_name`` (used by ``nnUNetv2_train``, ``nnUNetv2_predict`` and
    ``nnUNetv2_predict_from_modelfolder``; ``run_training.py`` and ``predict_from_raw_data.py``
    bind it with ``from ... import`` only after this module has run, so they get the patched
    function) looks a trainer name up in this order:

    1. our v2 trainers (``nnunet_genesis.nnunet_v2.trainers``);
    2. the folders of ``nnUNet_extTrainer`` (:func:`find_ext_trainer`, as for v1); a class of that
       name that is not a v2 ``nnUNetTrainer`` (e.g. a v1 trainer in a folder shared by both) is
       passed over;
    3. the stock search (nnU-Net's own package, then stock v2's own walk of ``nnUNet_extTrainer``).

    This differs from stock v2, which searches its own package *first*. The stock search imports
    every module under ``nnunetv2/training/nnUNetTrainer`` until it finds the name, among them
    ``primus`` (which needs ``timm`` and through it ``torchvision``): wherever that import chain is
    broken (e.g. a CPU-only torch with a mismatched torchvision), every trainer that is not in
    nnU-Net's first module crashes the stock search before the external folders are reached.
    Searching ours and the external folders first means neither ever depends on those imports; a
    stock trainer name (``nnUNetTrainer``, its variants) is still resolved by nnU-Net itself. A user
    trainer that deliberately *shadows* an nnU-Net trainer name now wins over nnU-Net's class, and
    a file in those folders that fails to import is an error naming it for any trainer name.
``nnunetv2.run.load_pretrained_weights``
    ``nnUNetv2_train -pretrained_weights`` is routed, as for v1, to the adaptive transfer of the
    trainer that built the network (our v2 fine-tuning trainer registers itself in
    ``pretrained_weights_handlers``); for any other trainer the stock loader runs unchanged except
    that tensors are mapped to the CPU first (v2's loader, too, calls ``torch.load`` without
    ``map_location`` outside DDP).

Nothing in nnU-Net's files is edited. To disable the mechanism for one process set
``NNUNET_GENESIS_DISABLE_HOOK=1``; to remove it, ``pip uninstall nnunet-genesis``.

This module is imported at every interpreter start: keep its top level to the standard library.
"""
import os
import sys

DISABLE_ENV = "NNUNET_GENESIS_DISABLE_HOOK"
EXT_TRAINER_ENV = "nnUNet_extTrainer"
NNUNET_TRAINER_MODULE = "nnunet.training.network_training"


# --------------------------------------------------------------------------------------------
# Finding trainers outside nnU-Net's folder
# --------------------------------------------------------------------------------------------
def ext_trainer_folders():
    """The folders named by ``nnUNet_extTrainer`` (os.pathsep-separated), in order."""
    value = os.environ.get(EXT_TRAINER_ENV, "")
    return [p for p in value.split(os.pathsep) if p.strip()]


def import_trainer_file(path):
    """Import a python file by path under a stable module name, so that classes defined in it
    can be pickled into nnU-Net's data-augmentation worker processes. A trainer file that builds on another
    one outside its own folder loads it with this (the same module, however often it is asked for)."""
    import hashlib
    import importlib.util

    path = os.path.abspath(path)
    stem = os.path.splitext(os.path.basename(path))[0]
    name = "nnunet_genesis_ext_%s_%s" % (hashlib.sha1(path.encode()).hexdigest()[:8], stem)
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def find_ext_trainer(trainer_name, folders=None):
    """Search the ``nnUNet_extTrainer`` folders (recursively, files in sorted order) for a class
    named ``trainer_name``. A file that fails to import is an error naming it: a silent skip
    would turn a typo in the user's trainer into a confusing "trainer not found"."""
    for folder in (ext_trainer_folders() if folders is None else folders):
        if not os.path.isdir(folder):
            raise FileNotFoundError("%s=%s: %s is not a folder" % (EXT_TRAINER_ENV, os.environ.get(EXT_TRAINER_ENV), folder))
        for root, dirs, files in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__")))
            for fname in sorted(files):
                if not fname.endswith(".py") or fname.startswith("_"):
                    continue
                path = os.path.join(root, fname)
                try:
                    module = import_trainer_file(path)
                except Exception as e:
                    raise ImportError("%s: cannot import trainer module %s: %s: %s"
                                      % (EXT_TRAINER_ENV, path, type(e).__name__, e)) from e
                if isinstance(getattr(module, trainer_name, None), type):
                    return getattr(module, trainer_name)
    return None


def find_genesis_trainer(trainer_name):
    """Our own trainers first, then the user's ``nnUNet_extTrainer`` folders."""
    import nnunet_genesis.nnunet_v1.trainers as ours
    found = getattr(ours, trainer_name, None)
    if isinstance(found, type):
        return found
    return find_ext_trainer(trainer_name)


def _patch_model_restore(module):
    stock_find = module.recursive_find_python_class
    if getattr(stock_find, "_nnunet_genesis", False):
        return

    def recursive_find_python_class(folder, trainer_name, current_module):
        found = stock_find(folder, trainer_name, current_module)
        # Only the outermost search for a *trainer* falls back to ours: the stock function
        # recurses into sub-packages through this same global name, and planners or
        # preprocessors (other current_module values) are not ours to find.
        if found is None and current_module == NNUNET_TRAINER_MODULE:
            found = find_genesis_trainer(trainer_name)
        return found

    recursive_find_python_class._nnunet_genesis = True
    recursive_find_python_class.__doc__ = stock_find.__doc__
    module.recursive_find_python_class = recursive_find_python_class


# --------------------------------------------------------------------------------------------
# Loading checkpoints under torch >= 2.6
# --------------------------------------------------------------------------------------------
def _patch_network_trainer(module):
    from nnunet_genesis.checkpoints.files import allow_nnunet_checkpoint_globals
    allow_nnunet_checkpoint_globals()


def _patch_load_pretrained_weights(module):
    stock_load = module.load_pretrained_weights
    if getattr(stock_load, "_nnunet_genesis", False):
        return

    def load_pretrained_weights(network, fname, verbose=False):
        from nnunet_genesis.pretrained_weights_handlers import pretrained_weights_handler
        handler = pretrained_weights_handler(network)
        if handler is not None:
            return handler(fname)
        import torch
        real_torch_load = torch.load

        def torch_load_on_cpu(f, *args, **kwargs):
            kwargs.setdefault("map_location", "cpu")
            return real_torch_load(f, *args, **kwargs)

        # The stock loader calls torch.load(fname) with no map_location, so CUDA-saved weights
        # fail on a CPU machine. Map them to the CPU for the duration of this one call.
        from nnunet_genesis.checkpoints.files import allow_nnunet_checkpoint_globals
        allow_nnunet_checkpoint_globals()
        torch.load = torch_load_on_cpu
        try:
            return stock_load(network, fname, verbose)
        finally:
            torch.load = real_torch_load

    load_pretrained_weights._nnunet_genesis = True
    load_pretrained_weights.__doc__ = stock_load.__doc__
    module.load_pretrained_weights = load_pretrained_weights


# --------------------------------------------------------------------------------------------
# nnU-Net v2
# --------------------------------------------------------------------------------------------
def find_genesis_v2_trainer(trainer_name):
    """Our v2 trainers first, then the user's ``nnUNet_extTrainer`` folders; None when neither has a
    v2 trainer (an ``nnunetv2`` ``nnUNetTrainer`` subclass) of that name."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    import nnunet_genesis.nnunet_v2.trainers as ours
    found = getattr(ours, trainer_name, None) if trainer_name in ours.__all__ else None  # not its imports
    if found is None:
        found = find_ext_trainer(trainer_name)
    return found if isinstance(found, type) and issubclass(found, nnUNetTrainer) else None


def _patch_v2_find_objects(module):
    stock_find = module.recursive_find_trainer_class_by_name
    if getattr(stock_find, "_nnunet_genesis", False):
        return

    def recursive_find_trainer_class_by_name(trainer_name):
        # Order and why it differs from stock v2: module docstring.
        found = find_genesis_v2_trainer(trainer_name)
        return found if found is not None else stock_find(trainer_name)

    recursive_find_trainer_class_by_name._nnunet_genesis = True
    recursive_find_trainer_class_by_name.__doc__ = stock_find.__doc__
    module.recursive_find_trainer_class_by_name = recursive_find_trainer_class_by_name


# --------------------------------------------------------------------------------------------
# The post-import hook
# --------------------------------------------------------------------------------------------
PATCHES = {
    "nnunet.training.network_training.network_trainer": _patch_network_trainer,
    "nnunet.training.model_restore": _patch_model_restore,
    "nnunet.run.load_pretrained_weights": _patch_load_pretrained_weights,
    "nnunetv2.utilities.find_objects": _patch_v2_find_objects,
    "nnunetv2.run.load_pretrained_weights": _patch_load_pretrained_weights,
}


class _PatchingLoader:
    """Delegates to the real loader, then applies our patch to the fresh module."""

    def __init__(self, loader, patch):
        self._loader = loader
        self._patch = patch

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        self._patch(module)

    def __getattr__(self, name):  # get_source, get_filename, ... for tracebacks and inspect
        return getattr(self._loader, name)


class _PostImportFinder:
    """A sys.meta_path finder that never finds anything itself: for the few module names in
    PATCHES it asks the remaining finders for the real spec and wraps its loader."""

    def find_spec(self, fullname, path=None, target=None):
        patch = PATCHES.get(fullname)
        if patch is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _PatchingLoader(spec.loader, patch)
                return spec
        return None


def install():
    """Add the post-import hook (idempotent). Modules already imported are patched at once."""
    if os.environ.get(DISABLE_ENV, "").strip() not in ("", "0"):
        return False
    if not any(isinstance(f, _PostImportFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _PostImportFinder())
    for name, patch in PATCHES.items():
        if name in sys.modules:
            patch(sys.modules[name])
    return True


def is_installed():
    return any(isinstance(f, _PostImportFinder) for f in sys.meta_path)
