"""Shrink and perturb after a transfer (Ash & Adams, "On warm-starting neural network training", NeurIPS 2020).

After the adaptive transfer (:mod:`nnunet_genesis.transfer.weights`), every transferred convolution weight
(a tensor of more than one dimension) becomes

    w = s * w_pretrained + (1 - s) * w_fresh

where ``w_fresh`` is the value the target network held before the transfer (nnU-Net's own He initialisation:
where a network trained from scratch starts) and ``s`` the pretrained share, in (0, 1]; 1 keeps the
pretrained weights as they are. Normalisation weights and biases (one dimension) stay as transferred, and
nothing that was not transferred is touched. Framework-free apart from torch: the network comes from the
caller.

Why (issue #18, docs/measurements_study18_finetuning.md): the pretrained encoders' activations are far less
diverse than a fresh network's (effective rank 2-25x lower, while their weights keep a near-fresh
spectrum), and fine-tuning from them learned more slowly than from scratch. On the fold's validation
cases, s = 0.3 was above the plain transfer in every measured setting on Task601_DeepGrey (MRI cases smaller
than the patch; 5 seeds at 2 and 4 labelled cases, 100 iterations: +0.130 and +0.078 Dice; 2 seeds at 400
iterations: +0.022) and mixed on Task602_HeadCT (+0.007 at 2, -0.023 at 4 labelled cases). "Transferred"
covers adapted tensors too (the report's ``loaded`` and ``adapted``).
"""
from typing import Dict, Iterable, List

import torch

DEFAULT_PRETRAINED_SHARE = 0.3


def check_share(share: float) -> float:
    """``share`` as a float, or a ValueError naming the setting when it is outside (0, 1]."""
    share = float(share)
    if not 0.0 < share <= 1.0:
        raise ValueError("genesis_pretrained_share must be in (0, 1] (1: the pretrained weights as they are), "
                         "got %r" % share)
    return share


def snapshot(network: torch.nn.Module) -> Dict[str, torch.Tensor]:
    """A copy of every parameter of ``network`` (its initialisation, taken before the transfer)."""
    return {name: parameter.detach().clone() for name, parameter in network.named_parameters()}


def shrink_and_perturb(network: torch.nn.Module, fresh: Dict[str, torch.Tensor], transferred: Iterable[str],
                       share: float) -> List[str]:
    """In place: every parameter of ``network`` named in ``transferred`` with more than one dimension becomes
    ``share`` x its value + (1 - ``share``) x ``fresh[name]``. Returns the names changed (none when
    ``share`` is 1)."""
    share = check_share(share)
    if share == 1.0:
        return []
    names = set(transferred)
    mixed = []
    with torch.no_grad():
        for name, parameter in network.named_parameters():
            if name in names and parameter.dim() > 1:
                parameter.mul_(share).add_(fresh[name].to(parameter.device, parameter.dtype), alpha=1.0 - share)
                mixed.append(name)
    return mixed
