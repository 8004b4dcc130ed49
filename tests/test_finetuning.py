"""The fine-tuning schedule: plain functions, then the real trainer built from a planned task (no training)."""
import os

import pytest
import torch

from nnunet_genesis.transfer.finetuning import (FRESH, TRANSFERRED, parameter_groups, transferred_names_from_optimizer_state,
                                       warmup_lr_scale)
from tests.test_finetune_e2e import published_genesis_checkpoint


def test_warmup_lr_scale():
    assert warmup_lr_scale(0, 10, 0.0) == 0.0
    assert warmup_lr_scale(9, 10, 0.1) == 0.1
    assert warmup_lr_scale(10, 10, 0.0) == 1.0
    assert warmup_lr_scale(0, 0, 0.0) == 1.0  # no warm-up


def test_linear_warmup_to_a_lower_rate_for_transferred_layers():
    # nnssl-like: ramp from 0 over 4 epochs to 0.1 x the rate, and stay there
    assert [warmup_lr_scale(e, 4, 0.0, "linear", 0.1) for e in range(6)] == pytest.approx(
        [0.0, 0.025, 0.05, 0.075, 0.1, 0.1])
    assert warmup_lr_scale(2, 4, 0.5, "constant", 0.1) == 0.5
    with pytest.raises(ValueError, match="warm-up shape"):
        warmup_lr_scale(0, 4, 0.0, "cosine")


def test_parameter_groups_split_and_record_names():
    net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1))
    groups = parameter_groups(net.named_parameters(), ["0.weight", "0.bias"])
    assert [g["genesis_role"] for g in groups] == [FRESH, TRANSFERRED]
    assert groups[1]["genesis_param_names"] == ["0.weight", "0.bias"]
    assert groups[0]["params"][0] is net[1].weight
    optimizer = torch.optim.SGD(groups, lr=0.1)
    assert transferred_names_from_optimizer_state(optimizer.state_dict()) == ["0.weight", "0.bias"]
    assert parameter_groups(net.named_parameters(), [])[0]["genesis_role"] == FRESH
    assert len(parameter_groups(net.named_parameters(), [])) == 1


def make_trainer(task, output_folder, trainer_class=None):
    from nnunet_genesis.nnunet_v1.trainers import nnUNetTrainerV2_Genesis
    trainer = (trainer_class or nnUNetTrainerV2_Genesis)(task.plans_3d_file, 0, output_folder=str(output_folder),
                                      dataset_directory=task.preprocessed_dir, batch_dice=False, stage=0,
                                      unpack_data=False, deterministic=False, fp16=False)
    trainer.initialize(training=False)
    return trainer


def lrs_by_role(trainer):
    return {g["genesis_role"]: g["lr"] for g in trainer.optimizer.param_groups}


@pytest.fixture()
def pretrained_trainer(ct_task, tmp_path):
    weights = str(tmp_path / "w.pt")
    published_genesis_checkpoint(weights)
    trainer = make_trainer(ct_task, tmp_path / "fold")
    # what stock nnUNet_train does with -pretrained_weights, routed here by the integration hook
    from nnunet.run.load_pretrained_weights import load_pretrained_weights
    load_pretrained_weights(trainer.network, weights)
    return trainer, weights


def test_stock_pretrained_loader_uses_the_adaptive_transfer(pretrained_trainer):
    trainer, _ = pretrained_trainer
    assert os.path.isfile(os.path.join(trainer.output_folder, "transfer_report.json"))
    roles = [g["genesis_role"] for g in trainer.optimizer.param_groups]
    assert roles == [FRESH, TRANSFERRED]
    fresh = trainer.optimizer.param_groups[0]["genesis_param_names"]
    # default mode: the encoder came from W; decoder and heads start fresh
    assert {n.split(".")[0] for n in fresh} == {"conv_blocks_localization", "tu", "seg_outputs"}
    transferred = trainer.optimizer.param_groups[1]["genesis_param_names"]
    assert transferred and all(n.startswith("conv_blocks_context") for n in transferred)


def test_encoder_decoder_variant_transfers_all_but_the_heads(ct_task, tmp_path):
    from nnunet.run.load_pretrained_weights import load_pretrained_weights
    from nnunet_genesis.nnunet_v1.trainers import nnUNetTrainerV2_GenesisEncoderDecoder
    weights = str(tmp_path / "w.pt")
    published_genesis_checkpoint(weights)
    trainer = make_trainer(ct_task, tmp_path / "fold", nnUNetTrainerV2_GenesisEncoderDecoder)
    load_pretrained_weights(trainer.network, weights)
    fresh = trainer.optimizer.param_groups[0]["genesis_param_names"]
    assert fresh and all(n.startswith("seg_outputs") for n in fresh)  # encoder and decoder came from W


def test_warm_up_then_everything_trains(pretrained_trainer):
    trainer, _ = pretrained_trainer
    trainer.maybe_update_lr(0)
    assert lrs_by_role(trainer)[TRANSFERRED] == 0.0 and lrs_by_role(trainer)[FRESH] == pytest.approx(trainer.initial_lr)
    trainer.maybe_update_lr(trainer.genesis_warmup_epochs)
    lrs = lrs_by_role(trainer)
    assert lrs[TRANSFERRED] == lrs[FRESH] > 0


def test_resume_rebuilds_the_groups_before_loading_the_optimizer(pretrained_trainer, ct_task, tmp_path):
    trainer, _ = pretrained_trainer
    trainer.save_checkpoint(str(tmp_path / "model_latest.model"))
    resumed = make_trainer(ct_task, tmp_path / "fold")
    assert len(resumed.optimizer.param_groups) == 1  # nothing known before the checkpoint is read
    resumed.load_checkpoint(str(tmp_path / "model_latest.model"), train=True)
    assert [g["genesis_role"] for g in resumed.optimizer.param_groups] == [FRESH, TRANSFERRED]
    assert resumed.transferred_parameter_names == trainer.transferred_parameter_names


def test_refused_transfer_fails_loudly_and_leaves_the_network(ct_task, tmp_path):
    from nnunet.run.load_pretrained_weights import load_pretrained_weights
    from nnunet_genesis.transfer.finetuning import PretrainedWeightsRefused
    from nnunet_genesis.nnunet_v1.network import build_generic_unet
    foreign = build_generic_unet(1, 16, 1, [[2, 2, 2]] * 3, [[3, 3, 3]] * 4)
    weights = str(tmp_path / "foreign.pt")
    torch.save({"state_dict": foreign.state_dict()}, weights)
    trainer = make_trainer(ct_task, tmp_path / "fold")
    before = {k: v.clone() for k, v in trainer.network.state_dict().items()}
    with pytest.raises(PretrainedWeightsRefused) as refused:   # a SystemExit: the stock command ends with 1 line
        load_pretrained_weights(trainer.network, weights)
    assert refused.value.code == 1 and "REFUSED" in refused.value.line and refused.value.report is not None
    after = trainer.network.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert os.path.isfile(os.path.join(trainer.output_folder, "transfer_report.json"))


def test_default_transfer_shrinks_and_perturbs_towards_the_networks_own_initialisation(ct_task, tmp_path):
    # the real v1 trainer, its network's initialisation taken before stock -pretrained_weights loading
    import json
    from nnunet.run.load_pretrained_weights import load_pretrained_weights
    from nnunet_genesis.transfer.shrink_perturb import DEFAULT_PRETRAINED_SHARE
    weights = str(tmp_path / "w.pt")
    source = published_genesis_checkpoint(weights)
    trainer = make_trainer(ct_task, tmp_path / "fold")
    assert trainer.genesis_pretrained_share == DEFAULT_PRETRAINED_SHARE == 0.3
    init = {name: p.detach().clone() for name, p in trainer.plain_network.named_parameters()}
    load_pretrained_weights(trainer.network, weights)
    with open(os.path.join(trainer.output_folder, "transfer_report.json")) as f:
        report = json.load(f)
    mixed = set(report["shrink_and_perturb"]["mixed_parameter_names"])
    assert report["shrink_and_perturb"]["pretrained_share"] == DEFAULT_PRETRAINED_SHARE and mixed
    params = dict(trainer.plain_network.named_parameters())
    share, checked = DEFAULT_PRETRAINED_SHARE, 0
    for entry in report["entries"]:
        if entry["status"] != "loaded":
            continue
        key, value = entry["key"], params[entry["key"]].detach()
        if value.dim() > 1:
            assert key in mixed
            assert torch.allclose(value, share * source[entry["source_key"]] + (1 - share) * init[key], atol=1e-6), key
            checked += 1
        else:
            assert key not in mixed and torch.equal(value, source[entry["source_key"]]), key
    assert checked > 0
    assert set(trainer.transferred_parameter_names) >= mixed


def test_pretrained_share_one_keeps_the_pretrained_weights(ct_task, tmp_path):
    import json
    from nnunet.run.load_pretrained_weights import load_pretrained_weights
    from nnunet_genesis.nnunet_v1.trainers import nnUNetTrainerV2_Genesis

    class PlainTransfer(nnUNetTrainerV2_Genesis):
        genesis_pretrained_share = 1.0

    weights = str(tmp_path / "w.pt")
    source = published_genesis_checkpoint(weights)
    trainer = make_trainer(ct_task, tmp_path / "fold", PlainTransfer)
    load_pretrained_weights(trainer.network, weights)
    with open(os.path.join(trainer.output_folder, "transfer_report.json")) as f:
        report = json.load(f)
    assert report["shrink_and_perturb"] == {"pretrained_share": 1.0, "mixed_parameter_names": []}
    params = dict(trainer.plain_network.named_parameters())
    loaded = [e for e in report["entries"] if e["status"] == "loaded"]
    assert loaded and all(torch.equal(params[e["key"]].detach(), source[e["source_key"]]) for e in loaded)
