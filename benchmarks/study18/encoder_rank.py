"""How diverse are an encoder's features? Effective rank per encoder stage, pretrained against fresh (issue #18).

    python benchmarks/study18/encoder_rank.py WEIGHTS TASK [--cases 4] [--seed 0]

WEIGHTS: a v1 checkpoint (``.model``); TASK: the planned v1 target task whose plans build the network and whose
preprocessed training cases are fed (e.g. ``Task601_DeepGrey``). For each encoder stage ``s`` of Generic_UNet
(``conv_blocks_context[s]``) the activations ``A_s`` of the central patch of the first ``--cases`` cases
(padded to the patch) are arranged as C channels x N voxels, and

    effective rank = exp(H(p)),  p_i = lambda_i / sum_j lambda_j,  H(p) = -sum_i p_i log p_i,

with ``lambda_i`` the eigenvalues of the C x C channel correlation matrix of ``A_s`` (Roy & Vetterli, EUSIPCO
2007): C for uncorrelated channels, 1 when every channel is a multiple of one. The same numbers for the network
freshly initialised as nnU-Net does (He init, seed ``--seed``) are the baseline, and the weight matrices'
own effective ranks (the same formula on their squared singular values) are printed as well. A baseline in the
same run, not a threshold: the question is how much less diverse the pretrained features are.
"""
import argparse
import glob
import os

import numpy as np
import torch
import torch.nn.functional as F

from nnunet_genesis.checkpoints.files import read_checkpoint_file
from nnunet_genesis.nnunet_v1.network import build_network_from_plans


def effective_rank(eigenvalues: torch.Tensor) -> float:
    """exp of the entropy of the normalised non-negative ``eigenvalues`` (module doc)."""
    values = eigenvalues.clamp(min=0)
    p = values / values.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def activation_rank(activations: torch.Tensor) -> float:
    """Effective rank of the channel correlation of ``activations`` (B, C, *spatial); constant channels
    (zero variance) are left out of the correlation."""
    a = activations.transpose(0, 1).reshape(activations.shape[1], -1).double()
    a = a[a.std(1) > 0]
    return effective_rank(torch.linalg.eigvalsh(torch.corrcoef(a)))


def weight_rank(weight: torch.Tensor) -> float:
    """Effective rank of a convolution weight (out x in*k*k*k) from its squared singular values."""
    return effective_rank(torch.linalg.svdvals(weight.detach().reshape(weight.shape[0], -1).double()) ** 2)


def central_patches(task_folder: str, plans: dict, cases: int) -> torch.Tensor:
    patch = plans["plans_per_stage"][max(plans["plans_per_stage"])]["patch_size"]
    files = sorted(glob.glob(os.path.join(task_folder, "nnUNetData_plans_v2.1_stage%d" % max(plans["plans_per_stage"]),
                                          "*.npz")))[:cases]
    if not files:
        raise SystemExit("%s: no preprocessed cases (nnUNetData_plans_v2.1_stage*/*.npz)" % task_folder)
    batch = []
    for name in files:
        data = np.load(name)["data"][:-1]          # the last channel is the segmentation
        start = [max(0, (s - p) // 2) for s, p in zip(data.shape[1:], patch)]
        x = torch.from_numpy(data[(slice(None),) + tuple(slice(b, b + p) for b, p in zip(start, patch))]).float()
        padding = []
        for size, wanted in zip(reversed(x.shape[1:]), reversed(patch)):
            padding += [0, wanted - size]
        batch.append(F.pad(x, padding))
    return torch.stack(batch)


def stage_ranks(network, x) -> list:
    ranks, h = [], x
    with torch.no_grad():
        for stage in network.conv_blocks_context:
            h = stage(h)
            ranks.append((h.shape[1], activation_rank(h)))
    return ranks


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights")
    parser.add_argument("task")
    parser.add_argument("--cases", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from nnunet.paths import preprocessing_output_dir
    from nnunet_genesis.io.safe_pickle import load as load_pickle
    task_folder = os.path.join(preprocessing_output_dir, args.task)
    plans = load_pickle(os.path.join(task_folder, "nnUNetPlansv2.1_plans_3D.pkl"))
    torch.manual_seed(args.seed)
    fresh = build_network_from_plans(plans).eval()
    pretrained = build_network_from_plans(plans).eval()
    state = read_checkpoint_file(args.weights)["state_dict"]
    own = pretrained.state_dict()
    encoder = {k: v for k, v in state.items() if k.startswith("conv_blocks_context.") and k in own
               and v.shape == own[k].shape}
    pretrained.load_state_dict(encoder, strict=False)
    x = central_patches(task_folder, plans, args.cases)
    print("%s on %s (%d central patches)" % (args.weights, args.task, x.shape[0]))
    print("stage  channels  activations: fresh  pretrained")
    for s, ((c, r_fresh), (_, r_pre)) in enumerate(zip(stage_ranks(fresh, x), stage_ranks(pretrained, x))):
        print("%5d  %8d  %18.1f  %10.1f" % (s, c, r_fresh, r_pre))
    fresh_weights = dict(fresh.named_parameters())
    print("weight                                       fresh  pretrained  (of)")
    for name, value in encoder.items():
        if value.dim() > 1:
            print("%-42s %7.1f  %10.1f  %4d" % (name, weight_rank(fresh_weights[name]), weight_rank(value),
                                                min(value.shape[0], value[0].numel())))


if __name__ == "__main__":
    main()
