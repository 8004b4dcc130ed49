"""Per-process random state of the distortion transforms: a Generator that batchgenerators' worker processes never share.
"""
import os
from typing import Mapping, Optional, Union

import numpy as np
from batchgenerators.transforms.abstract_transforms import AbstractTransform

SeedLike = Union[None, int, np.random.SeedSequence, np.random.Generator]


_worker_key = None   # (process id, key): set in a seeded augmentation worker by set_worker_key


def set_worker_key(key: int) -> None:
    """Name this process, an augmentation worker of a seeded training (``nnunet_genesis/training_seed.py`` calls
    it in each worker before its first batch), with ``key``, unique among the training's workers: a seeded
    transform's Generator here is then derived from its seed and ``key`` rather than from the process id. A
    process forked from this one does not inherit the key (it is tied to this process id)."""
    global _worker_key
    _worker_key = (os.getpid(), int(key))


def _spawn_key(pid: int) -> tuple:
    """What sets process ``pid``'s Generator apart from its siblings': its worker key, else its process id."""
    if _worker_key is not None and _worker_key[0] == pid:
        return (0, _worker_key[1])     # two entries: never equal to a process id's one
    return (pid,)


class GenesisRandomTransform(AbstractTransform):
    """Base of the Models Genesis transforms: a random Generator that is safe across processes.

    ``seed`` may be an int, a ``numpy.random.SeedSequence``, a ``numpy.random.Generator`` or None.
    In the process that built the transform, an int / SeedSequence seeds a fresh Generator (the
    same seed gives the same output) and a Generator is used as is. batchgenerators'
    MultiThreadedAugmenter gives each worker process a forked or pickled copy of the transform,
    which would repeat the parent's stream; so whenever ``os.getpid()`` differs from the process
    the Generator was made in, a new one is derived: from the seed, with the process id as spawn
    key (workers differ from each other and from the parent; not reproducible from run to run,
    as process ids are not), or from fresh OS entropy when ``seed`` is None. A worker that a seeded
    training named with :func:`set_worker_key` uses that key instead of its process id: the same
    seed then gives the same draws in every run.
    """

    def __init__(self, seed: SeedLike = None, data_key: str = "data"):
        if not (seed is None or isinstance(seed, (int, np.integer, np.random.SeedSequence, np.random.Generator))):
            raise TypeError("%s: seed must be None, an int, a SeedSequence or a Generator, got %r"
                            % (type(self).__name__, seed))
        self.seed = seed
        self.data_key = data_key
        self._home_pid = os.getpid()
        self._rng: Optional[np.random.Generator] = None
        self._rng_pid: Optional[int] = None

    @property
    def rng(self) -> np.random.Generator:
        """This process's Generator (made on first use; remade after a fork or unpickling)."""
        pid = os.getpid()
        if self._rng is None or self._rng_pid != pid:
            self._rng = self._generator_for_process(pid)
            self._rng_pid = pid
        return self._rng

    def _generator_for_process(self, pid: int) -> np.random.Generator:
        seed = self.seed
        if pid == self._home_pid:
            return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        if seed is None:
            return np.random.default_rng()
        if isinstance(seed, np.random.Generator):
            # this copy holds the parent's state at fork / pickle time, the same in every worker;
            # entropy read from it is shared, and the pid sets the workers apart
            seed = [int(v) for v in seed.integers(0, 2 ** 32, size=4)]
        if isinstance(seed, np.random.SeedSequence):
            return np.random.default_rng(np.random.SeedSequence(seed.entropy,
                                                                spawn_key=tuple(seed.spawn_key) + _spawn_key(pid)))
        return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=_spawn_key(pid)))

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_rng"] = state["_rng_pid"] = None  # re-derived in the receiving process
        return state

    def __repr__(self):
        public = ", ".join("%s=%r" % (k, v) for k, v in self.__dict__.items() if not k.startswith("_"))
        return "%s(%s)" % (type(self).__name__, public)

    def _patch_batch(self, data_dict: Mapping) -> np.ndarray:
        """``data_dict[self.data_key]``, checked to be a floating-point (B, C, Z, Y, X) array."""
        if self.data_key not in data_dict:
            raise KeyError("%s: the data dict has no %r key (keys: %s)"
                           % (type(self).__name__, self.data_key, sorted(data_dict)))
        data = data_dict[self.data_key]
        if not isinstance(data, np.ndarray) or data.ndim != 5 or not np.issubdtype(data.dtype, np.floating):
            raise ValueError("%s: data_dict[%r] must be a floating-point numpy array of shape (B, C, Z, Y, X); got %s"
                             % (type(self).__name__, self.data_key,
                                "shape %s dtype %s" % (data.shape, data.dtype) if isinstance(data, np.ndarray)
                                else type(data).__name__))
        return data
