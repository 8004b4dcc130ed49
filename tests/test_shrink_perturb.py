"""Shrink and perturb (nnunet_genesis/transfer/shrink_perturb.py) on hand-computed tensors."""
import pytest
import torch

from nnunet_genesis.transfer.shrink_perturb import check_share, shrink_and_perturb, snapshot


def tiny_network():
    net = torch.nn.Sequential(torch.nn.Conv3d(1, 2, 1), torch.nn.InstanceNorm3d(2, affine=True), torch.nn.Conv3d(2, 1, 1))
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.fill_(1.0)
    return net


def test_transferred_convolution_weights_mix_pretrained_and_fresh():
    net = tiny_network()
    fresh = snapshot(net)                      # every parameter 1.0 before the "transfer"
    with torch.no_grad():
        for parameter in net.parameters():     # the "transfer": every parameter now 11.0
            parameter.fill_(11.0)
    mixed = shrink_and_perturb(net, fresh, ["0.weight", "0.bias", "1.weight", "1.bias"], 0.3)
    assert mixed == ["0.weight"]              # the one transferred tensor of more than one dimension
    assert torch.allclose(net[0].weight, torch.full_like(net[0].weight, 0.3 * 11.0 + 0.7 * 1.0))  # 4.0
    assert torch.equal(net[0].bias, torch.full_like(net[0].bias, 11.0))    # biases stay as transferred
    assert torch.equal(net[1].weight, torch.full_like(net[1].weight, 11.0))  # so do norms
    assert torch.equal(net[2].weight, torch.full_like(net[2].weight, 11.0))  # not transferred: untouched
    assert fresh["0.weight"].eq(1.0).all()     # the snapshot is a copy


def test_share_one_changes_nothing_and_bad_shares_are_named():
    net = tiny_network()
    before = snapshot(net)
    assert shrink_and_perturb(net, {}, ["0.weight"], 1.0) == []
    assert all(torch.equal(before[name], p) for name, p in net.named_parameters())
    for bad in (0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="genesis_pretrained_share must be in"):
            check_share(bad)
