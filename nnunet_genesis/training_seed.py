"""Common random numbers: one seed for every random draw of an nnU-Net training, so that two trainings that
differ only in their start (scratch, pretrained) draw the same cases, patches and augmentations.

Why nnU-Net needs help here (read in nnU-Net 1.7.1, nnunetv2 2.8.1, batchgenerators 0.25.5): a training
draws its randomness in two places, the main process (the network's initial weights: torch's generator) and
the augmentation workers (which cases, where each patch is cut, every augmentation). ``nnUNet_train
--deterministic`` seeds the main process only (``nnunet/training/network_training/network_trainer.py``);
``nnUNetv2_train`` seeds nothing. Both pass ``seeds=None`` to batchgenerators' augmenters, whose
``producer`` then calls ``np.random.seed(None)``: fresh entropy in every worker. Some augmentations draw
from Python's ``random`` (batchgenerators ``augmentations/noise_augmentations.py``), which Python reseeds in
every forked worker. So the same command, run twice, trains two different networks (measured:
docs/measurements_study18_seeded.md).

The seed is handed to the trainer in the environment variable :data:`VARIABLE` (``nnUNet_genesis_study``
sets it per run, the same for both arms of a (count, seed) pair); a trainer that mixes in the adapters'
``SeededTraining`` (``nnunet_genesis/nnunet_v1/trainers/seeded.py``, ``nnunet_genesis/nnunet_v2/trainers/seeded.py``)
then seeds, from ``s`` = the variable + ``RANK_STRIDE`` x its DDP rank:

* the main process: ``random``, ``numpy`` and ``torch`` with ``s`` (before the network is built);
* the training augmentation's worker ``k``: numpy, Python's ``random`` and torch with ``s + TRAINING_WORKERS + k``
  (numpy through the augmenter's ``seeds``, the others through the data loader's ``set_thread_id``, the first
  thing batchgenerators' worker calls);
* the validation augmentation's worker ``k``: the same with ``s + VALIDATION_WORKERS + k``;
* in a worker, the Genesis distortions' own Generators (``nnunet_genesis/distortions/random_state.py``), which the
  pretraining trainers seed with ``s``: each worker's from that seed and its worker's number above, not its
  process id, so that a seeded pretraining restores the same distorted patches in every run.

It logs :func:`seed_line`, which ``nnUNet_genesis_study`` reads back from the training log
(:func:`logged_seed`) to report whether both arms were seeded. Unset, nothing is seeded (nnU-Net's own
behaviour) and the log says so. On a GPU, cuDNN's non-deterministic kernels can still make two trainings
differ in their last digits; the draws are common all the same. A training continued with ``-c`` / ``--c``
restarts its workers from the same seeds.

This module imports no nnU-Net; the adapters apply it to their own augmenters.
"""
import os
import random
import re
from typing import Mapping, Optional

from nnunet_genesis.distortions.random_state import set_worker_key

VARIABLE = "nnUNet_genesis_training_seed"
MAX_SEED = 2 ** 31 - 1     # + the worker and DDP-rank offsets below stays under numpy's limit, 2**32 - 1
TRAINING_WORKERS, VALIDATION_WORKERS = 1, 1001
RANK_STRIDE = 100_000

_LOGGED = re.compile(r"training seed (\d+) \(%s\)" % VARIABLE)


class TrainingSeedError(ValueError):
    """The seed variable is set to something that is not a seed."""


def training_seed(environ: Optional[Mapping[str, str]] = None) -> Optional[int]:
    """The seed in :data:`VARIABLE`, or None when it is unset or empty."""
    text = (os.environ if environ is None else environ).get(VARIABLE, "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) > MAX_SEED:
        raise TrainingSeedError("%s=%r is not a training seed (a whole number from 0 to %d)"
                                % (VARIABLE, text, MAX_SEED))
    return int(text)


def seed_line(seed: Optional[int]) -> str:
    """What a seeded (or unseeded) training writes into its log."""
    if seed is None:
        return "training not seeded (%s is not set): nnU-Net's own random draws" % VARIABLE
    return "training seed %d (%s): main process and augmentation workers seeded" % (seed, VARIABLE)


def logged_seed(log_text: str) -> Optional[int]:
    """The seed a training's log says it used (its last :func:`seed_line`), or None."""
    found = _LOGGED.findall(log_text)
    return int(found[-1]) if found else None


def seed_process(seed: int) -> None:
    """Seed Python's ``random``, numpy's and torch's global generators of this process."""
    import numpy as np
    import torch
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class _SeedWorker:
    """The data loader's ``set_thread_id``, preceded by seeding Python's ``random`` and torch's generator with
    ``seed + thread id`` (a class, not a closure, so that a data loader handed to a spawned worker still
    pickles). batchgenerators' ``MultiThreadedAugmenter`` seeds only numpy in its workers; torch, which v2's
    transforms draw from, would otherwise keep the state each forked worker inherited: the same in every worker.
    The worker also runs torch and the BLAS/OpenMP pools single-threaded, as ``NonDetMultiThreadedAugmenter``'s
    workers do: a forked child that enters an OpenMP pool its parent has used hangs (seen: a v2 fine-tuning, whose
    main process had run the transfer before its workers were forked, never started its first epoch)."""

    def __init__(self, set_thread_id, seed: int):
        self.set_thread_id, self.seed = set_thread_id, seed

    def __call__(self, thread_id):
        import torch
        from threadpoolctl import threadpool_limits
        torch.set_num_threads(1)
        threadpool_limits(1)      # for the worker's lifetime (not used as a context)
        random.seed(self.seed + int(thread_id))
        torch.manual_seed(self.seed + int(thread_id))
        set_worker_key(self.seed + int(thread_id))   # the Genesis distortions' Generators (pretraining)
        return self.set_thread_id(thread_id)


def seed_workers(augmenter, seed: int) -> None:
    """Seed a batchgenerators multi-process augmenter's workers (``MultiThreadedAugmenter``,
    ``NonDetMultiThreadedAugmenter``) before they start: worker ``k`` gets ``seed + k`` for numpy (and torch)
    and for Python's ``random`` and torch. RuntimeError if its workers already run (they would keep their draws)."""
    started = getattr(augmenter, "was_initialized", None)
    if started is None:
        started = getattr(augmenter, "initialized", False)
    if started:
        raise RuntimeError("%s has started its workers before they could be seeded" % type(augmenter).__name__)
    augmenter.seeds = [seed + k for k in range(augmenter.num_processes)]
    loader = augmenter.generator
    inner = loader.set_thread_id
    if isinstance(inner, _SeedWorker):   # a loader seeded before, for an augmenter since replaced: re-seed it
        inner = inner.set_thread_id
    loader.set_thread_id = _SeedWorker(inner, seed)
