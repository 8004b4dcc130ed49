"""The DDP trainers under stock nnUNet_train_DDP, launched by torchrun with two processes on the CPU
(gloo backend; see nnunet_genesis/nnunet_v1/trainers/ddp.py). Multi-GPU NCCL runs are nnU-Net's own code path."""
import json
import os
import sys

import pytest

from nnunet_genesis.checkpoints.files import read_checkpoint_file
from tests.conftest import run_stock, stock_command, subprocess_env

TINY_DDP = '''
from nnunet_genesis.nnunet_v1.trainers import nnUNetTrainerV2_Genesis_DDP, nnUNetTrainerV2_GenesisPretrain_DDP


class Tiny:
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_num_epochs = 2
        self.num_batches_per_epoch = 2
        self.num_val_batches_per_epoch = 1


class GenesisPretrain_DDP_Tiny(Tiny, nnUNetTrainerV2_GenesisPretrain_DDP):
    pass


class Genesis_DDP_Tiny(Tiny, nnUNetTrainerV2_Genesis_DDP):
    genesis_warmup_epochs = 1
'''

PRETRAIN_TASK_ID = 922


def torchrun(*args):
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517",
            stock_command("nnUNet_train_DDP"), *map(str, args)]


@pytest.fixture(scope="module")
def ddp_env(module_tmp_path_factory):
    ext = module_tmp_path_factory.mktemp("ddp_ext")
    (ext / "tiny_ddp.py").write_text(TINY_DDP)
    # one data-augmentation worker per rank: two ranks already fill the two cores
    return subprocess_env(nnUNet_extTrainer=str(ext), nnUNet_n_proc_DA=1, OMP_NUM_THREADS=1)


def test_ddp_pretraining_then_ddp_fine_tuning(ct_task, ddp_env):
    run_stock([stock_command("nnUNet_genesis_prepare"), "-t", ct_task.task_name, "-i", ct_task.decathlon_dir,
               "-o", PRETRAIN_TASK_ID], env=ddp_env)
    pretrain_task = [t for t in os.listdir(os.environ["nnUNet_preprocessed"])
                     if t.startswith("Task%d_" % PRETRAIN_TASK_ID)][0]
    log = run_stock(torchrun("3d_fullres", "GenesisPretrain_DDP_Tiny", pretrain_task, "all"),
                    env=ddp_env, timeout=1200)
    results = os.path.join(os.environ["RESULTS_FOLDER"], "nnUNet", "3d_fullres")
    pretrain_fold = os.path.join(results, pretrain_task, "GenesisPretrain_DDP_Tiny__nnUNetPlansv2.1", "all")
    weights = os.path.join(pretrain_fold, "model_final_checkpoint.model")
    checkpoint = read_checkpoint_file(weights)
    assert checkpoint["epoch"] == 2
    assert all(k.startswith("module.") for k in checkpoint["state_dict"])  # saved by the DDP wrapper
    assert os.path.isfile(os.path.join(pretrain_fold, "validation_restoration", "summary.json"))
    assert "DistributedDataParallel" in log

    run_stock(torchrun("3d_fullres", "Genesis_DDP_Tiny", ct_task.task_name, "0",
                       "-pretrained_weights", weights), env=ddp_env, timeout=1200)
    fold = os.path.join(results, ct_task.task_name, "Genesis_DDP_Tiny__nnUNetPlansv2.1", "fold_0")
    with open(os.path.join(fold, "transfer_report.json")) as f:
        report = json.load(f)
    assert report["encoder_fraction"] == 1.0 and report["decoder_fraction"] == 0.0  # default: encoder only
    assert read_checkpoint_file(os.path.join(fold, "model_final_checkpoint.model"))["epoch"] == 2
