"""Pretraining budgets for issue #18's reproduction (``benchmarks/pretrain_small_cases.py``): cases smaller
than the patch, 25 iterations per epoch (the held-out run's 40 x 25 subclass), ``NNUNET_GENESIS_SMALL_EPOCHS``
epochs (default 24: 600 iterations), diagnostics every epoch on 4 validation cases. Train on fold 0, so that
the diagnostics score held-out cases. One class per compared recipe; nothing else differs. Measurement only, not
shipped: found through ``nnUNet_extTrainer=benchmarks/trainers`` (``benchmarks/pretrain_small_cases.py`` sets it).
"""
import os

from nnunet_genesis.nnunet_v1.trainers import nnUNetTrainerV2_GenesisPretrain


class SmallBudget:
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_num_epochs = int(os.environ.get("NNUNET_GENESIS_SMALL_EPOCHS", "24"))
        self.num_batches_per_epoch = 25
        self.num_val_batches_per_epoch = 2
        self.save_every = 4


class nnUNetTrainerV2_GenesisPretrain_Small(SmallBudget, nnUNetTrainerV2_GenesisPretrain):
    """The default recipe (adamw_inpaint until issue #18's measurements)."""
    genesis_recipe = "adamw_inpaint"
    genesis_preview_every = 4


class nnUNetTrainerV2_GenesisPretrain_SmallInside(nnUNetTrainerV2_GenesisPretrain_Small):
    """adamw_inpaint with the padding left out of the loss."""
    genesis_recipe = "adamw_inpaint_inside"


class nnUNetTrainerV2_GenesisPretrain_SmallLowLR(nnUNetTrainerV2_GenesisPretrain_Small):
    """adamw_inpaint at a third of the peak rate with a longer warm-up (the learning-rate hypothesis)."""
    genesis_recipe = "adamw_inpaint_lowlr"
