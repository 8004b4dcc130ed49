"""nnssl's adaptation plan (nnunet_genesis/checkpoints/adaptation_plan.py): built from nnU-Net v2 plans, checked against
nnssl's schema (``tests/nnssl_schema.json``, copied from nnssl's dataclasses) and read back the way nnU-Net
master reads it; nnssl-format checkpoints through our transfer (``tests/nnssl_format.py`` writes them as nnssl
does).  The end-to-end side (our pretraining writing the plan, an nnssl checkpoint through ``nnUNetv2_train``)
is in ``tests/test_v2_e2e.py``.
"""
import copy
import json

import pytest
import torch

from nnunet_genesis.checkpoints import adaptation_plan
from nnunet_genesis.checkpoints.files import CheckpointError
from nnunet_genesis.transfer.weights import TransferRefused, TransferReport, transfer_weights
from tests.nnssl_format import (PRIMUS_KEYS, RESENC_KEYS, build_like_nnunet_master, load_like_nnunet_master,
                                load_schema, nnssl_plan, primus_like_state_dict, read_like_nnunet_master,
                                resenc_l_like, save_nnssl_checkpoint, schema_faults)

KW_IMPORT = ["conv_op", "norm_op", "dropout_op", "nonlin"]
COMMON_KWARGS = {"conv_op": "torch.nn.modules.conv.Conv3d", "kernel_sizes": [[1, 3, 3], [3, 3, 3], [3, 3, 3]],
                 "strides": [[1, 1, 1], [1, 2, 2], [2, 2, 2]], "n_conv_per_stage_decoder": [1, 1], "conv_bias": True,
                 "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d", "norm_op_kwargs": {"eps": 1e-05, "affine": True},
                 "dropout_op": None, "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU",
                 "nonlin_kwargs": {"inplace": True}, "n_stages": 3, "features_per_stage": [8, 16, 32]}


def v2_plans(resenc: bool):
    """Plans as nnUNetv2_plan_and_preprocess (2.8.1) writes them (keys and value types of a real run), for a
    small anisotropic network: PlainConvUNet (nnUNetPlans) or ResidualEncoderUNet (the ResEnc presets)."""
    kwargs = dict(COMMON_KWARGS, **({"n_blocks_per_stage": [1, 2, 2]} if resenc else {"n_conv_per_stage": [2, 2, 2]}))
    name = "ResidualEncoderUNet" if resenc else "PlainConvUNet"
    configuration = {
        "data_identifier": "nnUNetPlans_3d_fullres", "preprocessor_name": "DefaultPreprocessor", "batch_size": 2,
        "patch_size": [16, 32, 32], "median_image_size_in_voxels": [20.0, 40.0, 40.0], "spacing": [3.0, 1.0, 1.0],
        "normalization_schemes": ["ZScoreNormalization", "ZScoreNormalization"], "use_mask_for_norm": [True, True],
        "resampling_fn_data": "resample_data_or_seg_to_shape", "resampling_fn_seg": "resample_data_or_seg_to_shape",
        "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
        "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
        "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
        "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None},
        "architecture": {"network_class_name": "dynamic_network_architectures.architectures.unet." + name,
                         "arch_kwargs": kwargs, "_kw_requires_import": KW_IMPORT},
        "batch_dice": False}
    return {"dataset_name": "Dataset962_GenesisTinyMR", "plans_name": "nnUNetResEncUNetMPlans" if resenc else "nnUNetPlans",
            "original_median_spacing_after_transp": [3.0, 1.0, 1.0], "original_median_shape_after_transp": [20, 40, 40],
            "image_reader_writer": "SimpleITKIO", "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
            "configurations": {"3d_fullres": configuration}, "experiment_planner_used": "ExperimentPlanner",
            "label_manager": "LabelManager", "foreground_intensity_properties_per_channel": {}}


def built_plan(resenc: bool, channels=2):
    plans = v2_plans(resenc)
    configuration = plans["configurations"]["3d_fullres"]
    network = build_like_nnunet_master({"network_class_name": configuration["architecture"]["network_class_name"],
                                        "arch_kwargs": configuration["architecture"]["arch_kwargs"],
                                        "_kw_requires_import": KW_IMPORT}, channels, channels)
    genesis = {"recipe": {"name": "adamw_inpaint", "p_inpaint": 0.8}, "distortion_mix": {"p_paint": 0.9}}
    plan = adaptation_plan.build_plan(plans, "3d_fullres", configuration, channels,
                                      adaptation_plan.network_keys(network), genesis)
    return plan, network


# ----------------------------------------------------------------------------------------------------------------
# the schema checker itself
# ----------------------------------------------------------------------------------------------------------------

def test_the_schema_checker_accepts_nnssls_own_plans_and_finds_each_kind_of_fault():
    for keys, name in ((RESENC_KEYS, "ResEncL"), (PRIMUS_KEYS, "PrimusM")):
        assert schema_faults(nnssl_plan(name, **keys)) == []
    plan = nnssl_plan("ResEncL", **RESENC_KEYS)
    broken = copy.deepcopy(plan)
    del broken["key_to_stem"]
    assert schema_faults(broken) == ["plan: no key_to_stem (AdaptationPlan)"]
    broken = copy.deepcopy(plan)
    broken["pretrain_plan"]["label_manager"] = "LabelManager"       # Plan(**d) takes no other key
    assert schema_faults(broken) == ["plan.pretrain_plan: key 'label_manager' is not a field of Plan"]
    broken = copy.deepcopy(plan)
    broken["pretrain_num_input_channels"] = "1"
    assert schema_faults(broken) == ["plan.pretrain_num_input_channels: '1' is not int"]
    broken = copy.deepcopy(plan)
    broken["pretrain_plan"]["configurations"]["onemmiso"]["spacing"] = ["1", 1, 1]
    assert len(schema_faults(broken)) == 1 and "spacing" in schema_faults(broken)[0]


# ----------------------------------------------------------------------------------------------------------------
# the plan our v2 pretraining writes
# ----------------------------------------------------------------------------------------------------------------

def test_plan_of_a_residual_encoder_network_is_exactly_nnssls_schema():
    plan, _ = built_plan(resenc=True)
    assert schema_faults(plan) == []
    assert set(plan["architecture_plans"]["arch_kwargs"]) == set(load_schema()["DynamicArchitecturePlans"]["fields"])
    assert plan["key_to_encoder"] == "encoder.stages" and plan["key_to_stem"] == "encoder.stem"
    assert plan["keys_to_in_proj"] == list(RESENC_KEYS["keys_to_in_proj"]) and plan["key_to_lpe"] is None
    configuration = adaptation_plan.pretrain_configuration(plan)
    assert configuration["spacing"] == [3.0, 1.0, 1.0] and configuration["patch_size"] == [16, 32, 32]
    assert plan["recommended_downstream_patchsize"] == [16, 32, 32] and plan["pretrain_num_input_channels"] == 2
    json.dumps(plan)   # plain data


def test_plan_of_a_plain_conv_unet_departs_from_nnssl_only_where_plainconvunet_must():
    plan, _ = built_plan(resenc=False)
    # nnssl's DynamicArchitecturePlans has n_blocks_per_stage (residual encoders); PlainConvUNet takes n_conv_per_stage
    assert schema_faults(plan) == [
        "plan.architecture_plans.arch_kwargs: no n_blocks_per_stage (DynamicArchitecturePlans)",
        "plan.architecture_plans.arch_kwargs: key 'n_conv_per_stage' is not a field of DynamicArchitecturePlans"]
    assert plan["key_to_stem"] == "encoder.stages.0"   # PlainConvUNet's stem lies inside its encoder


@pytest.mark.parametrize("resenc", [True, False])
def test_nnunet_master_builds_the_network_from_our_plan_and_loads_encoder_and_stem(tmp_path, resenc):
    plan, network = built_plan(resenc)
    torch.manual_seed(3)
    for parameter in network.parameters():
        torch.nn.init.normal_(parameter)   # weights a fresh network cannot have by chance
    path = tmp_path / "checkpoint_final.pth"
    torch.save(adaptation_plan.plain_data(dict({"network_weights": network.state_dict()},
                                               **adaptation_plan.checkpoint_extras(plan)), arrays="tensor"), path)
    checkpoint, architecture, info = read_like_nnunet_master(str(path))
    assert info["pt_num_in_channels"] == 2 and info["pt_used_patchsize"] == [16, 32, 32]
    assert [c["name"] for c in info["citations"]][0].startswith("Models Genesis")
    downstream = build_like_nnunet_master(architecture, 2, 4)   # a 3-class target: 4 output channels
    assert type(downstream) is type(network)
    load_like_nnunet_master(downstream, checkpoint, info)
    source = network.state_dict()
    for key, value in downstream.state_dict().items():
        if key.startswith(("encoder.", plan["key_to_stem"])):
            assert torch.equal(value, source[key]), key
    assert not torch.equal(downstream.state_dict()["decoder.seg_layers.0.weight"][:1],
                           source["decoder.seg_layers.0.weight"][:1])   # the decoder starts fresh


def test_a_plan_that_is_not_nnssls_is_refused_naming_the_file_and_the_fault():
    plan, _ = built_plan(resenc=True)
    adaptation_plan.validate_plan(plan, "x.pth")
    for change, fault in ((lambda p: p.pop("keys_to_in_proj"), "no keys_to_in_proj"),
                          (lambda p: p.update(pretrain_num_input_channels=0), "pretrain_num_input_channels 0"),
                          (lambda p: p["pretrain_plan"].update(configurations={}), "no configurations"),
                          (lambda p: p.update(recommended_downstream_patchsize="160"), "not a patch size")):
        broken = copy.deepcopy(plan)
        change(broken)
        with pytest.raises(adaptation_plan.PlanError, match=fault) as error:
            adaptation_plan.validate_plan(broken, "x.pth")
        assert str(error.value).startswith("x.pth: nnssl_adaptation_plan is not an adaptation plan in nnssl's schema")


def test_plain_data_leaves_no_numpy_behind():
    import numpy as np
    data = adaptation_plan.plain_data({"a": np.float32(0.5), "b": [np.int64(3), (np.bool_(True),)],
                                       "c": np.arange(3)}, arrays="tensor")
    assert data["a"] == 0.5 and type(data["a"]) is float and type(data["b"][0]) is int
    assert data["b"][1] == (True,) and isinstance(data["c"], torch.Tensor)
    assert adaptation_plan.plain_data(np.arange(2)) == [0, 1]


# ----------------------------------------------------------------------------------------------------------------
# nnssl checkpoints into our transfer
# ----------------------------------------------------------------------------------------------------------------

def test_an_nnssl_resenc_l_checkpoint_transfers_its_encoder_with_the_plan_in_the_report(tmp_path):
    source = resenc_l_like(n_stages=3)
    plan = nnssl_plan("ResEncL", **RESENC_KEYS)
    for release in (True, False):
        path = tmp_path / ("released.pth" if release else "training.pth")
        save_nnssl_checkpoint(path, source.state_dict(), plan, release=release)
        target = resenc_l_like(n_stages=3, output_channels=3, seed=5)     # a 2-class target with the same encoder
        report = transfer_weights(target, str(path))
        assert report.encoder_fraction == 1.0 and report.counts["skipped"] == 0
        assert torch.equal(target.encoder.stem.convs[0].conv.weight, source.encoder.stem.convs[0].conv.weight)
        summary = report.source_plan
        assert summary["architecture"] == "ResEncL" and summary["pretrain_patch_size"] == [160, 160, 160]
        assert summary["trainer_name"] == "BaseMAETrainer"
        line = next(l for l in report.format().splitlines() if l.startswith("source plan:"))
        assert "ResEncL, 1 input channel(s), pretrained on 160x160x160 patches at spacing 1x1x1" in line
        assert ("please cite: BaseMAETrainer" in line) == release
        assert TransferReport.from_dict(json.loads(json.dumps(report.to_dict()))).source_plan == summary


def test_an_nnssl_primus_checkpoint_is_refused_in_one_line_saying_why(tmp_path):
    path = tmp_path / "primus.pth"
    save_nnssl_checkpoint(path, primus_like_state_dict(), nnssl_plan("PrimusM", **PRIMUS_KEYS),
                          trainer_name="BaseEvaMAETrainer")
    target = resenc_l_like(n_stages=3, output_channels=3, seed=5)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(TransferRefused) as refused:
        transfer_weights(target, str(path), allow_partial=True)
    assert len(refused.value.reasons) == 1
    reason = refused.value.reasons[0]
    assert "PrimusM, a transformer" in reason and "none of its weights corresponds" in reason
    assert "PretrainedTrainer_Primusx" in reason
    assert str(refused.value).splitlines()[0] == "pretrained weight transfer refused: " + reason
    assert refused.value.report.source_plan["architecture"] == "PrimusM"
    assert all(torch.equal(v, before[k]) for k, v in target.state_dict().items())


def test_a_plan_that_does_not_fit_its_weights_is_bad_input(tmp_path):
    path = tmp_path / "mislabelled.pth"
    plan = nnssl_plan("ResEncL", **dict(RESENC_KEYS, key_to_encoder="backbone.stages"))
    save_nnssl_checkpoint(path, resenc_l_like(n_stages=2).state_dict(), plan)
    with pytest.raises(CheckpointError, match="key_to_encoder 'backbone.stages' names no tensor") as error:
        transfer_weights(resenc_l_like(n_stages=2, output_channels=3), str(path))
    assert str(error.value).startswith(str(path))
    broken = tmp_path / "broken_plan.pth"
    torch.save({"network_weights": resenc_l_like(n_stages=2).state_dict(),
                "nnssl_adaptation_plan": {"architecture_plans": "ResEncL"}}, broken)
    with pytest.raises(CheckpointError, match="not an adaptation plan in nnssl's schema: no pretrain_plan"):
        transfer_weights(resenc_l_like(n_stages=2, output_channels=3), str(broken))


def test_the_distortion_mix_recorded_is_the_transforms_own_and_plain_data():
    from nnunet_genesis.distortions.composite import GenesisTransform
    from nnunet_genesis.distortions.transforms import LocalPixelShuffleTransform
    # a trainer may override a step with a transform object: the plan records its numbers, not the object
    mix = adaptation_plan.distortion_mix(GenesisTransform(shuffle=LocalPixelShuffleTransform(p_per_channel=0.3),
                                                          p_inpaint=0.8))
    assert mix["shuffle"]["p_per_channel"] == 0.3 and mix["p_inpaint"] == 0.8 and mix["p_paint"] == 0.9
    assert mix["flip"] == {"p_per_round": 0.4, "max_rounds": 3}
    assert json.loads(json.dumps(mix)) == mix
