"""Tests of the adaptive transfer with nnU-Net v2 networks (issue #13): v1 -> v2, v2 -> v2, v2 -> v1.

Real networks only: v2 ``PlainConvUNet`` / ``ResidualEncoderUNet`` built with dynamic_network_architectures'
classes and the kwargs nnU-Net v2's planners write (``default_experiment_planner.py``,
``residual_unets/residual_encoder_unet_planners.py``: conv bias, affine InstanceNorm, LeakyReLU, no
dropout), v1 ``Generic_UNet`` as nnUNetTrainerV2 builds it.  Expected fractions are computed by hand from
features and kernel sizes (``conv_numel``), not from the implementation's state-dict walk.
"""
import json

import numpy as np
import pytest
import torch
from dynamic_network_architectures.architectures.unet import PlainConvUNet, ResidualEncoderUNet
from torch import nn

from nnunet_genesis.nnunet_v1.network import build_generic_unet
from nnunet_genesis.transfer.weights import (TransferRefused, TransferReport, load_state_dict_from_checkpoint,
                                             plan_transfer, transfer_weights)
from nnunet_genesis.transfer.rules import canonical_keys
from tests.gpu_saved import save_as_if_on_gpu

FULL = "encoder+decoder"
PUBLISHED_POOLS = [[2, 2, 2]] * 4 + [[1, 2, 2]]  # the published Models Genesis nnU-Net (GUIDE.md)
PUBLISHED_KERNELS = [[3, 3, 3]] * 6
V2_KWARGS = dict(conv_bias=True, norm_op=nn.InstanceNorm3d, norm_op_kwargs={"eps": 1e-5, "affine": True},
                 dropout_op=None, dropout_op_kwargs=None, nonlin=nn.LeakyReLU, nonlin_kwargs={"inplace": True})


def plain_unet(features, kernels=3, strides=None, channels=1, classes=3, seed=0):
    torch.manual_seed(seed)
    n = len(features)
    strides = strides or [1] + [2] * (n - 1)
    return PlainConvUNet(channels, n, features, nn.Conv3d, kernels, strides, 2, classes, 2,
                         deep_supervision=True, **V2_KWARGS)


def resenc_unet(features, blocks, kernels=3, strides=None, channels=1, classes=3, seed=0):
    torch.manual_seed(seed)
    n = len(features)
    strides = strides or [1] + [2] * (n - 1)
    return ResidualEncoderUNet(channels, n, features, nn.Conv3d, kernels, strides, blocks, classes, 1,
                               deep_supervision=True, **V2_KWARGS)


def clone_state(network):
    return {k: v.detach().clone() for k, v in network.state_dict().items()}


def conv_numel(cin, cout, taps=27, norm=True, bias=True):
    """Parameters of conv (+bias) (+affine norm) with ``taps`` kernel taps."""
    return cout * cin * taps + (cout if bias else 0) + (2 * cout if norm else 0)


def published_checkpoint(path, base=16, seed=0):
    """The published Models Genesis format: {'epoch', 'state_dict' with DataParallel 'module.' prefixes,
    'optimizer_state_dict'}, saved from a GPU, of the published network's layout (1 channel, pools
    [[2,2,2]]x4 + [[1,2,2]], 3x3x3 kernels) at half its width (16 base features instead of 32: a quarter of
    the 31 M parameters, for speed; features 16 ... 256, 320).  Returns the source network."""
    torch.manual_seed(seed)
    net = build_generic_unet(1, base, 1, PUBLISHED_POOLS, PUBLISHED_KERNELS)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    save_as_if_on_gpu({"epoch": 7, "state_dict": {"module." + k: v for k, v in net.state_dict().items()},
                       "optimizer_state_dict": optimizer.state_dict()}, path)
    return net


@pytest.fixture(scope="module")
def published(module_tmp_path_factory):
    path = module_tmp_path_factory.mktemp("genesis") / "Genesis_Chest_CT.pt"
    return str(path), published_checkpoint(path)


# ----------------------------------------------------------------------------------------------
# (a) v1 Models Genesis checkpoint -> v2 PlainConvUNet
# ----------------------------------------------------------------------------------------------

def test_published_genesis_checkpoint_into_v2_plain_unet(published):
    path, source = published
    # an MRI-like v2 plan: 2 modalities, anisotropic first stage (1x3x3), 5 of the source's 6 stages
    target = plain_unet([16, 32, 64, 128, 256], kernels=[[1, 3, 3]] + [[3, 3, 3]] * 4,
                        strides=[[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2]], channels=2, seed=5)
    before = clone_state(target)
    report = transfer_weights(target, path)  # the default: mode "encoder"

    assert report.source == path and report.mode == "encoder"
    assert report.encoder_fraction == 1.0  # every target stage exists in the source with its features
    assert report.decoder_fraction == 0.0  # not selected in encoder mode
    assert report.counts["adapted"] == 2  # the two 1x3x3 convolutions of level 0
    src = source.state_dict()
    enc = target.encoder.stages
    # rule (a) then (b): every input channel = sum of the source channels / 2, then the 3 slices summed
    w0 = src["conv_blocks_context.0.blocks.0.conv.weight"]
    expected = (w0.sum(dim=1, keepdim=True) / 2).repeat(1, 2, 1, 1, 1).sum(dim=2, keepdim=True)
    assert torch.allclose(enc[0][0].convs[0].conv.weight, expected, atol=1e-6)
    assert torch.equal(enc[0][0].convs[1].conv.weight,
                       src["conv_blocks_context.0.blocks.1.conv.weight"].sum(dim=2, keepdim=True))
    # same shapes: copied; v1 instnorm -> v2 norm; the v1 bottleneck spelling conv_blocks_context.P.c.blocks.0
    assert torch.equal(enc[1][0].convs[0].conv.weight, src["conv_blocks_context.1.blocks.0.conv.weight"])
    assert torch.equal(enc[3][0].convs[1].norm.bias, src["conv_blocks_context.3.blocks.1.instnorm.bias"])
    assert torch.equal(enc[4][0].convs[1].conv.weight, src["conv_blocks_context.4.blocks.1.conv.weight"])
    # untouched: decoder and heads keep their initialisation
    after = target.state_dict()
    for key in after:
        if key.startswith(("decoder.stages", "decoder.transpconvs", "decoder.seg_layers")):
            assert torch.equal(after[key], before[key]), key
    # the source's level-5 stage has no counterpart in a 5-stage target
    assert "conv_blocks_context.5.0.blocks.0.conv.weight" in report.unused_source_keys


def test_v1_into_v2_with_more_stages_aligns_the_decoder_from_the_top(tmp_path):
    torch.manual_seed(1)
    source = build_generic_unet(1, 4, 2, [[2, 2, 2]] * 2, [[3, 3, 3]] * 3)  # features 4, 8, 16
    path = tmp_path / "genesis.pt"
    torch.save({"epoch": 1, "state_dict": {"module." + k: v for k, v in source.state_dict().items()},
                "optimizer_state_dict": {}}, path)
    f = [4, 8, 16, 32]
    target = plain_unet(f, seed=2)
    before = clone_state(target)
    # the new deepest stage holds most parameters: under the default policy the transfer is refused,
    # and the network is left untouched
    with pytest.raises(TransferRefused, match="only 24.7 % of the encoder's parameters"):
        transfer_weights(target, str(path), mode=FULL)
    assert all(torch.equal(v, before[k]) for k, v in target.state_dict().items())
    report = transfer_weights(target, str(path), mode=FULL, allow_partial=True)

    enc = [conv_numel(([1] + f)[l], f[l]) + conv_numel(f[l], f[l]) for l in range(4)]
    assert report.encoder_fraction == sum(enc[:3]) / sum(enc)  # level 3 is not in the source
    # decoder level l: transposed conv (f[l+1] -> f[l], 2x2x2, bias) + conv (2 f[l] -> f[l]) + conv (f[l] -> f[l]);
    # v1's transposed convolutions have no bias, and the source has decoder levels 0 and 1 only
    dec = [f[l + 1] * f[l] * 8 + f[l] + conv_numel(2 * f[l], f[l]) + conv_numel(f[l], f[l]) for l in range(3)]
    assert report.decoder_fraction == (sum(dec[:2]) - f[0] - f[1]) / sum(dec)
    src = source.state_dict()
    # level 0 (next to the output) is the last index in both versions
    assert torch.equal(target.decoder.stages[2].convs[1].conv.weight,
                       src["conv_blocks_localization.1.1.blocks.0.conv.weight"])
    assert torch.equal(target.decoder.transpconvs[2].weight, src["tu.1.weight"])
    assert torch.equal(target.decoder.transpconvs[1].weight, src["tu.0.weight"])
    assert torch.equal(target.decoder.stages[0].convs[0].conv.weight, before["decoder.stages.0.convs.0.conv.weight"])
    assert torch.equal(target.decoder.transpconvs[2].bias, before["decoder.transpconvs.2.bias"])
    statuses = {e.key: e.status for e in report.entries}
    assert statuses["encoder.stages.3.0.convs.0.conv.weight"] == "not_in_source"
    assert statuses["decoder.transpconvs.0.weight"] == "not_in_source"
    assert statuses["decoder.seg_layers.2.weight"] == "excluded"


# ----------------------------------------------------------------------------------------------
# (b) v2 -> v2 with other plans
# ----------------------------------------------------------------------------------------------

def test_plain_unet_into_plain_unet_with_other_plans_adapts_and_reports():
    source = plain_unet([8, 16, 32, 64], seed=1)
    kernels = [[1, 3, 3], [1, 3, 3], [3, 3, 3], [3, 3, 3]]
    target = plain_unet([8, 16, 32, 48], kernels=kernels, strides=[1, [1, 2, 2], 2, 2], channels=3, seed=2)
    before = clone_state(target)
    report = transfer_weights(target, source, mode=FULL, allow_partial=True)

    taps = [9, 9, 27, 27]
    f, cin = [8, 16, 32, 48], [3, 8, 16, 32]
    enc = [conv_numel(cin[l], f[l], taps[l]) + conv_numel(f[l], f[l], taps[l]) for l in range(4)]
    assert report.encoder_fraction == sum(enc[:3]) / sum(enc)  # level 3: 64 vs 48 features
    s, t = source.state_dict(), target.state_dict()
    first = "encoder.stages.0.0.convs.0.conv.weight"
    expected = (s[first].sum(dim=1, keepdim=True) / 3).repeat(1, 3, 1, 1, 1).sum(dim=2, keepdim=True)
    assert torch.allclose(t[first], expected, atol=1e-6)
    assert torch.equal(t["encoder.stages.1.0.convs.1.conv.weight"],
                       s["encoder.stages.1.0.convs.1.conv.weight"].sum(dim=2, keepdim=True))
    # transposed convolution to level 0 upsamples by the target's (1,2,2) stride of level 1: taps averaged
    tu = "decoder.transpconvs.2.weight"
    assert torch.allclose(t[tu], s[tu].mean(dim=2, keepdim=True))
    entries = {e.key: e for e in report.entries}
    assert entries["encoder.stages.3.0.convs.1.conv.weight"].status == "skipped"
    assert entries["encoder.stages.3.0.convs.1.conv.weight"].reason == "output features 64 vs 48 (source vs target)"
    assert torch.equal(t["encoder.stages.3.0.convs.1.conv.weight"], before["encoder.stages.3.0.convs.1.conv.weight"])
    assert entries[tu].status == "adapted" and "averaged" in entries[tu].reason
    assert "kernel axis 0 3->1 summed" in report.format()


# ----------------------------------------------------------------------------------------------
# (c) ResidualEncoderUNet
# ----------------------------------------------------------------------------------------------

def test_resenc_into_resenc_with_identical_plans_loads_the_whole_encoder():
    source = resenc_unet([8, 16, 32], [1, 2, 2], seed=1)
    target = resenc_unet([8, 16, 32], [1, 2, 2], seed=2)
    before = clone_state(target)
    report = transfer_weights(target, source.state_dict())

    assert report.encoder_fraction == 1.0 and report.decoder_fraction == 0.0
    s, t = source.state_dict(), target.state_dict()
    for key in t:
        if key.startswith("encoder."):
            assert torch.equal(t[key], s[key]), key
        elif not key.startswith("decoder.encoder."):
            assert torch.equal(t[key], before[key]), key
    assert {e.status for e in report.entries if e.part == "encoder"} == {"loaded"}

    # the whole network (heads included) makes the two networks compute the same function
    transfer_weights(target, source, mode=FULL, include_seg_outputs=True, strict=True)
    x = torch.randn(1, 1, 8, 8, 8)
    with torch.no_grad():
        assert torch.equal(source.eval()(x)[0], target.eval()(x)[0])


def test_resenc_with_more_blocks_and_other_kernels_adapts_block_by_block():
    source = resenc_unet([8, 16, 32], [1, 1, 1], seed=1)
    target = resenc_unet([8, 16, 32], [1, 2, 2], kernels=[[1, 3, 3], [3, 3, 3], [3, 3, 3]], seed=2)
    report = transfer_weights(target, source, allow_partial=True)

    entries = {e.key: e for e in report.entries}
    s, t = source.state_dict(), target.state_dict()
    assert entries["encoder.stem.convs.0.conv.weight"].status == "adapted"  # 3x3x3 -> 1x3x3
    assert torch.equal(t["encoder.stages.0.blocks.0.conv2.conv.weight"],
                       s["encoder.stages.0.blocks.0.conv2.conv.weight"].sum(dim=2, keepdim=True))
    assert torch.equal(t["encoder.stages.2.blocks.0.skip.1.conv.weight"], s["encoder.stages.2.blocks.0.skip.1.conv.weight"])
    assert entries["encoder.stages.1.blocks.1.conv1.conv.weight"].status == "not_in_source"
    assert "block 1" in entries["encoder.stages.1.blocks.1.conv1.conv.weight"].reason
    block = conv_numel(16, 16) * 2  # one residual block of level 1 (two 16 -> 16 convolutions)
    total = sum(e.numel for e in report.entries if e.part == "encoder")
    assert total == sum(p.numel() for n, p in target.named_parameters() if n.startswith("encoder."))
    assert report.encoder_fraction == (total - block - conv_numel(32, 32) * 2) / total


def test_plain_and_residual_units_do_not_mix():
    """A residual block's convolutions compute a residual: they never fill a plain stage, nor the reverse."""
    report = transfer_weights(plain_unet([8, 16, 32], seed=2), resenc_unet([8, 16, 32], [1, 1, 1], seed=1),
                              allow_partial=True)
    # only the ResEnc stem, a plain convolution at level 0, has a counterpart: the first plain convolution
    assert {e.key for e in report.entries if e.transferred} == {
        f"encoder.stages.0.0.convs.0.{leaf}" for leaf in ("conv.weight", "conv.bias", "norm.weight", "norm.bias")}
    f = [8, 16, 32]
    total = sum(conv_numel(([1] + f)[l], f[l]) + conv_numel(f[l], f[l]) for l in range(3))
    assert report.encoder_fraction == conv_numel(1, 8) / total


# ----------------------------------------------------------------------------------------------
# (d) aliases
# ----------------------------------------------------------------------------------------------

def test_aliases_are_loaded_with_their_tensor_and_counted_once(published):
    path, source = published
    target = plain_unet([16, 32, 64, 128], seed=3)
    state = target.state_dict()
    updates, report = plan_transfer(state, load_state_dict_from_checkpoint(path), mode=FULL,
                                    include_seg_outputs=True, source_name=path)
    # every key of the target is loaded, aliases included, except the heads (1 source class vs 3 target
    # classes: skipped) and the transposed convolutions' biases (v1 has none)
    assert set(updates) == {k for k in state if not k.startswith("decoder.seg_layers.")
                            and not (k.startswith("decoder.transpconvs.") and k.endswith(".bias"))}
    assert report.aliases["encoder.stages.1.0.convs.0.all_modules.0.weight"] == "encoder.stages.1.0.convs.0.conv.weight"
    assert report.aliases["encoder.stages.1.0.convs.0.all_modules.1.bias"] == "encoder.stages.1.0.convs.0.norm.bias"
    assert report.aliases["decoder.encoder.stages.2.0.convs.1.all_modules.0.weight"] == \
        "encoder.stages.2.0.convs.1.conv.weight"
    assert not set(report.aliases) & {e.key for e in report.entries}
    # one entry per distinct tensor: the parts add up to the network's parameters, each counted once
    assert sum(e.numel for e in report.entries) == sum(p.numel() for p in target.parameters())
    assert {e.key for e in report.entries} == {n for n, _ in target.named_parameters()}
    again = TransferReport.from_dict(json.loads(json.dumps(report.to_dict())))  # transfer_report.json
    assert again.aliases == report.aliases and again.encoder_fraction == report.encoder_fraction
    # fresh names cover aliases too (the warm-up may look up either name)
    fresh = plan_transfer(state, load_state_dict_from_checkpoint(path))[1].fresh_parameter_names()
    assert {"decoder.stages.0.convs.0.conv.weight", "decoder.stages.0.convs.0.all_modules.0.weight"} <= set(fresh)
    assert not {"encoder.stages.0.0.convs.0.all_modules.0.weight", "decoder.encoder.stages.0.0.convs.0.conv.weight",
                "encoder.stages.0.0.convs.0.conv.weight"} & set(fresh)

    transfer_weights(target, path, mode=FULL)
    conv = target.encoder.stages[1][0].convs[0]
    src = source.state_dict()["conv_blocks_context.1.blocks.0.conv.weight"]
    assert torch.equal(conv.all_modules[0].weight, src) and torch.equal(conv.conv.weight, src)
    assert torch.equal(target.state_dict()["decoder.encoder.stages.1.0.convs.0.all_modules.0.weight"], src)


def test_source_aliases_without_shared_storage_are_still_folded():
    """A v2 state dict whose copies were made one by one (no shared storage): aliases found by name."""
    source = plain_unet([8, 16, 32], seed=1)
    cloned = clone_state(source)
    names = canonical_keys(cloned)
    assert names["encoder.stages.0.0.convs.1.all_modules.1.weight"] == "encoder.stages.0.0.convs.1.norm.weight"
    assert names["decoder.encoder.stages.2.0.convs.0.conv.bias"] == "encoder.stages.2.0.convs.0.conv.bias"
    target = plain_unet([8, 16, 32], seed=2)
    report = transfer_weights(target, cloned, mode=FULL, include_seg_outputs=True, strict=True)
    assert report.unused_source_keys == {}
    assert report.counts["loaded"] == len(list(target.parameters()))


def test_v2_into_v1_generic_unet():
    f = [4, 8, 16]
    source = plain_unet(f, seed=1)
    target = build_generic_unet(1, 4, 3, [[2, 2, 2]] * 2, [[3, 3, 3]] * 3)
    report = transfer_weights(target, source, mode=FULL)
    assert report.encoder_fraction == 1.0
    # the only decoder tensors v1 has are weights: all loaded
    assert report.decoder_fraction == 1.0
    assert torch.equal(target.conv_blocks_context[2][1].blocks[0].instnorm.weight,
                       source.encoder.stages[2][0].convs[1].norm.weight)
    assert torch.equal(target.tu[0].weight, source.decoder.transpconvs[0].weight)
    # the unused source tensors are v2's biases of the upsampling and the heads, never an alias
    names = canonical_keys(source.state_dict())
    assert report.unused_source_keys and all(names[k] == k for k in report.unused_source_keys)
    assert "decoder.transpconvs.0.bias" in report.unused_source_keys


# ----------------------------------------------------------------------------------------------
# (e) nnU-Net v2 checkpoint files
# ----------------------------------------------------------------------------------------------

def test_nnunet_v2_checkpoint_file_is_read(tmp_path):
    source = plain_unet([8, 16, 32], seed=1)
    optimizer = torch.optim.SGD(source.parameters(), lr=0.01, momentum=0.99, nesterov=True)
    checkpoint = {  # what nnunetv2's nnUNetTrainer.save_checkpoint writes
        "network_weights": source.state_dict(),
        "optimizer_state": optimizer.state_dict(),
        "grad_scaler_state": None,
        "logging": {"mean_fg_dice": [np.float64(0.5)], "ema_fg_dice": [0.5],
                    "dice_per_class_or_region": [[np.float64(0.4), np.float64(0.6)]],
                    "train_losses": [np.float32(-0.3)], "val_losses": [np.float32(-0.2)], "lrs": [0.01],
                    "epoch_start_timestamps": [1.0], "epoch_end_timestamps": [2.0]},
        "_best_ema": np.float64(0.5),
        "current_epoch": 1,
        "init_args": {"plans": {"plans_name": "nnUNetPlans"}, "configuration": "3d_fullres", "fold": 0,
                      "dataset_json": {"labels": {"background": 0, "a": 1}}, "device": torch.device("cpu")},
        "trainer_name": "nnUNetTrainer",
        "inference_allowed_mirroring_axes": (0, 1, 2),
    }
    path = tmp_path / "checkpoint_final.pth"
    torch.save(checkpoint, path)

    state = load_state_dict_from_checkpoint(path)
    assert state.keys() == source.state_dict().keys()
    target = plain_unet([8, 16, 32], seed=2)
    report = transfer_weights(target, str(path))
    assert report.source == str(path) and report.encoder_fraction == 1.0
    assert torch.equal(target.encoder.stages[2][0].convs[1].conv.weight, source.encoder.stages[2][0].convs[1].conv.weight)
