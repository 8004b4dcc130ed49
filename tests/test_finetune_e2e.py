"""End to end with the stock console scripts: a Models-Genesis-format checkpoint fine-tuned by a user's
tiny nnUNetTrainerV2_Genesis subclass found through nnUNet_extTrainer, then nnUNet_predict.

Pipeline: nnUNet_convert_decathlon_task -> nnUNet_plan_and_preprocess (the ct_task fixture)
-> nnUNet_train 3d_fullres <ext trainer> Task901_FakeCT 0 -pretrained_weights W
-> nnUNet_train ... -val and -c (checkpoints load weights-only under torch >= 2.6)
-> nnUNet_predict -> predictions on the test images' grid.
"""
import json
import os

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from nnunet_genesis.transfer.shrink_perturb import DEFAULT_PRETRAINED_SHARE
from tests.conftest import run_stock, stock_command, subprocess_env
from tests.gpu_saved import save_as_if_on_gpu

# The published Models Genesis nnU-Net network: 1 channel, 32 base features, 3x3x3 kernels.
PUBLISHED_POOLS = [[2, 2, 2]] * 4 + [[1, 2, 2]]
PUBLISHED_KERNELS = [[3, 3, 3]] * 6

TINY_TRAINER = '''
from nnunet_genesis.nnunet_v1.trainers import nnUNetTrainerV2_Genesis


class nnUNetTrainerV2_Genesis_Tiny(nnUNetTrainerV2_Genesis):
    """Two epochs of two iterations. The warm-up covers the whole run, so the transferred weights
    must come out of training as the transfer left them (frozen), while the fresh heads train."""
    genesis_warmup_epochs = 2

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_num_epochs = 2
        self.num_batches_per_epoch = 2
        self.num_val_batches_per_epoch = 1
'''


def published_genesis_checkpoint(path, seed=0):
    """A checkpoint in the published Models Genesis format: {'epoch', 'state_dict', 'optimizer_state_dict'},
    saved from a GPU (tensors tagged cuda) with DataParallel 'module.' prefixes."""
    from nnunet_genesis.nnunet_v1.network import build_generic_unet
    torch.manual_seed(seed)
    net = build_generic_unet(1, 32, 1, PUBLISHED_POOLS, PUBLISHED_KERNELS)
    state = {"module." + k: v for k, v in net.state_dict().items()}
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    save_as_if_on_gpu({"epoch": 7, "state_dict": state, "optimizer_state_dict": optimizer.state_dict()}, path)
    return net.state_dict()


@pytest.fixture(scope="module")
def finetuned(ct_task, module_tmp_path_factory):
    root = module_tmp_path_factory.mktemp("finetune")
    ext = root / "ext_trainers"
    ext.mkdir()
    (ext / "tiny.py").write_text(TINY_TRAINER)
    weights = str(root / "genesis_published.pt")
    source_state = published_genesis_checkpoint(weights)
    env = subprocess_env(nnUNet_extTrainer=str(ext))
    train_log = run_stock([stock_command("nnUNet_train"), "3d_fullres", "nnUNetTrainerV2_Genesis_Tiny",
                           ct_task.task_name, "0", "-pretrained_weights", weights], env=env, timeout=1200)
    fold = os.path.join(os.environ["RESULTS_FOLDER"], "nnUNet", "3d_fullres", ct_task.task_name,
                        "nnUNetTrainerV2_Genesis_Tiny__nnUNetPlansv2.1", "fold_0")
    return dict(root=root, env=env, fold=fold, weights=weights, source_state=source_state, train_log=train_log)


def test_transfer_report_is_in_the_fold_folder(finetuned):
    with open(os.path.join(finetuned["fold"], "transfer_report.json")) as f:
        report = json.load(f)
    # The planned network is shallower than the published one and its first stage is 1x3x3, so
    # some tensors are adapted, but every encoder stage it has exists in the published network.
    assert report["encoder_fraction"] == pytest.approx(1.0)
    statuses = {e["key"]: e["status"] for e in report["entries"]}
    assert all(statuses[k] in ("loaded", "adapted") for k in statuses if k.startswith("conv_blocks_context"))
    assert all(statuses[k] != "loaded" for k in statuses if k.startswith("seg_outputs"))
    assert "transferred" in finetuned["train_log"] and "encoder" in finetuned["train_log"]


def test_frozen_transferred_weights_survive_the_warm_up(finetuned):
    from nnunet_genesis.checkpoints.files import allow_nnunet_checkpoint_globals
    allow_nnunet_checkpoint_globals()
    ckpt = torch.load(os.path.join(finetuned["fold"], "model_final_checkpoint.model"), map_location="cpu")
    with open(os.path.join(finetuned["fold"], "transfer_report.json")) as f:
        report = json.load(f)
    loaded = [(e["key"], e["source_key"]) for e in report["entries"] if e["status"] == "loaded"]
    mixed = set(report["shrink_and_perturb"]["mixed_parameter_names"])
    assert report["shrink_and_perturb"]["pretrained_share"] == DEFAULT_PRETRAINED_SHARE and mixed
    assert "Shrink and perturb: %d transferred convolution weights" % len(mixed) in finetuned["train_log"]
    final, source = [], []
    for key, source_key in loaded:
        if key in mixed:  # share x the source + (1 - share) x the network's own initialisation
            # (exact: test_finetuning.py)
            assert not torch.equal(ckpt["state_dict"][key], finetuned["source_state"][source_key]), key
            final.append(ckpt["state_dict"][key].flatten())
            source.append(finetuned["source_state"][source_key].flatten())
        else:  # norms and biases: loaded unchanged from the source, and frozen during the warm-up
            assert torch.equal(ckpt["state_dict"][key], finetuned["source_state"][source_key]), key
    # frozen too: the source's share of the final weights is still the default share (least squares over >100k
    # independent elements: the fresh initialisation's contribution is of order 1/sqrt(n) = 0.003, far inside 0.05)
    final, source = torch.cat(final).double(), torch.cat(source).double()
    assert final.numel() > 100_000
    assert abs(float(final @ source / (source @ source)) - DEFAULT_PRETRAINED_SHARE) < 0.05


def test_validation_only_and_continue_load_checkpoints(finetuned, ct_task):
    # -val and -c both torch.load nnU-Net checkpoints (numpy scalars inside) under weights-only loading
    base = [stock_command("nnUNet_train"), "3d_fullres", "nnUNetTrainerV2_Genesis_Tiny", ct_task.task_name, "0"]
    out_val = run_stock(base + ["-val"], env=finetuned["env"])
    assert "Weights only load failed" not in out_val
    out_c = run_stock(base + ["-c"], env=finetuned["env"])
    assert "Weights only load failed" not in out_c
    assert os.path.isfile(os.path.join(finetuned["fold"], "validation_raw", "summary.json"))


def test_predict_writes_test_images_grid(finetuned, ct_task, tmp_path):
    images_ts = os.path.join(ct_task.raw_dir, "imagesTs")
    out = tmp_path / "pred"
    run_stock([stock_command("nnUNet_predict"), "-i", images_ts, "-o", str(out), "-t", ct_task.task_name,
               "-m", "3d_fullres", "-tr", "nnUNetTrainerV2_Genesis_Tiny", "-f", "0"], env=finetuned["env"])
    cases = sorted(f[:-len("_0000.nii.gz")] for f in os.listdir(images_ts) if f.endswith("_0000.nii.gz"))
    assert cases
    for case in cases:
        image = sitk.ReadImage(os.path.join(images_ts, case + "_0000.nii.gz"))
        pred = sitk.ReadImage(str(out / (case + ".nii.gz")))
        assert pred.GetSize() == image.GetSize()
        np.testing.assert_allclose(pred.GetSpacing(), image.GetSpacing(), atol=1e-5)
        np.testing.assert_allclose(pred.GetOrigin(), image.GetOrigin(), atol=1e-4)
        np.testing.assert_allclose(pred.GetDirection(), image.GetDirection(), atol=1e-6)
        labels = set(np.unique(sitk.GetArrayFromImage(pred)).tolist())
        assert labels <= {0, 1, 2}


def test_stock_ensembling_takes_our_trainers_predictions(finetuned, ct_task, tmp_path):
    """nnUNet_ensemble works on prediction folders (softmax .npz + plans.pkl), whatever trainer made them."""
    images_ts = os.path.join(ct_task.raw_dir, "imagesTs")
    folders = []
    for step in ("0.5", "1"):  # two differently predicted softmax sets of the same model
        out = tmp_path / ("pred_step_" + step)
        run_stock([stock_command("nnUNet_predict"), "-i", images_ts, "-o", str(out), "-t", ct_task.task_name,
                   "-m", "3d_fullres", "-tr", "nnUNetTrainerV2_Genesis_Tiny", "-f", "0", "--save_npz",
                   "--step_size", step], env=finetuned["env"])
        folders.append(str(out))
    ensembled = tmp_path / "ensembled"
    run_stock([stock_command("nnUNet_ensemble"), "-f", *folders, "-o", str(ensembled)], env=finetuned["env"])
    expected = {f[:-len("_0000.nii.gz")] + ".nii.gz" for f in os.listdir(images_ts) if f.endswith("_0000.nii.gz")}
    assert expected and expected <= set(os.listdir(ensembled))
