"""Our trainers, found by the stock nnUNet_* commands through nnunet_genesis.integration.

Every class here is a thin nnUNetTrainerV2 (or _DDP) subclass (``nnUNetTrainerV2_Seeded``: the stock trainer with
common random numbers, ``seeded.py``, the study's scratch arm); the hook bodies live in the core
(``nnunet_genesis.pretraining.trainer_hooks.PretrainHooks``, ``nnunet_genesis.transfer.finetuning.FineTuneHooks``),
shared with the v2 family (``nnunet_genesis.nnunet_v2.trainers``: the same variants, or a written reason).
"""
from nnunet_genesis.nnunet_v1.trainers.finetune import (nnUNetTrainerV2_Genesis, nnUNetTrainerV2_Genesis_DDP,
                                                        nnUNetTrainerV2_GenesisEncoderDecoder)
from nnunet_genesis.nnunet_v1.trainers.pretrain import (nnUNetTrainerV2_GenesisPretrain,
                                                        nnUNetTrainerV2_GenesisPretrain_AdamW,
                                                        nnUNetTrainerV2_GenesisPretrain_DDP,
                                                        nnUNetTrainerV2_GenesisPretrain_NnUNetSGD,
                                                        nnUNetTrainerV2_GenesisPretrain_Published,
                                                        nnUNetTrainerV2_GenesisPretrain_Residual)
from nnunet_genesis.nnunet_v1.trainers.seeded import nnUNetTrainerV2_Seeded

__all__ = ["nnUNetTrainerV2_Genesis", "nnUNetTrainerV2_GenesisEncoderDecoder", "nnUNetTrainerV2_Genesis_DDP",
           "nnUNetTrainerV2_GenesisPretrain", "nnUNetTrainerV2_GenesisPretrain_AdamW",
           "nnUNetTrainerV2_GenesisPretrain_Published",
           "nnUNetTrainerV2_GenesisPretrain_NnUNetSGD", "nnUNetTrainerV2_GenesisPretrain_Residual",
           "nnUNetTrainerV2_GenesisPretrain_DDP", "nnUNetTrainerV2_Seeded"]
