"""Common random numbers for nnU-Net v1 trainings (``nnunet_genesis/training_seed.py`` says why and what is
seeded): ``SeededTraining``, mixed into every fine-tuning and pretraining trainer here, and
``nnUNetTrainerV2_Seeded``, the stock ``nnUNetTrainerV2`` with only this added (the default scratch arm of
``nnUNet_genesis_study``).

nnU-Net 1.7.1's ``nnUNetTrainerV2.initialize`` (``nnunet/training/network_training/nnUNetTrainerV2.py``) builds
the network, then the two ``MultiThreadedAugmenter`` s (``get_moreDA_augmentation``) without starting them
(they start on their first batch); the main process is seeded before, the workers' seeds are set after.
"""
from nnunet.training.network_training.nnUNetTrainerV2 import nnUNetTrainerV2

from nnunet_genesis.nnunet_v1.trainers.base import GenesisTrainerBase
from nnunet_genesis.training_seed import (RANK_STRIDE, TRAINING_WORKERS, VALIDATION_WORKERS, seed_line, seed_process,
                                          seed_workers, training_seed)


class SeededTraining:
    """Seeds the training from ``nnUNet_genesis_training_seed`` when it is set (logged either way). A trainer that
    replaces ``tr_gen`` / ``val_gen`` after ``initialize`` (the pretraining's restoration pipeline) seeds its own
    with :meth:`seed_augmenters`."""

    def genesis_training_seed(self):
        """This process's seed (the variable + ``RANK_STRIDE`` x nnUNetTrainerV2_DDP's rank), or None."""
        seed = training_seed()
        return None if seed is None else seed + RANK_STRIDE * int(getattr(self, "local_rank", 0) or 0)

    def seed_augmenters(self, seed):
        """Seed the workers of ``tr_gen`` and ``val_gen`` (not started yet) from ``seed``; nothing when None."""
        if seed is not None:
            seed_workers(self.tr_gen, seed + TRAINING_WORKERS)
            seed_workers(self.val_gen, seed + VALIDATION_WORKERS)

    def initialize(self, training=True, force_load_plans=False):
        seed = self.genesis_training_seed()
        if seed is not None:
            seed_process(seed)
        super().initialize(training, force_load_plans)
        if training:
            self.seed_augmenters(seed)
            self.print_to_log_file(seed_line(seed))


class nnUNetTrainerV2_Seeded(SeededTraining, GenesisTrainerBase, nnUNetTrainerV2):
    """``nnUNetTrainerV2`` (and ``GenesisTrainerBase``: its workers stopped when training ends, a NaN loss stops
    it), seeded from ``nnUNet_genesis_training_seed``: the scratch arm that shares the Genesis arm's draws."""
