"""A copy of a v1 pretraining checkpoint that keeps only its first encoder stages (issue #18, a measurement).

    python benchmarks/study18/shallow_checkpoint.py PRETRAIN_FOLD OUT_FOLDER [--stages 2]

Writes ``OUT_FOLDER/model_final_checkpoint.model`` whose ``state_dict`` holds only
``conv_blocks_context.<i>.*`` for ``i < stages`` (Generic_UNet's first encoder stages), beside copies of the
pretraining record (``restoration_history.json``, ``validation_restoration/summary.json``) and the ``.pkl``, so
that the fine-tuning trainer still reads the checkpoint's own verdict. Fine-tuned with
``nnUNetTrainerV2_GenesisShallow_S18`` (``genesis_allow_partial``), the transfer report then states the small
encoder fraction that was transferred; the deeper stages and the decoder start fresh.

The question it answers: the Task601 pretraining restored its own region well and other regions worse than
identity (docs/measurements_study18.md); if the deeper stages hold that one-region template, transferring only
the early, general stages may keep what helps and leave out what hurts. The input folder is never modified.
"""
import argparse
import os
import shutil

import torch

from nnunet_genesis.checkpoints.files import read_checkpoint_file
from nnunet_genesis.checkpoints.pretraining_record import HISTORY, SUMMARY
from nnunet_genesis.io.atomic import atomic_write, make_dirs
from nnunet_genesis.nnunet_v1.names import FINAL_CHECKPOINT


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pretrain_fold")
    parser.add_argument("out_folder")
    parser.add_argument("--stages", type=int, default=2, help="encoder stages kept (default 2)")
    args = parser.parse_args()
    source = os.path.join(args.pretrain_fold, FINAL_CHECKPOINT)
    if os.path.abspath(args.out_folder) == os.path.abspath(args.pretrain_fold):
        raise SystemExit("%s: the output folder is the input folder; choose another" % args.out_folder)
    if os.path.exists(os.path.join(args.out_folder, FINAL_CHECKPOINT)):
        raise SystemExit("%s already holds a checkpoint; choose a new folder" % args.out_folder)
    checkpoint = read_checkpoint_file(source)   # weights-only, errors name the file
    kept = {k: v for k, v in checkpoint["state_dict"].items()
            if k.startswith("conv_blocks_context.") and int(k.split(".")[1]) < args.stages}
    if not kept:
        raise SystemExit("%s: no conv_blocks_context.* tensors (not a Generic_UNet checkpoint)" % source)
    checkpoint = {"state_dict": kept, "epoch": checkpoint.get("epoch")}
    make_dirs(os.path.join(args.out_folder, os.path.dirname(SUMMARY) or "."))
    for name in (HISTORY, SUMMARY, FINAL_CHECKPOINT + ".pkl"):
        if os.path.isfile(os.path.join(args.pretrain_fold, name)):
            shutil.copyfile(os.path.join(args.pretrain_fold, name), os.path.join(args.out_folder, name))
    atomic_write(os.path.join(args.out_folder, FINAL_CHECKPOINT), lambda tmp: torch.save(checkpoint, tmp))
    total = sum(v.numel() for v in kept.values())
    print("%s: kept %d tensors (%d parameters) of encoder stages 0-%d" % (args.out_folder, len(kept), total,
                                                                            args.stages - 1))


if __name__ == "__main__":
    main()
