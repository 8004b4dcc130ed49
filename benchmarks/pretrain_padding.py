"""What pretraining sees: the share of each training patch that lies outside the image (issue #18).

    python benchmarks/pretrain_padding.py TASK [--batches 20] [--trainer nnUNetTrainerV2_GenesisPretrain_SmallInside]

Builds the v1 pretraining trainer ``--trainer`` (a recipe with ``inside_only``, so that its GenesisTransform marks
the target NaN where nnU-Net's segmentation is -1) on fold 0 of the prepared pretraining task ``TASK`` (name or
id, with ``nnUNet_preprocessed`` / ``RESULTS_FOLDER`` set, and ``nnUNet_extTrainer=benchmarks/trainers`` for the default
``--trainer``), draws ``--batches`` real batches from its training
pipeline (nnU-Net's DataLoader3D with its enlarged crop and padding, SpatialTransform, the distortions) and its
validation pipeline, and prints per pipeline the share of target voxels outside the image, and how often the
network's input is not 0 there: nnU-Net pads with 0, but the distortions (the intensity map of the whole patch,
painting noise) change the padding too, so without the mask the network must also learn to paint them back.
"""
import argparse
import os
import sys

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("task")
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--trainer", default="nnUNetTrainerV2_GenesisPretrain_SmallInside")
    args = parser.parse_args(argv)
    from nnunet.run.default_configuration import get_default_configuration
    from nnunet_genesis.integration import find_genesis_trainer
    from nnunet_genesis.nnunet_v1.layout import resolve_task_name
    task = resolve_task_name(args.task)
    plans_file, folder, dataset_dir, batch_dice, stage, _ = get_default_configuration("3d_fullres", task,
                                                                                      "nnUNetTrainerV2")
    trainer_class = find_genesis_trainer(args.trainer)
    trainer = trainer_class(plans_file, 0, output_folder=os.path.join(folder, "padding_check"),
                            dataset_directory=dataset_dir, batch_dice=batch_dice, stage=stage)
    trainer.initialize(True)
    try:
        for name, generator in (("training", trainer.tr_gen), ("validation", trainer.val_gen)):
            outside, total, nonzero_input_outside, per_patch = 0, 0, 0, []
            for _ in range(args.batches):
                batch = next(generator)
                target, data = batch["target"].numpy(), batch["data"].numpy()
                nan = np.isnan(target)
                outside += int(nan.sum())
                total += nan.size
                per_patch += [float(nan[b].mean()) for b in range(nan.shape[0])]
                # the input where the target is outside: 0 unless a distortion painted noise there
                nonzero_input_outside += int((np.abs(data[nan]) > 0).sum())
            print("%s: %d batches, %.1f %% of target voxels outside the image (per patch: min %.1f %%, median "
                  "%.1f %%, max %.1f %%); the distorted input is non-zero at %.1f %% of them"
                  % (name, args.batches, 100.0 * outside / total, 100 * min(per_patch), 100 * np.median(per_patch),
                     100 * max(per_patch), 100.0 * nonzero_input_outside / max(outside, 1)))
    finally:
        for generator in (trainer.tr_gen, trainer.val_gen):
            if hasattr(generator, "_finish"):
                generator._finish()


if __name__ == "__main__":
    main()
