"""Thin trainers for issue #18's CT downstream study (Task602_HeadCT, cases about the patch's size).

The same protocol as the Task601_DeepGrey study (benchmarks/study18 on the recipe18 branch), copied here so
that the two tasks are comparable: found by the stock ``nnUNet_train`` through
``nnUNet_extTrainer=benchmarks/study18ct/trainers`` (see ``benchmarks/study18ct/run_study18ct.sh``). Only the
budget (and, for pretraining, the recipe) differs from the package's trainers; nothing else is changed.

* pretraining: ``STUDY18CT_PRETRAIN_EPOCHS`` x ``STUDY18CT_PRETRAIN_ITERS`` iterations, recipe
  ``adamw_inpaint_inside`` (padding outside the image left out of the loss), diagnostics on the fold's
  validation cases;
* fine-tuning: ONE budget shared by the scratch and the Genesis arm (``STUDY18CT_FT_EPOCHS`` x
  ``STUDY18CT_FT_ITERS``). The Genesis arm keeps the package's fine-tuning defaults (encoder-only transfer,
  transferred layers frozen during the warm-up, then nnU-Net's rate) except the warm-up's length, scaled from
  10 of nnU-Net's 1000 epochs to 1 epoch, as the package's demo does (nnUNetTrainerV2_Genesis_Demo).
  One departure from the DeepGrey study's trainers, for CPU time only and identical in both arms: nnU-Net's
  end-of-training validation runs without mirroring (the study's test predictions already use --disable_tta).
"""
import os

from nnunet.training.network_training.nnUNetTrainerV2 import nnUNetTrainerV2

from nnunet_genesis.integration import import_trainer_file
from nnunet_genesis.nnunet_v1.trainers import (nnUNetTrainerV2_Genesis, nnUNetTrainerV2_GenesisPretrain,
                                                nnUNetTrainerV2_Seeded)
from nnunet_genesis.nnunet_v1.trainers.base import GenesisTrainerBase


def _env_int(name, default):
    return int(os.environ.get(name, str(default)))


class nnUNetTrainerV2_GenesisPretrain_S18CTInside(nnUNetTrainerV2_GenesisPretrain):
    """Pretraining with adamw_inpaint_inside at a budget of at most ~25 CPU-minutes on one core."""
    genesis_recipe = "adamw_inpaint_inside"
    genesis_preview_every = 10

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_num_epochs = _env_int("STUDY18CT_PRETRAIN_EPOCHS", 30)
        self.num_batches_per_epoch = _env_int("STUDY18CT_PRETRAIN_ITERS", 25)
        self.num_val_batches_per_epoch = 2
        self.save_every = 5


class Study18CTBudget:
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_num_epochs = _env_int("STUDY18CT_FT_EPOCHS", 8)
        self.num_batches_per_epoch = _env_int("STUDY18CT_FT_ITERS", 10)
        self.num_val_batches_per_epoch = _env_int("STUDY18CT_FT_VAL_BATCHES", 2)
        self.save_every = 1

    def validate(self, *args, **kwargs):
        # nnU-Net's end-of-training validation of the fold's 5 validation cases, without its 8-fold mirroring
        # (CPU time; the study's test predictions run with --disable_tta too). Same for both arms.
        kwargs["do_mirroring"] = False
        return super().validate(*args, **kwargs)


class nnUNetTrainerV2_Scratch_S18CT(Study18CTBudget, GenesisTrainerBase, nnUNetTrainerV2):
    """Stock nnUNetTrainerV2 with the study's budget (GenesisTrainerBase only stops its augmentation workers
    when training ends, as the demo's scratch trainer)."""


class nnUNetTrainerV2_Genesis_S18CT(Study18CTBudget, nnUNetTrainerV2_Genesis):
    """nnUNetTrainerV2_Genesis (encoder-only transfer) with the study's budget; warm-up scaled to 1 epoch; the
    plain transfer this page measured (the package's default until shrink and perturb replaced it)."""
    genesis_warmup_epochs = 1
    genesis_pretrained_share = 1.0


# benchmarks/study18/trainers/study18_trainers.py (its folder is another nnUNet_extTrainer), for the fine-tuning
# variants both studies share
_S18 = import_trainer_file(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "study18", "trainers",
                                        "study18_trainers.py"))


class nnUNetTrainerV2_GenesisMix_S18CT(_S18.ShrinkAndPerturb, nnUNetTrainerV2_Genesis_S18CT):
    """nnUNetTrainerV2_Genesis_S18CT with shrink and perturb (``STUDY18_MIX``, default 0.3 pretrained;
    benchmarks/study18/trainers/study18_trainers.py)."""


class nnUNetTrainerV2_GenesisPretrain_S18CTInsideIncreasing(_S18.IncreasingMapsOnly,
                                                           nnUNetTrainerV2_GenesisPretrain_S18CTInside):
    """nnUNetTrainerV2_GenesisPretrain_S18CTInside with increasing intensity maps only
    (benchmarks/study18/trainers/study18_trainers.py)."""


class nnUNetTrainerV2_ScratchSeeded_S18CT(Study18CTBudget, nnUNetTrainerV2_Seeded):
    """The scratch arm with common random numbers: the package's ``nnUNetTrainerV2_Seeded`` with the study's
    budget (seeded from ``nnUNet_genesis_training_seed``, which ``nnUNet_genesis_study`` sets per pair). Measured
    first as a benchmark mixin (``SeededTraining``, commit 95340f3: docs/measurements_study18_seeded.md)."""


class nnUNetTrainerV2_GenesisMixSeeded_S18CT(nnUNetTrainerV2_GenesisMix_S18CT):
    """``nnUNetTrainerV2_GenesisMix_S18CT`` under the name the first seeded study recorded: the package's
    fine-tuning trainers now seed themselves from ``nnUNet_genesis_training_seed``, so the two are one trainer."""


class nnUNetTrainerV2_GenesisMix10_S18CT(nnUNetTrainerV2_Genesis_S18CT):
    """Fine-tuning variant (a measurement): shrink and perturb with 0.1 x pretrained + 0.9 x fresh (the default's
    0.3 slowed the intracranial structure at 64 iterations, docs/measurements_study18_crn.md section 4). The share
    is fixed by the class, not by ``STUDY18_MIX``: the study records the trainer's name, not its environment, so
    a different share needs a different name to keep its runs apart."""
    genesis_pretrained_share = 0.1


class nnUNetTrainerV2_GenesisShallowMix_S18CT(nnUNetTrainerV2_Genesis_S18CT):
    """Fine-tuning variant (a measurement): the default transfer (shrink and perturb, 0.3 x pretrained) of a
    checkpoint cut to its first encoder stages by ``benchmarks/study18/shallow_checkpoint.py`` (Task622: stages
    0-2, 10 % of the encoder's parameters); the deeper stages and the decoder start fresh. Accepts the small
    encoder fraction that transfers (the transfer report states it)."""
    genesis_pretrained_share = 0.3
    genesis_allow_partial = True
