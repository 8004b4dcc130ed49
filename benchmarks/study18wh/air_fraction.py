"""How much of what whole-head pretraining sees is air: random crops of each preprocessed case.

    python benchmarks/study18wh/air_fraction.py \
        $nnUNet_preprocessed/Task633_GenesisWholeHead/nnUNetData_plans_v2.1_stage0 [--patch 32 32 64] [--crops 40]

A voxel counts as air when its (z-scored) intensity lies within ``--tolerance`` (0.3) of the case's 1st
percentile; fractions are of the voxels inside the image (segmentation >= 0, what ``adamw_inpaint_inside``
computes its loss on). Prints per case its shape, that percentile, the mean air fraction of the crops and the
share of crops that are more than 80 % air; then the means over cases. Crops and case loading are
``benchmarks/distortion_loss_budget.py``'s (uniform positions, as the pretraining loader cuts them: no foreground
oversampling for unlabeled data; numpy seed ``--seed``).
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from distortion_loss_budget import load_cases, random_patches  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--patch", type=int, nargs=3, default=(32, 32, 64))
    parser.add_argument("--crops", type=int, default=40)
    parser.add_argument("--tolerance", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    fractions, mostly_air = [], []
    for case in load_cases(args.folder):
        image = case[0]
        air_value = np.percentile(image[::2, ::2, ::2], 1)
        crops = random_patches([case], args.patch, args.crops, rng)
        inside = crops[:, -1] >= 0
        air = (np.abs(crops[:, 0] - air_value) < args.tolerance) & inside
        per_crop = air.sum(axis=(1, 2, 3)) / np.maximum(inside.sum(axis=(1, 2, 3)), 1)
        fractions.append(float(per_crop.mean()))
        mostly_air.append(float(np.mean(per_crop > 0.8)))
        print("case of shape %-16s air value %+.2f  mean air fraction %.2f  crops > 80 %% air %.2f"
              % (image.shape, air_value, fractions[-1], mostly_air[-1]))
    print("over %d cases: mean air fraction %.2f, crops > 80 %% air %.2f"
          % (len(fractions), np.mean(fractions), np.mean(mostly_air)))


if __name__ == "__main__":
    main()
