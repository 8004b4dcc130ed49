"""Write checkpoints exactly as torch.save writes them on a GPU machine, without a GPU.

torch.save records, for every tensor storage, a location tag produced by the registered
"taggers" ("cpu", "cuda:0", ...). Loading without ``map_location`` restores each storage to that
location, which is why GPU-saved weights fail on a CPU-only machine. Registering, for the
duration of one save, a tagger that answers "cuda:0" yields the same file a GPU would have
written (only the tag matters: the bytes of a storage do not depend on its device).
"""
import contextlib

import torch
import torch.serialization as serialization


@contextlib.contextmanager
def _tag_storages_as_cuda():
    def tagger(storage):
        return "cuda:0"

    def deserializer(obj, location):  # never used: we only save under this registration
        return None

    serialization.register_package(0, tagger, deserializer)  # priority 0: asked before "cpu"
    try:
        yield
    finally:  # torch has no unregister; remove our entry from its registry list
        serialization._package_registry[:] = [e for e in serialization._package_registry
                                              if e[1] is not tagger]


def save_as_if_on_gpu(obj, path):
    with _tag_storages_as_cuda():
        torch.save(obj, path)


def assert_cuda_tagged(path):
    """The file really needs a CUDA device when loaded without map_location."""
    try:
        torch.load(path, weights_only=False)
    except RuntimeError as e:
        assert "cuda" in str(e).lower(), e
        return
    if not torch.cuda.is_available():
        raise AssertionError("%s loaded without map_location on a CPU machine: not CUDA-tagged" % path)
