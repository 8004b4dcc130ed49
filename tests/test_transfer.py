"""Tests of nnunet_genesis.transfer.weights: adaptive loading of pretrained Generic_UNet weights (no training).

Expectations are computed independently of the implementation: rule properties are checked through
torch.nn.functional convolutions, stage alignment through key mappings written out by hand, and
fractions from the target's own state dict.
"""
import json
import pickle
import re
import zipfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from nnunet_genesis.transfer.weights import (
    CheckpointError,
    TransferRefused,
    TransferReport,
    adapt_conv_kernel,
    adapt_input_channels,
    adapt_transposed_conv_kernel,
    allow_nnunet_checkpoint_globals,
    load_state_dict_from_checkpoint,
    plan_transfer,
    transfer_weights,
)
from nnunet_genesis.nnunet_v1.network import build_generic_unet, build_network_from_plans

FULL = "encoder+decoder"  # the rules of both parts; the default mode transfers the encoder only

ISO3 = [[2, 2, 2]] * 3  # three isotropic pooling steps
ISO4 = [[2, 2, 2]] * 4


def small_unet(channels=1, base=4, classes=3, pools=ISO3, kernels=None, seed=0):
    """A small Generic_UNet as nnUNetTrainerV2 builds it; ``seed`` makes differently initialised copies."""
    torch.manual_seed(seed)
    kernels = kernels or [[3, 3, 3]] * (len(pools) + 1)
    return build_generic_unet(channels, base, classes, pools, kernels)


def clone_state(network):
    return {k: v.detach().clone() for k, v in network.state_dict().items()}


def assert_same_tensors(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# ----------------------------------------------------------------------------------------------
# exact loads, checkpoint formats
# ----------------------------------------------------------------------------------------------

def test_identical_networks_transfer_everything_but_the_segmentation_heads():
    source, target = small_unet(seed=1), small_unet(seed=2)
    target_before = clone_state(target)
    report = transfer_weights(target, source.state_dict(), mode=FULL)

    assert report.encoder_fraction == 1.0 and report.decoder_fraction == 1.0
    seg_keys = [k for k in target_before if k.startswith("seg_outputs.")]
    assert len(seg_keys) == 3
    after = target.state_dict()
    for key, value in after.items():
        if key in seg_keys:
            assert torch.equal(value, target_before[key])  # excluded: untouched
            assert not torch.equal(value, source.state_dict()[key])
        else:
            assert torch.equal(value, source.state_dict()[key]), key
    assert sorted(report.fresh_parameter_names()) == sorted(seg_keys)
    assert report.counts["excluded"] == 3 and report.counts["loaded"] == len(after) - 3
    assert report.format().splitlines()[0].startswith(
        "transferred 100.0 % of encoder parameters")


def test_models_genesis_file_with_module_prefixes(tmp_path):
    source, target = small_unet(seed=1), small_unet(seed=2)
    optimizer = torch.optim.SGD(source.parameters(), lr=0.1, momentum=0.9)
    path = tmp_path / "Genesis_Chest_CT.pt"
    # the published format: {'epoch', 'state_dict', 'optimizer_state_dict'}, saved from DataParallel
    torch.save({"epoch": 42, "state_dict": {"module." + k: v for k, v in source.state_dict().items()},
                "optimizer_state_dict": optimizer.state_dict()}, path)

    state_dict = load_state_dict_from_checkpoint(path)
    assert_same_tensors(state_dict, source.state_dict())

    report = transfer_weights(target, str(path), mode=FULL)
    assert report.source == str(path)
    assert torch.equal(target.conv_blocks_context[0].blocks[0].conv.weight,
                       source.conv_blocks_context[0].blocks[0].conv.weight)


def test_nnunet_model_file_with_numpy_scalars_loads_weights_only(tmp_path):
    network = small_unet(seed=3)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.01, momentum=0.99, nesterov=True)
    network(torch.randn(1, 1, 16, 16, 16))[0].sum().backward()
    optimizer.step()  # real momentum buffers in the optimizer state
    losses = np.array([0.9, 0.7], dtype=np.float32)
    checkpoint = {  # what nnU-Net v1's NetworkTrainer.save_checkpoint writes
        "epoch": 2,
        "state_dict": network.state_dict(),
        "optimizer_state_dict": optimizer.state_dict(),
        "lr_scheduler_state_dict": None,
        "plot_stuff": ([np.mean(losses), np.mean(losses[1:])], [np.float32(0.8)], [], [np.float64(0.25)]),
        "best_stuff": (1, np.float32(0.75), np.float64(0.25)),
        "amp_grad_scaler": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5,
                            "growth_interval": 2000, "_growth_tracker": 0},
    }
    path = tmp_path / "model_final_checkpoint.model"
    torch.save(checkpoint, path)
    # the file really needs the allow-list: its pickle calls numpy's scalar and dtype constructors
    with zipfile.ZipFile(path) as archive:
        pickled = archive.read(next(n for n in archive.namelist() if n.endswith("data.pkl")))
    assert b"multiarray\nscalar" in pickled and b"numpy\ndtype" in pickled

    assert_same_tensors(load_state_dict_from_checkpoint(path), network.state_dict())
    allow_nnunet_checkpoint_globals()
    allow_nnunet_checkpoint_globals()  # idempotent
    loaded = torch.load(path, map_location="cpu")  # default weights_only=True
    assert loaded["best_stuff"][1] == np.float32(0.75)
    assert loaded["plot_stuff"][0][0] == pytest.approx(0.8)


def test_numpy1_era_names_are_allowed(tmp_path):
    """Checkpoints pickled under numpy 1.x name numpy.core.multiarray.scalar instead of numpy._core...."""
    path = tmp_path / "old.model"
    torch.save({"state_dict": {"w": torch.ones(2)}, "best_stuff": (np.float64(0.5),)}, path,
               _use_new_zipfile_serialization=False)  # legacy format: the pickle is plain bytes in the file
    data = path.read_bytes()
    assert b"numpy._core.multiarray\nscalar" in data
    path.write_bytes(data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    assert torch.equal(load_state_dict_from_checkpoint(path)["w"], torch.ones(2))


class NotAllowedInCheckpoints:
    pass


def test_checkpoint_with_arbitrary_objects_is_refused_not_executed(tmp_path):
    path = tmp_path / "pickled_object.model"
    torch.save({"state_dict": {"w": torch.ones(1)}, "extra": NotAllowedInCheckpoints()}, path)
    with pytest.raises(CheckpointError) as info:
        load_state_dict_from_checkpoint(path)
    assert str(path) in str(info.value) and "weights-only" in str(info.value)


def test_bad_inputs_give_errors_naming_file_and_fault(tmp_path):
    text_file = tmp_path / "notes.txt"
    text_file.write_text("this is not a checkpoint\n")
    with pytest.raises(CheckpointError, match="notes.txt.*is not a PyTorch checkpoint"):
        load_state_dict_from_checkpoint(text_file)
    with pytest.raises(FileNotFoundError, match="missing.model"):
        load_state_dict_from_checkpoint(tmp_path / "missing.model")
    no_weights = tmp_path / "no_weights.pt"
    torch.save({"epoch": 3, "optimizer_state_dict": {}}, no_weights)
    with pytest.raises(CheckpointError, match="no_weights.pt.*without weights.*epoch"):
        load_state_dict_from_checkpoint(no_weights)


_CUDA_TAG = {"on": False}
_CUDA_TAGGER_REGISTERED = []


def test_checkpoint_saved_on_gpu_opens_on_cpu(tmp_path):
    """Storages tagged 'cuda:0' (as a GPU-saved checkpoint has) open thanks to map_location='cpu'.

    No GPU here, so the tag is written by a storage tagger registered through torch's public
    ``register_package``; it only acts while ``_CUDA_TAG['on']``.
    """
    if not _CUDA_TAGGER_REGISTERED:
        torch.serialization.register_package(
            1, lambda storage: "cuda:0" if _CUDA_TAG["on"] else None, lambda storage, location: None)
        _CUDA_TAGGER_REGISTERED.append(True)
    weights = {"conv_blocks_context.0.blocks.0.conv.weight": torch.randn(2, 1, 3, 3, 3)}
    path = tmp_path / "gpu.model"
    _CUDA_TAG["on"] = True
    try:
        torch.save({"epoch": 1, "state_dict": weights}, path)
    finally:
        _CUDA_TAG["on"] = False
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(path)  # proves the storages carry a CUDA location
    loaded = load_state_dict_from_checkpoint(path)
    key = "conv_blocks_context.0.blocks.0.conv.weight"
    assert loaded[key].device.type == "cpu" and torch.equal(loaded[key], weights[key])


# ----------------------------------------------------------------------------------------------
# adaptation rules
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("old_channels,new_channels", [(1, 2), (1, 4), (2, 4), (4, 2)])
def test_input_channel_rule_keeps_the_response_to_equal_channels(old_channels, new_channels):
    torch.manual_seed(0)
    weight, bias = torch.randn(6, old_channels, 3, 3, 3), torch.randn(6)
    adapted = adapt_input_channels(weight, new_channels)
    assert adapted.shape == (6, new_channels, 3, 3, 3)
    expected_kernel = sum(weight[:, c] for c in range(old_channels)) / new_channels
    for c in range(new_channels):
        assert torch.allclose(adapted[:, c], expected_kernel)
    x = torch.randn(1, 1, 6, 7, 5)
    source_response = F.conv3d(x.repeat(1, old_channels, 1, 1, 1), weight, bias, padding=1)
    target_response = F.conv3d(x.repeat(1, new_channels, 1, 1, 1), adapted, bias, padding=1)
    assert torch.allclose(target_response, source_response, atol=1e-5)


@pytest.mark.parametrize("modalities", [2, 4])
def test_one_channel_network_into_multimodal_task(modalities):
    source, target = small_unet(channels=1, seed=1), small_unet(channels=modalities, seed=2)
    report = transfer_weights(target, source, mode=FULL)
    first = "conv_blocks_context.0.blocks.0.conv.weight"
    entry = next(e for e in report.entries if e.key == first)
    assert entry.status == "adapted" and f"1->{modalities}" in entry.reason
    source_weight = source.state_dict()[first]
    assert torch.allclose(target.state_dict()[first], source_weight.repeat(1, modalities, 1, 1, 1) / modalities)
    x = torch.randn(1, 1, 6, 6, 6)
    with torch.no_grad():
        expected = source.conv_blocks_context[0].blocks[0].conv(x)
        got = target.conv_blocks_context[0].blocks[0].conv(x.repeat(1, modalities, 1, 1, 1))
    assert torch.allclose(got, expected, atol=1e-5)
    assert report.encoder_fraction == 1.0 and report.decoder_fraction == 1.0


def test_collapsing_a_kernel_axis_keeps_the_response_to_inputs_constant_along_it():
    torch.manual_seed(0)
    weight = torch.randn(4, 2, 3, 3, 3)
    adapted, note = adapt_conv_kernel(weight, (1, 3, 3))
    assert adapted.shape == (4, 2, 1, 3, 3) and "3->1" in note
    x = torch.randn(1, 2, 1, 7, 6).expand(1, 2, 5, 7, 6)  # constant along axis 0
    source_response = F.conv3d(x, weight, padding=(1, 1, 1))
    target_response = F.conv3d(x, adapted, padding=(0, 1, 1))
    # interior slices: the source's zero padding along axis 0 only affects the two border slices
    assert torch.allclose(target_response[:, :, 1:-1], source_response[:, :, 1:-1], atol=1e-5)


def test_growing_a_kernel_axis_keeps_the_slicewise_response():
    torch.manual_seed(0)
    weight = torch.randn(4, 2, 1, 3, 3)
    adapted, note = adapt_conv_kernel(weight, (3, 3, 3))
    assert adapted.shape == (4, 2, 3, 3, 3) and "centre" in note
    assert torch.count_nonzero(adapted[:, :, 0]) == 0 and torch.count_nonzero(adapted[:, :, 2]) == 0
    x = torch.randn(1, 2, 5, 7, 6)  # any input, not constant along axis 0
    source_response = F.conv3d(x, weight, padding=(0, 1, 1))
    target_response = F.conv3d(x, adapted, padding=(1, 1, 1))
    assert torch.allclose(target_response, source_response, atol=1e-5)


def test_kernel_sizes_without_a_rule_are_refused():
    adapted, reason = adapt_conv_kernel(torch.randn(4, 2, 5, 3, 3), (3, 3, 3))
    assert adapted is None and "5 vs 3" in reason


def test_transposed_kernel_rules_average_or_repeat_the_output():
    torch.manual_seed(0)
    x = torch.randn(1, 8, 3, 4, 4)
    weight = torch.randn(8, 4, 2, 2, 2)  # (in, out, k), kernel == stride
    shrunk, note = adapt_transposed_conv_kernel(weight, (1, 2, 2))
    assert shrunk.shape == (8, 4, 1, 2, 2) and "averaged" in note
    source_output = F.conv_transpose3d(x, weight, stride=(2, 2, 2))
    expected = F.avg_pool3d(source_output, kernel_size=(2, 1, 1))
    assert torch.allclose(F.conv_transpose3d(x, shrunk, stride=(1, 2, 2)), expected, atol=1e-5)

    weight_2d = torch.randn(8, 4, 1, 2, 2)
    grown, note = adapt_transposed_conv_kernel(weight_2d, (2, 2, 2))
    assert grown.shape == (8, 4, 2, 2, 2) and "repeated" in note
    source_output = F.conv_transpose3d(x, weight_2d, stride=(1, 2, 2))
    expected = source_output.repeat_interleave(2, dim=2)
    assert torch.allclose(F.conv_transpose3d(x, grown, stride=(2, 2, 2)), expected, atol=1e-5)


# ----------------------------------------------------------------------------------------------
# stage alignment
# ----------------------------------------------------------------------------------------------

def test_fewer_stages_in_target_loads_shallow_encoder_and_aligns_decoder_from_the_top():
    source, target = small_unet(pools=ISO4, seed=1), small_unet(pools=ISO3, seed=2)
    report = transfer_weights(target, source, strict=True, mode=FULL)
    src = source.state_dict()

    def source_key(key):
        """By hand: target has 3 pools, source 4. Target bottleneck (level 3) <- source plain stage 3;
        decoder index u (level 2 - u) <- source index u + 1 (level 3 - (u + 1))."""
        key = re.sub(r"^conv_blocks_context\.3\.(\d)\.blocks\.0\.", r"conv_blocks_context.3.blocks.\1.", key)
        key = re.sub(r"^conv_blocks_localization\.(\d)", lambda m: f"conv_blocks_localization.{int(m[1]) + 1}", key)
        return re.sub(r"^tu\.(\d)", lambda m: f"tu.{int(m[1]) + 1}", key)

    for key, value in target.state_dict().items():
        if not key.startswith("seg_outputs"):
            assert torch.equal(value, src[source_key(key)]), key
    assert report.encoder_fraction == 1.0 and report.decoder_fraction == 1.0
    unused = set(report.unused_source_keys)
    assert "conv_blocks_context.4.0.blocks.0.conv.weight" in unused  # source bottleneck: deeper than target
    assert "tu.0.weight" in unused and "conv_blocks_localization.0.0.blocks.0.conv.weight" in unused


def test_more_stages_in_target_loads_shallow_stages_and_leaves_the_rest_fresh():
    source, target = small_unet(pools=ISO3, seed=1), small_unet(pools=ISO4, seed=2)
    before = clone_state(target)
    report = transfer_weights(target, source, allow_partial=True, mode=FULL)
    src, after = source.state_dict(), target.state_dict()

    def source_key(key):
        """By hand: source bottleneck (level 3, convolutions in groups 0 and 1) -> target plain stage 3;
        target decoder index u (level 3 - u) <- source index u - 1; target level 4 and decoder index 0 are new."""
        key = re.sub(r"^conv_blocks_context\.3\.blocks\.(\d)\.", r"conv_blocks_context.3.\1.blocks.0.", key)
        key = re.sub(r"^conv_blocks_localization\.(\d)", lambda m: f"conv_blocks_localization.{int(m[1]) - 1}", key)
        return re.sub(r"^tu\.(\d)", lambda m: f"tu.{int(m[1]) - 1}", key)

    fresh = {k for k in after if k.startswith(("conv_blocks_context.4.", "conv_blocks_localization.0.", "tu.0.",
                                                "seg_outputs."))}
    for key, value in after.items():
        if key in fresh:
            assert torch.equal(value, before[key]), key
        else:
            assert torch.equal(value, src[source_key(key)]), key
    assert sorted(report.fresh_parameter_names()) == sorted(fresh)
    encoder = [k for k in after if k.startswith("conv_blocks_context.")]
    decoder = [k for k in after if k.startswith(("tu.", "conv_blocks_localization."))]
    expected_encoder = sum(after[k].numel() for k in encoder if k not in fresh) / sum(after[k].numel() for k in encoder)
    expected_decoder = sum(after[k].numel() for k in decoder if k not in fresh) / sum(after[k].numel() for k in decoder)
    assert report.encoder_fraction == pytest.approx(expected_encoder)
    assert report.decoder_fraction == pytest.approx(expected_decoder)
    statuses = {e.key: e.status for e in report.entries}
    assert statuses["conv_blocks_context.4.0.blocks.0.conv.weight"] == "not_in_source"
    assert statuses["tu.0.weight"] == "not_in_source"


def test_transfer_below_the_minimum_is_refused_and_leaves_the_network_untouched():
    source, target = small_unet(pools=ISO3, seed=1), small_unet(pools=ISO4, seed=2)
    before = clone_state(target)
    with pytest.raises(TransferRefused) as info:
        transfer_weights(target, source, mode=FULL)  # the deep level-4 stage holds most encoder parameters
    assert_same_tensors(target.state_dict(), before)
    report = info.value.report
    assert isinstance(info.value, RuntimeError)
    assert report.encoder_fraction < 0.5
    assert report.summary() in str(info.value) and "tu.0.weight" in str(info.value)
    assert "allow_partial" in str(info.value)

    transfer_weights(target, source, allow_partial=True, mode=FULL)
    assert torch.equal(target.conv_blocks_context[0].blocks[0].conv.weight,
                       source.conv_blocks_context[0].blocks[0].conv.weight)


def test_feature_count_mismatch_is_skipped_with_reason():
    source, target = small_unet(base=5, seed=1), small_unet(base=4, seed=2)
    _, report = plan_transfer(target.state_dict(), source.state_dict(), mode=FULL)
    by_key = {e.key: e for e in report.entries}
    first = by_key["conv_blocks_context.0.blocks.0.conv.weight"]
    assert first.status == "skipped" and "5 vs 4" in first.reason and "output features" in first.reason
    assert by_key["conv_blocks_context.0.blocks.0.instnorm.weight"].status == "skipped"
    assert "5 vs 4" in by_key["conv_blocks_context.0.blocks.0.instnorm.weight"].reason
    assert report.encoder_fraction == 0.0
    with pytest.raises(TransferRefused):
        transfer_weights(target, source, mode=FULL)


# ----------------------------------------------------------------------------------------------
# parts, modes, strictness
# ----------------------------------------------------------------------------------------------

def test_segmentation_heads_only_on_request():
    source, target = small_unet(seed=1), small_unet(seed=2)
    report = transfer_weights(target, source, include_seg_outputs=True, mode=FULL)
    for u in range(3):
        assert torch.equal(target.seg_outputs[u].weight, source.seg_outputs[u].weight)
    assert report.counts["excluded"] == 0 and report.fresh_parameter_names() == []

    other_classes = small_unet(classes=2, seed=3)
    _, report = plan_transfer(other_classes.state_dict(), source.state_dict(), include_seg_outputs=True, mode=FULL)
    heads = [e for e in report.entries if e.part == "seg_outputs"]
    assert all(e.status == "skipped" and "classes 3 vs 2" in e.reason for e in heads)


def test_encoder_mode_leaves_the_decoder_fresh():
    source, target = small_unet(seed=1), small_unet(seed=2)
    before = clone_state(target)
    report = transfer_weights(target, source, mode="encoder", strict=True)
    for key, value in target.state_dict().items():
        expected = source.state_dict()[key] if key.startswith("conv_blocks_context.") else before[key]
        assert torch.equal(value, expected), key
    assert report.encoder_fraction == 1.0 and report.decoder_fraction == 0.0
    assert all(e.status == "excluded" for e in report.entries if e.part == "decoder")
    assert "decoder not selected" in report.summary()


def test_strict_refuses_anything_not_transferred_in_the_selected_parts():
    source = small_unet(seed=1)
    transfer_weights(small_unet(seed=2), source, strict=True, mode=FULL)  # identical architecture: fine

    target = small_unet(classes=2, seed=2)
    before = clone_state(target)
    with pytest.raises(TransferRefused, match="strict"):
        transfer_weights(target, source, include_seg_outputs=True, strict=True, mode=FULL)
    assert_same_tensors(target.state_dict(), before)
    transfer_weights(target, source, include_seg_outputs=False, strict=True, mode=FULL)  # heads not selected: fine

    deeper = small_unet(pools=ISO4, seed=2)
    with pytest.raises(TransferRefused, match="strict"):  # strict holds even with allow_partial
        transfer_weights(deeper, source, allow_partial=True, strict=True, mode=FULL)


def test_plan_transfer_is_pure():
    source, target = small_unet(pools=ISO4, seed=1), small_unet(channels=2, seed=2)
    source_state, target_state = clone_state(source), clone_state(target)
    updates, report = plan_transfer(target.state_dict(), source.state_dict(), mode=FULL)
    assert_same_tensors(source.state_dict(), source_state)
    assert_same_tensors(target.state_dict(), target_state)
    assert set(updates) == {e.key for e in report.entries if e.status in ("loaded", "adapted")}
    key = "conv_blocks_context.1.blocks.0.conv.weight"
    updates[key].zero_()  # updates are copies, not views of the source
    assert torch.equal(source.state_dict()[key], source_state[key])


def test_report_json_round_trip(tmp_path):
    source, target = small_unet(pools=ISO4, seed=1), small_unet(channels=2, seed=2)
    report = transfer_weights(target, source, mode=FULL)
    path = tmp_path / "transfer_report.json"
    report.save_json(path)
    data = json.loads(path.read_text())
    assert data["encoder_fraction"] == pytest.approx(report.encoder_fraction)
    assert len(data["entries"]) == len(target.state_dict())
    assert {"key", "part", "status", "reason", "numel", "source_shape", "target_shape"} <= set(data["entries"][0])
    again = TransferReport.load_json(path)
    assert again.format() == report.format()
    assert again.fresh_parameter_names() == report.fresh_parameter_names()
    compact = report.format(show_loaded=False)
    assert len(compact.splitlines()) < len(report.format().splitlines())


def test_published_genesis_style_network_into_an_anisotropic_four_modality_task():
    torch.manual_seed(0)
    genesis = build_generic_unet(1, 32, 1, [[2, 2, 2]] * 4 + [[1, 2, 2]], [[3, 3, 3]] * 6)
    target = build_generic_unet(4, 32, 4, [[1, 2, 2], [2, 2, 2], [2, 2, 2]],
                                [[1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]])
    report = transfer_weights(target, genesis, mode=FULL)
    adapted = {e.key for e in report.entries if e.status == "adapted"}
    # by hand: level 0 has 1x3x3 kernels in the encoder (convs 0 and 1), 4 input channels at the first
    # conv, and the level-0 upsampling is (1,2,2) in the target vs (2,2,2).  (Generic_UNet gives decoder
    # stage u the kernel conv_kernel_sizes[-(u + 1)], i.e. that of level l + 1, so the level-0 decoder
    # convolutions are 3x3x3 in both networks and load unchanged.)
    assert adapted == {"conv_blocks_context.0.blocks.0.conv.weight", "conv_blocks_context.0.blocks.1.conv.weight",
                       "tu.2.weight"}
    assert tuple(target.conv_blocks_localization[2][0].blocks[0].conv.weight.shape[2:]) == (3, 3, 3)
    assert report.encoder_fraction == 1.0 and report.decoder_fraction == 1.0
    assert report.counts["skipped"] == 0 and report.counts["not_in_source"] == 0


# ----------------------------------------------------------------------------------------------
# networks from plans
# ----------------------------------------------------------------------------------------------

def _plans():
    stage = {"batch_size": 2, "num_pool_per_axis": [2, 3, 3], "do_dummy_2D_data_aug": False}
    return {
        "num_modalities": 2, "num_classes": 2, "all_classes": [1, 2], "base_num_features": 8, "conv_per_stage": 2,
        "plans_per_stage": {
            0: dict(stage, patch_size=[16, 32, 32], pool_op_kernel_sizes=[[1, 2, 2], [2, 2, 2]],
                    conv_kernel_sizes=[[1, 3, 3], [3, 3, 3], [3, 3, 3]]),
            1: dict(stage, patch_size=[16, 64, 64], pool_op_kernel_sizes=[[1, 2, 2], [2, 2, 2], [2, 2, 2]],
                    conv_kernel_sizes=[[1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]]),
        },
        "dataset_properties": {"intensityproperties": None}, "normalization_schemes": {0: "nonCT", 1: "nonCT"},
        "use_mask_for_norm": {0: False, 1: False}, "keep_only_largest_region": None,
        "min_region_size_per_class": None, "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
    }


def test_network_from_plans_matches_the_one_nnunet_trainer_builds(tmp_path):
    from nnunet.training.network_training.nnUNetTrainerV2 import nnUNetTrainerV2

    plans_file = tmp_path / "nnUNetPlansv2.1_plans_3D.pkl"
    plans_file.write_bytes(pickle.dumps(_plans()))
    trainer = nnUNetTrainerV2(str(plans_file), 0, output_folder=str(tmp_path / "out"),
                              dataset_directory=str(tmp_path), stage=1, unpack_data=False, deterministic=False)
    with open(plans_file, "rb") as handle:
        trainer.process_plans(pickle.load(handle))
    trainer.initialize_network()
    expected = {k: tuple(v.shape) for k, v in trainer.network.state_dict().items()}

    ours = build_network_from_plans(plans_file)  # default: last stage, as 3d_fullres
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == expected
    assert ours.conv_blocks_context[0].blocks[0].conv.in_channels == 2 and ours.num_classes == 3

    lowres = build_network_from_plans(_plans(), stage=0, num_classes=5)
    assert len(lowres.conv_blocks_context) == 3 and lowres.num_classes == 5
    with pytest.raises(ValueError, match="no stage 7"):
        build_network_from_plans(_plans(), stage=7)


def test_foreign_architecture_is_refused_with_its_keys_listed_as_unused():
    """E.g. the original Models Genesis UNet3D (keys like down_tr64...) is not a Generic_UNet."""
    foreign = {"down_tr64.ops.0.conv1.weight": torch.randn(32, 1, 3, 3, 3), "out_tr.final_conv.bias": torch.randn(1)}
    target = small_unet(seed=2)
    before = clone_state(target)
    with pytest.raises(TransferRefused) as info:
        transfer_weights(target, foreign, mode=FULL)
    assert_same_tensors(target.state_dict(), before)
    report = info.value.report
    assert report.encoder_fraction == 0.0 and report.counts["not_in_source"] == len(before) - 3
    assert set(report.unused_source_keys) == set(foreign)
    assert all("no counterpart" in why for why in report.unused_source_keys.values())

    _, not_a_unet = plan_transfer({"fc.weight": torch.zeros(2, 2)}, foreign, mode=FULL)
    assert any("not a Generic_UNet" in reason for reason in not_a_unet.refusal_reasons())
