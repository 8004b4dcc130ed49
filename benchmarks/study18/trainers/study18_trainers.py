"""Thin trainers for issue #18's first real downstream study (Task601_DeepGrey, cases smaller than the patch).

Found by the stock ``nnUNet_train`` through ``nnUNet_extTrainer=benchmarks/study18/trainers`` (see
``benchmarks/study18/run_study18.sh``). Only the budget (and, for pretraining, the recipe) differs from the
package's trainers; nothing else is changed.

Budgets, from timings measured on one pinned core (docs/measurements_study18.md):

* pretraining: ``STUDY18_PRETRAIN_EPOCHS`` x ``STUDY18_PRETRAIN_ITERS`` iterations (defaults below), recipe
  ``adamw_inpaint_inside`` (padding outside the image left out of the loss), diagnostics on the fold's
  validation cases;
* fine-tuning: ONE budget shared by the scratch and the Genesis arm (``STUDY18_FT_EPOCHS`` x
  ``STUDY18_FT_ITERS``). The Genesis arm keeps the package's fine-tuning defaults (encoder-only transfer,
  transferred layers frozen during the warm-up, then nnU-Net's rate) except the warm-up's length: the default
  is 10 of nnU-Net's 1000 epochs (1 % of the budget), which at this budget would freeze the encoder for the
  whole run; it is scaled to 1 epoch, as the package's own demo does (nnUNetTrainerV2_Genesis_Demo).
"""
import os

import torch

from nnunet.training.network_training.nnUNetTrainerV2 import nnUNetTrainerV2

from nnunet_genesis.distortions.transforms import NonLinearIntensityTransform
from nnunet_genesis.nnunet_v1.trainers import (nnUNetTrainerV2_Genesis, nnUNetTrainerV2_GenesisPretrain,
                                                nnUNetTrainerV2_Seeded)
from nnunet_genesis.nnunet_v1.trainers.base import GenesisTrainerBase


def _env_int(name, default):
    return int(os.environ.get(name, str(default)))


class nnUNetTrainerV2_GenesisPretrain_S18Inside(nnUNetTrainerV2_GenesisPretrain):
    """Pretraining with adamw_inpaint_inside at a budget of at most ~25 CPU-minutes on one core."""
    genesis_recipe = "adamw_inpaint_inside"
    genesis_preview_every = 10

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_num_epochs = _env_int("STUDY18_PRETRAIN_EPOCHS", 28)
        self.num_batches_per_epoch = _env_int("STUDY18_PRETRAIN_ITERS", 25)
        self.num_val_batches_per_epoch = 2
        self.save_every = 5


class IncreasingMapsOnly:
    """Pretraining variant (a measurement), mixed into a pretraining trainer: the intensity map increasing only
    (``p_decreasing`` 0 instead of the published 0.5). The decreasing half carries 63-85 % of the training loss on
    Task601/602/603 (docs/measurements_study18_wholehead.md, benchmarks/distortion_loss_budget.py); this asks
    whether the capacity it takes would serve fine-tuning better, judged by the study."""
    genesis_transform_kwargs = {"nonlinear": NonLinearIntensityTransform(p_decreasing=0.0)}


class nnUNetTrainerV2_GenesisPretrain_S18InsideIncreasing(IncreasingMapsOnly,
                                                          nnUNetTrainerV2_GenesisPretrain_S18Inside):
    """nnUNetTrainerV2_GenesisPretrain_S18Inside with increasing intensity maps only."""


class Study18Budget:
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_num_epochs = _env_int("STUDY18_FT_EPOCHS", 10)
        self.num_batches_per_epoch = _env_int("STUDY18_FT_ITERS", 10)
        self.num_val_batches_per_epoch = 2
        self.save_every = 1


class nnUNetTrainerV2_Scratch_S18(Study18Budget, GenesisTrainerBase, nnUNetTrainerV2):
    """Stock nnUNetTrainerV2 with the study's budget (GenesisTrainerBase only stops its augmentation workers
    when training ends, as the demo's scratch trainer)."""


class nnUNetTrainerV2_Genesis_S18(Study18Budget, nnUNetTrainerV2_Genesis):
    """nnUNetTrainerV2_Genesis (encoder-only transfer) with the study's budget; warm-up scaled to 1 epoch; the
    plain transfer these pages measured (the package's default until shrink and perturb replaced it)."""
    genesis_warmup_epochs = 1
    genesis_pretrained_share = 1.0


class nnUNetTrainerV2_GenesisShallow_S18(nnUNetTrainerV2_Genesis_S18):
    """Fine-tuning variant (a measurement): for a checkpoint cut to its first encoder stages by
    ``benchmarks/study18/shallow_checkpoint.py``; accepts the small encoder fraction that transfers (the report
    states it), everything else starts fresh."""
    genesis_allow_partial = True


class nnUNetTrainerV2_GenesisNoFreeze_S18(nnUNetTrainerV2_Genesis_S18):
    """Fine-tuning variant (a measurement): no frozen warm-up, every parameter at nnU-Net's rate from the start."""
    genesis_warmup_epochs = 0


class ShrinkAndPerturb:
    """Fine-tuning variant (a measurement; shrink and perturb, Ash & Adams, NeurIPS 2020), mixed into a Genesis
    fine-tuning trainer: after the transfer, every transferred convolution weight becomes ``mix`` x pretrained +
    (1 - ``mix``) x the fresh initialisation this network had before the transfer (He init, as scratch); norms and
    biases stay as transferred. ``STUDY18_MIX`` (default 0.3) sets the package's ``genesis_pretrained_share``
    (nnunet_genesis/transfer/shrink_perturb.py, where this variant's mixing now lives; it was measured as a
    mixin here first). Why: the pretrained encoders' activations are far less diverse than a fresh network's
    (docs/measurements_study18_finetuning.md, effective rank); the mix restores part of that diversity while
    keeping the pretrained directions."""
    genesis_pretrained_share = float(os.environ.get("STUDY18_MIX", "0.3"))


class nnUNetTrainerV2_GenesisMix_S18(ShrinkAndPerturb, nnUNetTrainerV2_Genesis_S18):
    """nnUNetTrainerV2_Genesis_S18 with shrink and perturb (``STUDY18_MIX``, default 0.3 pretrained)."""


class nnUNetTrainerV2_ScratchSeeded_S18(Study18Budget, nnUNetTrainerV2_Seeded):
    """The scratch arm with common random numbers: the package's ``nnUNetTrainerV2_Seeded`` (seeded from
    ``nnUNet_genesis_training_seed``, which ``nnUNet_genesis_study`` sets per pair) with the study's budget. The
    Genesis trainers above seed themselves the same way (the package's fine-tuning trainers do). Measured first as a
    mixin here (``SeededTraining``, commit 95340f3: docs/measurements_study18_seeded.md)."""


class nnUNetTrainerV2_GenesisMix10_S18(nnUNetTrainerV2_Genesis_S18):
    """Fine-tuning variant (a measurement): shrink and perturb with 0.1 x pretrained + 0.9 x fresh. The share is
    fixed by the class, not by ``STUDY18_MIX``: the study records the trainer's name, not its environment, so a
    different share needs a different name to keep its runs apart."""
    genesis_pretrained_share = 0.1


class nnUNetTrainerV2_GenesisShallowMix_S18(nnUNetTrainerV2_Genesis_S18):
    """Fine-tuning variant (a measurement): the default transfer (shrink and perturb, 0.3 x pretrained) of a
    checkpoint cut to its first encoder stages by ``benchmarks/study18/shallow_checkpoint.py``; the deeper stages
    and the decoder start fresh. Accepts the small encoder fraction that transfers (the transfer report states it)."""
    genesis_pretrained_share = 0.3
    genesis_allow_partial = True


class NormPreservingMix:
    """Fine-tuning variant (a measurement, docs/measurements_study18_crn.md section 9), mixed into a Genesis
    fine-tuning trainer with shrink and perturb: after the mix, every mixed convolution weight is rescaled to the
    Frobenius norm of the fresh initialisation it was mixed with, ``w <- w * |w_fresh| / |w|``. The pretrained and
    fresh tensors are independent draws, so ``0.3 x pretrained + 0.7 x fresh`` has about 0.77 of a fresh tensor's
    norm on Task611's checkpoints; every such convolution is followed by instance normalisation, which removes a
    per-tensor scale (and the bias), so the rescaling leaves the network's output unchanged and takes away only
    the mix's change of the effective step size (about 1 / 0.77^2 = 1.7 x larger at the start)."""

    def load_pretrained_weights(self, fname):
        before = {name: parameter.detach().clone()
                  for name, parameter in self.network.named_parameters() if parameter.dim() > 1}
        result = super().load_pretrained_weights(fname)
        rescaled = 0
        with torch.no_grad():
            for name, parameter in self.network.named_parameters():
                if name in before and not torch.equal(parameter, before[name]):
                    parameter.mul_(before[name].norm().item() / parameter.norm().item())
                    rescaled += 1
        self.print_to_log_file("Norm-preserving mix: %d mixed convolution weights rescaled to their fresh "
                               "initialisation's norm" % rescaled)
        return result


class nnUNetTrainerV2_GenesisMixNorm_S18(NormPreservingMix, nnUNetTrainerV2_Genesis_S18):
    """nnUNetTrainerV2_Genesis_S18 with shrink and perturb at 0.3 and the norm-preserving rescaling."""
    genesis_pretrained_share = 0.3


class nnUNetTrainerV2_GenesisMixNoFreeze_S18(nnUNetTrainerV2_Genesis_S18):
    """Fine-tuning variant (a measurement, docs/measurements_study18_crn.md section 10): the default transfer
    (shrink and perturb, 0.3 x pretrained; fixed by the class for the reason nnUNetTrainerV2_GenesisMix10_S18 gives)
    without the frozen warm-up epoch, every parameter at nnU-Net's rate from the first iteration. At this budget
    the one frozen epoch is 10 % of the run (1 % in the package's default), so it is the second thing, beside the
    mix, that the transfer changes apart from what pretraining learned (section 9's control)."""
    genesis_pretrained_share = 0.3
    genesis_warmup_epochs = 0
