"""Common random numbers (nnunet_genesis/training_seed.py, the adapters' seeded.py, the study's use of them).

Fast: the variable (unset, a seed, what is not one), the log line read back, batchgenerators' real multi-process
augmenter seeded twice alike (same batches, Python's ``random`` and torch included, and the Genesis distortions'
own Generators) and differently, one that already started refused, the study's seed per pair and its report line.

End to end (v1): the stock ``nnUNet_train`` trains a tiny ``nnUNetTrainerV2_Seeded`` three times with two
augmentation workers: the same seed twice gives bit-identical final weights, another seed other weights; the
log names the seed. (The pretraining: ``tests/test_pretrain_e2e.py``; v2, both: ``tests/test_v2_e2e.py``; the
study's records: ``tests/test_study_resume.py``.)
"""
import os
import random
import shutil

import numpy as np
import pytest
import torch
from batchgenerators.dataloading.data_loader import DataLoader
from batchgenerators.dataloading.multi_threaded_augmenter import MultiThreadedAugmenter

from competition.study import logged_training_seed, training_seed_of
from competition.study_report import common_random_numbers
from nnunet_genesis.distortions.random_state import GenesisRandomTransform
from nnunet_genesis.training_seed import (MAX_SEED, VARIABLE, TrainingSeedError, logged_seed, seed_line,
                                          seed_workers, training_seed)
from tests.conftest import run_stock, stock_command


def test_the_variable_unset_a_seed_and_what_is_not_one():
    assert training_seed({}) is None and training_seed({VARIABLE: " "}) is None
    assert training_seed({VARIABLE: "0"}) == 0 and training_seed({VARIABLE: " 42 "}) == 42
    for bad in ("-1", "1.5", "seed", str(MAX_SEED + 1)):
        with pytest.raises(TrainingSeedError) as error:
            training_seed({VARIABLE: bad})
        assert VARIABLE in str(error.value) and repr(bad) in str(error.value)


def test_the_log_line_is_read_back_the_last_one_wins():
    assert logged_seed(seed_line(0)) == 0
    assert logged_seed("x\n" + seed_line(7) + "\nmore\n" + seed_line(123) + "\n") == 123
    assert logged_seed(seed_line(None)) is None and logged_seed("") is None


def test_a_training_log_in_a_fold_folder_names_its_seed(tmp_path):
    assert logged_training_seed(str(tmp_path)) is None
    (tmp_path / "training_log_2026_12_4_10_00_00.txt").write_text("2026-12-04 10:00: " + seed_line(5) + "\n")
    (tmp_path / "training_log_2026_12_4_11_00_00.txt").write_text(seed_line(None) + "\n")   # resumed unseeded
    assert logged_training_seed(str(tmp_path)) == 5


class _Draws(DataLoader):
    """Every batch: numpy, Python's random and torch draws, as nnU-Net's loader and augmentations make them."""

    def __init__(self):
        super().__init__(data=None, batch_size=1, num_threads_in_multithreaded=2, infinite=True)

    def generate_train_batch(self):
        return {"data": np.array([np.random.randint(1 << 30), random.randrange(1 << 30),
                                  int(torch.randint(1 << 30, (1,)))])}


def _batches(seed, count=6):
    augmenter = MultiThreadedAugmenter(_Draws(), None, num_processes=2, num_cached_per_queue=1)
    if seed is not None:
        seed_workers(augmenter, seed)
    try:
        return [tuple(next(augmenter)["data"]) for _ in range(count)]
    finally:
        augmenter._finish()


def test_seeded_workers_draw_the_same_batches_and_another_seed_others():
    first, again, other = _batches(11), _batches(11), _batches(12)
    assert first == again
    assert first != other
    # each worker's three generators are seeded (none keeps the state it inherited from this process)
    assert all(len(set(column)) == len(first) for column in zip(*first))
    assert _batches(None) != _batches(None)      # nnU-Net's own workers: fresh entropy every time


def test_workers_that_already_started_are_refused():
    augmenter = MultiThreadedAugmenter(_Draws(), None, num_processes=2, num_cached_per_queue=1)
    try:
        next(augmenter)
        with pytest.raises(RuntimeError, match="started its workers"):
            seed_workers(augmenter, 3)
    finally:
        augmenter._finish()


def test_the_pair_shares_one_seed_each_pair_its_own():
    seeds = {(s, n): training_seed_of(s, n) for s in range(5) for n in (2, 4, 19)}
    assert len(set(seeds.values())) == len(seeds) and all(0 <= v <= MAX_SEED for v in seeds.values())
    assert training_seed_of(3, 4) == seeds[(3, 4)]                       # a function of the pair only


def test_the_report_says_whether_every_pair_was_seeded():
    runs = [{"arm": arm, "count": "2", "seed": s, "trainer": "T_" + arm, "seeded": True}
            for s in (0, 1) for arm in ("scratch", "genesis")]
    both = common_random_numbers(runs)
    assert (both["pairs"], both["seeded_pairs"], both["unseeded"]) == (2, 2, []) and both["text"].startswith("2 of 2 pairs")
    runs[2]["seeded"] = False                                            # seed 1's scratch arm ignored its seed
    one = common_random_numbers(runs)
    assert (one["seeded_pairs"], one["unseeded"]) == (1, ["T_scratch (scratch)"])
    assert one["text"].startswith("1 of 2 pairs") and "not seeded: T_scratch" in one["text"]


class _GenesisDraws(GenesisRandomTransform):
    """A seeded Genesis transform: every batch, one draw from its own per-process Generator."""

    def __call__(self, **data_dict):
        data_dict["data"] = np.array([self.rng.integers(1 << 30)])
        return data_dict


def _genesis_batches(seed, count=6):
    augmenter = MultiThreadedAugmenter(_Draws(), _GenesisDraws(seed=7), num_processes=2, num_cached_per_queue=1)
    if seed is not None:
        seed_workers(augmenter, seed)
    try:
        return [int(next(augmenter)["data"][0]) for _ in range(count)]
    finally:
        augmenter._finish()


def test_seeded_workers_give_the_distortions_the_same_draws_and_another_seed_others():
    """The distortions' Generators (nnunet_genesis/distortions/random_state.py) are derived, in a worker, from the
    transform's seed and the worker's process id; in a seeded worker from the worker's number instead, so the
    same training seed gives the same distortions in every run."""
    first, again, other = _genesis_batches(11), _genesis_batches(11), _genesis_batches(12)
    assert first == again
    assert first != other
    assert len(set(first)) == len(first)               # the two workers draw different streams
    assert _genesis_batches(None) != _genesis_batches(None)   # unseeded workers: the process ids set them apart


# ------------------------------------------------------------------------------------------ end to end (v1)
SEEDED_TINY = '''
from nnunet_genesis.nnunet_v1.trainers import nnUNetTrainerV2_Seeded


class nnUNetTrainerV2_Seeded_Tiny(nnUNetTrainerV2_Seeded):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_num_epochs = 1
        self.num_batches_per_epoch = 3
        self.num_val_batches_per_epoch = 1
'''


def test_nnunet_train_twice_with_one_seed_gives_identical_weights(ct_task, tmp_path):
    from nnunet_genesis.checkpoints.files import load_state_dict_from_checkpoint
    (tmp_path / "ext").mkdir()
    (tmp_path / "ext" / "seeded_tiny.py").write_text(SEEDED_TINY)
    trainer = "nnUNetTrainerV2_Seeded_Tiny"
    weights, logs = {}, {}
    for name, seed in (("first", 5), ("again", 5), ("other", 6)):
        results = tmp_path / ("results_" + name)
        env = dict(ct_task.env, RESULTS_FOLDER=str(results), nnUNet_extTrainer=str(tmp_path / "ext"),
                   nnUNet_n_proc_DA="2", OMP_NUM_THREADS="1", **{VARIABLE: str(seed)})
        logs[name] = run_stock([stock_command("nnUNet_train"), "3d_fullres", trainer, ct_task.task_name, "0",
                                "--disable_postprocessing_on_folds"], env=env)
        fold = os.path.join(str(results), "nnUNet", "3d_fullres", ct_task.task_name, trainer + "__nnUNetPlansv2.1",
                            "fold_0")
        weights[name] = load_state_dict_from_checkpoint(os.path.join(fold, "model_final_checkpoint.model"))
        assert logged_training_seed(fold) == seed
        shutil.rmtree(str(results))
    assert seed_line(5) in logs["first"]
    assert weights["first"].keys() == weights["again"].keys()
    assert all(torch.equal(weights["first"][k], weights["again"][k]) for k in weights["first"])
    assert not all(torch.equal(weights["first"][k], weights["other"][k]) for k in weights["first"])
