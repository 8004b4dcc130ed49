"""nnUNet_genesis_transfer: the dry run on planned tasks, through the installed console script."""
import json
import subprocess

import torch

from tests.conftest import stock_command, subprocess_env
from tests.test_finetune_e2e import PUBLISHED_KERNELS, PUBLISHED_POOLS, published_genesis_checkpoint


def transfer_cli(*args):
    return subprocess.run([stock_command("nnUNet_genesis_transfer"), *map(str, args)], env=subprocess_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300)


def test_two_channel_task_adapts_the_first_convolution(mri_task, tmp_path):
    weights = tmp_path / "genesis.pt"
    published_genesis_checkpoint(str(weights))
    report_file = tmp_path / "report.json"
    done = transfer_cli("-w", weights, "-t", mri_task.task_id, "-o", report_file)
    assert done.returncode == 0, done.stderr
    report = json.loads(report_file.read_text())
    first = next(e for e in report["entries"] if e["key"] == "conv_blocks_context.0.blocks.0.conv.weight")
    assert first["status"] == "adapted" and first["target_shape"][1] == 2 and first["source_shape"][1] == 1
    assert "conv_blocks_context.0.blocks.0.conv.weight" in done.stdout and "adapted" in done.stdout


def test_checkpoint_sharing_no_encoder_stage_is_refused(ct_task, tmp_path):
    from nnunet_genesis.nnunet_v1.network import build_generic_unet
    foreign = build_generic_unet(1, 16, 1, PUBLISHED_POOLS, PUBLISHED_KERNELS)  # 16 features: nothing fits
    weights = tmp_path / "foreign.pt"
    torch.save({"state_dict": foreign.state_dict()}, weights)
    done = transfer_cli("-w", weights, "-t", ct_task.task_name)
    assert done.returncode == 1
    assert "encoder" in done.stderr and "0.0 %" in done.stderr, done.stderr


def test_bad_input_names_the_file(ct_task, tmp_path):
    missing = tmp_path / "nope.model"
    done = transfer_cli("-w", missing, "-t", ct_task.task_name)
    assert done.returncode == 2 and str(missing) in done.stderr
    not_a_checkpoint = tmp_path / "notes.txt"
    not_a_checkpoint.write_text("hello")
    done = transfer_cli("-w", not_a_checkpoint, "-t", ct_task.task_name)
    assert done.returncode == 2 and str(not_a_checkpoint) in done.stderr
