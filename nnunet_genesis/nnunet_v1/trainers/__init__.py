"""Our trainers, found by the stock nnUNet_* commands through nnunet_genesis.integration.

Every class here is a thin nnUNetTrainerV2 (or _DDP) subclass; the logic lives in plain modules
(transfer.py, finetuning.py, transforms.py, pretraining.py) that tests call without training.
"""
from nnunet_genesis.nnunet_v1.trainers.finetune import (nnUNetTrainerV2_Genesis, nnUNetTrainerV2_Genesis_DDP,
                                                      nnUNetTrainerV2_GenesisEncoder,
                                                      nnUNetTrainerV2_GenesisEncoderDecoder)
from nnunet_genesis.nnunet_v1.trainers.pretrain import (nnUNetTrainerV2_GenesisPretrain,
                                                      nnUNetTrainerV2_GenesisPretrain_AdamW,
                                                      nnUNetTrainerV2_GenesisPretrain_Residual,
                                                      nnUNetTrainerV2_GenesisPretrain_DDP,
                                                      nnUNetTrainerV2_GenesisPretrain_NnUNetSGD,
                                                      nnUNetTrainerV2_GenesisPretrain_Published)

__all__ = ["nnUNetTrainerV2_Genesis", "nnUNetTrainerV2_GenesisEncoder", "nnUNetTrainerV2_GenesisEncoderDecoder",
           "nnUNetTrainerV2_Genesis_DDP",
           "nnUNetTrainerV2_GenesisPretrain", "nnUNetTrainerV2_GenesisPretrain_AdamW",
           "nnUNetTrainerV2_GenesisPretrain_Published",
           "nnUNetTrainerV2_GenesisPretrain_NnUNetSGD", "nnUNetTrainerV2_GenesisPretrain_Residual",
           "nnUNetTrainerV2_GenesisPretrain_DDP"]
