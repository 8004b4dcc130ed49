"""How much of the restoration loss each distortion brings, on a pretraining task's own patches.

    python benchmarks/distortion_loss_budget.py PREPROCESSED_FOLDER [--patch Z Y X] [--patches N] [--seed S]

PREPROCESSED_FOLDER: a v1 stage folder of preprocessed cases (``nnUNetData_plans_v2.1_stage0``: ``*.npy`` or
``*.npz`` with data and nnU-Net's segmentation as the last channel). Draws N random patches (uniform positions, no
spatial augmentation) and, for each distortion ALONE (always applied) and for the training mixes, reports over the
voxels inside the image (segmentation >= 0, what ``adamw_inpaint_inside`` trains on):

    identity MSE = mean over patches of mean over voxels (distorted - original)^2
    patch variance = mean over patches of the original's variance (what predicting each patch's mean costs)
    ratio = identity MSE / patch variance  (1 - this is the identity's pooled R^2)

A distortion whose ratio is far above 1 makes the input a worse guess than a flat patch; in the training mix it
also carries most of the loss and of its gradient. Used for docs/measurements_study18_wholehead.md (the
intensity map's decreasing half on whole heads). Pure numpy; needs no nnU-Net.
"""
import argparse
import glob
import os

import numpy as np

from nnunet_genesis.distortions.composite import GenesisTransform
from nnunet_genesis.distortions.transforms import LocalPixelShuffleTransform, NonLinearIntensityTransform


def load_cases(folder):
    files = sorted(glob.glob(os.path.join(folder, "*.npy"))) or sorted(glob.glob(os.path.join(folder, "*.npz")))
    if not files:
        raise SystemExit(f"{folder}: no preprocessed case (*.npy or *.npz)")
    return [np.load(f, mmap_mode="r") if f.endswith(".npy") else np.load(f)["data"] for f in files]


def random_patches(cases, patch, n, rng):
    """``n`` patches (n, C, *patch) at uniform random positions of random cases (padded with the segmentation's
    outside value -1 and data 0 where a case is smaller)."""
    out = []
    for _ in range(n):
        case = cases[rng.integers(len(cases))]
        block = np.zeros((case.shape[0],) + tuple(patch), dtype=np.float32)
        block[-1] = -1
        src, dst = [slice(None)], [slice(None)]
        for size, p in zip(case.shape[1:], patch):
            start = rng.integers(0, max(size - p, 0) + 1)
            length = min(size, p)
            src.append(slice(start, start + length))
            dst.append(slice(0, length))
        block[tuple(dst)] = case[tuple(src)]
        out.append(block)
    return np.stack(out)


def distortions():
    """Name -> GenesisTransform arguments: each distortion alone, then the published and the recipes' mixes."""
    no_shuffle = LocalPixelShuffleTransform(p_per_channel=0.0)
    no_map = NonLinearIntensityTransform(p_per_channel=0.0)
    return {
        "local shuffling": dict(shuffle=LocalPixelShuffleTransform(p_per_channel=1.0), nonlinear=no_map, p_paint=0.0),
        "intensity map, increasing": dict(shuffle=no_shuffle, p_paint=0.0,
                                          nonlinear=NonLinearIntensityTransform(p_per_channel=1.0, p_decreasing=0.0)),
        "intensity map, decreasing": dict(shuffle=no_shuffle, p_paint=0.0,
                                          nonlinear=NonLinearIntensityTransform(p_per_channel=1.0, p_decreasing=1.0)),
        "in-painting": dict(shuffle=no_shuffle, nonlinear=no_map, p_paint=1.0, p_inpaint=1.0),
        "out-painting": dict(shuffle=no_shuffle, nonlinear=no_map, p_paint=1.0, p_inpaint=0.0),
        "published mix": dict(),
        "adamw_inpaint mix (80 % in-painting)": dict(p_inpaint=0.8),
        "adamw_inpaint mix, increasing maps only": dict(
            p_inpaint=0.8, nonlinear=NonLinearIntensityTransform(p_decreasing=0.0)),
    }


def budget(data, seg, seed):
    """Rows (name, identity MSE, patch variance, ratio) over the voxels inside the image."""
    rows = []
    for name, kwargs in distortions().items():
        out = GenesisTransform(seed=seed, inside_key="seg", **kwargs)(data=data, seg=seg)  # data is not modified
        distorted, target = out["data"], out["target"]
        errors, variances = [], []
        for x, y in zip(distorted, target):
            inside = np.isfinite(y)
            if inside.sum() > 1:
                errors.append(float(((x - y)[inside] ** 2).mean()))
                variances.append(float(y[inside].var()))
        mse, var = float(np.mean(errors)), float(np.mean(variances))
        rows.append((name, mse, var, mse / var))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--patch", type=int, nargs=3, default=(32, 32, 64))
    parser.add_argument("--patches", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    patches = random_patches(load_cases(args.folder), args.patch, args.patches, rng)
    data, seg = patches[:, :-1], patches[:, -1:]
    print(f"{args.folder}: {args.patches} patches {tuple(args.patch)}, {np.mean(seg >= 0):.0%} of voxels inside")
    print("| distortion | identity MSE | patch variance | ratio |\n|---|---:|---:|---:|")
    for name, mse, var, ratio in budget(data, seg, args.seed + 1):
        print(f"| {name} | {mse:.3f} | {var:.3f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
