"""Common random numbers for nnU-Net v2 trainings (``nnunet_genesis/training_seed.py`` says why and what is
seeded): ``SeededTraining``, mixed into every fine-tuning and pretraining trainer here, and
``nnUNetTrainer_Seeded``, the stock ``nnUNetTrainer`` with only this added (the default scratch arm of
``nnUNet_genesis_study --nnunet 2``).

nnunetv2 2.8.1's ``nnUNetTrainer`` (``nnunetv2/training/nnUNetTrainer/nnUNetTrainer.py``) builds the network
in ``initialize`` (the main process is seeded before) and its augmenters in ``get_dataloaders``, which starts
them at once (it draws a first batch). One departure, seeded runs only: ``NonDetMultiThreadedAugmenter`` hands
out batches in the order its workers finish them, so even seeded workers give a run-dependent order; a seeded
training's augmenters are replaced, before its first iteration, by batchgenerators' ``MultiThreadedAugmenter``
(workers taken in turn, as nnU-Net v1 does) on the same data loader, transforms and number of workers. With
``nnUNet_n_proc_DA=0`` (no workers) the main process's seed covers the batches.
"""
from batchgenerators.dataloading.multi_threaded_augmenter import MultiThreadedAugmenter
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_genesis.training_seed import (RANK_STRIDE, TRAINING_WORKERS, VALIDATION_WORKERS, seed_line, seed_process,
                                          seed_workers, training_seed)


def _seeded_augmenter(augmenter, seed):
    """A multi-process augmenter replaced by a seeded, round-robin MultiThreadedAugmenter; a single-threaded one
    (``nnUNet_n_proc_DA=0``) is returned as it is."""
    if not hasattr(augmenter, "num_processes"):
        return augmenter
    augmenter._finish()
    seeded = MultiThreadedAugmenter(augmenter.generator, augmenter.transform, augmenter.num_processes,
                                    num_cached_per_queue=max(1, augmenter.num_cached // augmenter.num_processes),
                                    pin_memory=augmenter.pin_memory)
    seed_workers(seeded, seed)
    return seeded


class SeededTraining:
    """Seeds the training from ``nnUNet_genesis_training_seed`` when it is set (logged either way)."""

    def genesis_training_seed(self):
        """This process's seed (the variable + ``RANK_STRIDE`` x the DDP rank), or None."""
        seed = training_seed()
        return None if seed is None else seed + RANK_STRIDE * int(self.local_rank or 0)

    def initialize(self):
        seed = self.genesis_training_seed()
        if seed is not None and not self.was_initialized:
            seed_process(seed)
        super().initialize()

    def get_dataloaders(self):
        seed = self.genesis_training_seed()
        if seed is None:
            self.print_to_log_file(seed_line(seed))
            return super().get_dataloaders()
        seed_process(seed)      # the single-threaded augmenters draw in this process
        train, val = super().get_dataloaders()
        train, val = _seeded_augmenter(train, seed + TRAINING_WORKERS), _seeded_augmenter(val, seed + VALIDATION_WORKERS)
        self.print_to_log_file(seed_line(seed))
        return train, val


class nnUNetTrainer_Seeded(SeededTraining, nnUNetTrainer):
    """``nnUNetTrainer``, seeded from ``nnUNet_genesis_training_seed``: the scratch arm that shares the Genesis
    arm's draws."""
