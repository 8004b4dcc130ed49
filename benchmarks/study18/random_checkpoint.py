#!/usr/bin/env python
"""Issue #18 (docs/measurements_study18_crn.md, section 9): a control checkpoint with a pretrained checkpoint's
shapes and weight norms and none of what it learned.

    python benchmarks/study18/random_checkpoint.py SRC_CHECKPOINT DST_FOLDER [--seed N]

The fine-tuning default mixes every transferred convolution weight as ``0.3 x pretrained + 0.7 x fresh``
(``nnunet_genesis/transfer/shrink_perturb.py``). Two things change from a scratch start: the weight holds
pretrained *content*, and its *scale* changes (the pretrained and fresh tensors are independent draws, so the mix's
norm is about sqrt(0.3^2 r^2 + 0.7^2) of a fresh one, r = |pretrained| / |fresh|: 0.76-0.78 on Task611's
checkpoints). With instance normalisation after every convolution a smaller weight means a larger effective step,
so the scale alone could change fine-tuning. This control keeps the scale and removes the content: every tensor of
more than one dimension is replaced by a standard normal draw rescaled to the source tensor's Frobenius norm, and
every one-dimensional tensor is set to nnU-Net's initial value (instance-norm weights 1, biases 0:
``nnunet/network_architecture/initialization.py`` InitWeights_He and torch's InstanceNorm3d defaults), so the study
mixes ``0.3 x random + 0.7 x fresh`` at the same norms as with the real checkpoint.

Writes DST_FOLDER/model_final_checkpoint.model (the source's entries with the new ``state_dict``, without its
optimizer, scheduler and grad-scaler states) and copies the ``.pkl`` beside it. No pretraining record is written:
the control learned nothing, and the Genesis trainer says so ("no pretraining record") unless the study allows it.
The source is read with the package's weights-only reader and is not modified; an existing DST file is refused.
"""
import argparse
import os
import shutil
import sys

import torch

from nnunet_genesis.checkpoints.files import CheckpointError, read_checkpoint_file
from nnunet_genesis.io.atomic import atomic_write

NAME = "model_final_checkpoint.model"


def randomised(state_dict, generator):
    """``state_dict`` with each tensor of more than one dimension redrawn at the same Frobenius norm and each
    one-dimensional tensor at its initial value (``instnorm.weight``: 1; anything else: 0)."""
    out = {}
    for key, value in state_dict.items():
        if value.dim() > 1:
            draw = torch.randn(value.shape, generator=generator, dtype=torch.float64)
            out[key] = (draw * (value.double().norm() / draw.norm())).to(value.dtype)
        elif key.endswith("instnorm.weight"):
            out[key] = torch.ones_like(value)
        else:
            out[key] = torch.zeros_like(value)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="a pretraining checkpoint (nnU-Net v1 .model file with its .pkl beside it)")
    parser.add_argument("destination", help="the folder to write the control checkpoint into (created)")
    parser.add_argument("--seed", type=int, default=0, help="the random draw's seed (default 0)")
    args = parser.parse_args(argv)
    target = os.path.join(args.destination, NAME)
    if os.path.exists(target):
        sys.exit("%s exists: refusing to overwrite it" % target)
    if not os.path.isfile(args.source + ".pkl"):
        sys.exit("%s.pkl: missing (nnU-Net v1 writes it beside every .model file; the control copies it)" % args.source)
    try:
        checkpoint = read_checkpoint_file(args.source)
    except (OSError, CheckpointError) as error:
        sys.exit(str(error))
    generator = torch.Generator().manual_seed(args.seed)
    control = {key: value for key, value in checkpoint.items()
               if key not in ("optimizer_state_dict", "lr_scheduler_state_dict", "amp_grad_scaler")}
    control["state_dict"] = randomised(checkpoint["state_dict"], generator)
    os.makedirs(args.destination, exist_ok=True)
    atomic_write(target + ".pkl", lambda tmp: shutil.copyfile(args.source + ".pkl", tmp))
    atomic_write(target, lambda tmp: torch.save(control, tmp))
    print("wrote %s (%d tensors redrawn at the norms of %s, seed %d)"
          % (target, len(control["state_dict"]), args.source, args.seed))


if __name__ == "__main__":
    main()
