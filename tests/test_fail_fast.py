"""A training that raises stops its augmentation workers before the error propagates."""
import numpy as np
import pytest
from batchgenerators.dataloading.data_loader import SlimDataLoaderBase
from batchgenerators.dataloading.multi_threaded_augmenter import MultiThreadedAugmenter
from batchgenerators.transforms.abstract_transforms import Compose

from nnunet_genesis.nnunet_v1.trainers.base import GenesisTrainerBase, stop_augmentation_workers


class EndlessLoader(SlimDataLoaderBase):
    def __init__(self):
        super().__init__(None, 1, None)

    def generate_train_batch(self):
        return {"data": np.zeros((1, 1, 4, 4, 4), dtype=np.float32)}


class Crashing:
    def run_training(self):
        next(self.tr_gen)  # the workers are running now
        raise ValueError("deliberate crash")


class CrashingTrainer(GenesisTrainerBase, Crashing):
    def __init__(self):
        self.tr_gen = MultiThreadedAugmenter(EndlessLoader(), Compose([]), 2, 2)
        self.val_gen = None


def test_workers_are_stopped_before_the_error_propagates():
    trainer = CrashingTrainer()
    with pytest.raises(ValueError, match="deliberate crash"):
        trainer.run_training()
    assert trainer.tr_gen._processes == [] or not any(p.is_alive() for p in trainer.tr_gen._processes)


def test_stopping_without_generators_is_harmless():
    class Bare:
        pass
    stop_augmentation_workers(Bare())  # no tr_gen / val_gen: nothing to do, nothing raised
