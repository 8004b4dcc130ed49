"""Models Genesis for nnU-Net v2: ``nnUNetTrainer_GenesisPretrain`` and ``nnUNetTrainer_Genesis``.

    nnUNetv2_train DatasetMMM_Genesis<Target> 3d_fullres all -tr nnUNetTrainer_GenesisPretrain
    nnUNetv2_train TARGET 3d_fullres FOLD -tr nnUNetTrainer_Genesis -pretrained_weights .../fold_all/checkpoint_final.pth
    nnUNetv2_predict ... -tr nnUNetTrainer_Genesis

The stock commands find them through :mod:`nnunet_genesis.integration`. Both are thin subclasses of
v2's ``nnUNetTrainer`` (``nnunetv2/training/nnUNetTrainer/nnUNetTrainer.py``): each method overrides the
hook of that name there; the hook bodies are written once, for v1 and v2, in the core
(``nnunet_genesis.pretraining.trainer_hooks.PretrainHooks``, ``nnunet_genesis.transfer.finetuning.FineTuneHooks``).
Subclasses must keep ``__init__(self, plans, configuration, fold, dataset_json, device)``: v2 records it by
parameter name.

The family is v1's, name for name (``nnUNetTrainerV2_X`` there, ``nnUNetTrainer_X`` here) with the same settings,
except the variants :data:`V1_ONLY` names with the reason (``tests/test_trainer_families.py`` checks both).

Pretraining, against ``nnUNetTrainer``: the plans' network (``build_network_architecture``: PlainConvUNet,
ResEnc, ...) with one output channel per input channel and deep supervision off; v2's data loader and
spatial augmentation, then the Genesis distortions (no intensity augmentation, no mirroring, no
foreground oversampling; ``nnunet_genesis/pretraining/`` says why); target = the undistorted patch,
MSE; the recipe's optimiser and distortion mix (``genesis_recipe``, default ``recipes.DEFAULT_RECIPE``),
its rate set before every iteration. nnU-Net's "pseudo Dice" (``progress.png``, the EMA that picks
``checkpoint_best.pth``) is the validation batches' R^2. At the first and last epoch, and in between within
``genesis_diagnostics_share`` of the wall time (``nnunet_genesis/pretraining/schedule.py``), the
per-distortion scores against the identity and mean baselines (log table, ``restoration_history.json``,
``restoration_progress.png``, COLLAPSE warning), ``restoration_preview.png`` every
``genesis_preview_every`` epochs, and at the end ``validation_restoration/summary.json`` instead of the
segmentation export. Every checkpoint carries nnssl's adaptation plan (``nnssl_adaptation_plan``, with our
recipe and mix, and ``adaptation_plan.json`` beside it: ``nnunet_genesis/checkpoints/adaptation_plan.py``), so nnU-Net
master's ``nnUNetv2_train_pretrained`` fine-tunes from it without this package.

Fine-tuning, against ``nnUNetTrainer``: ``-pretrained_weights W`` goes through
``nnunet_genesis.transfer.weights.transfer_weights`` (report in the log and ``transfer_report.json``; a transfer
leaving too much of the encoder untrained, or an nnssl checkpoint of a transformer, is refused with one log
line saying why); a warm-up in which
the transferred parameters learn at ``genesis_warmup_lr_scale`` x the rate (0 = frozen) for
``genesis_warmup_epochs`` epochs, then at ``genesis_transferred_lr_scale`` x (two optimizer groups,
rebuilt on ``--c``); seeded draws when ``nnUNet_genesis_training_seed`` is set (``seeded.py``, which also holds
``nnUNetTrainer_Seeded``, the stock trainer with only that added: the study's scratch arm). Everything else is
``nnUNetTrainer``'s.
"""
from nnunet_genesis.nnunet_v2.trainers.finetune import nnUNetTrainer_Genesis, nnUNetTrainer_GenesisEncoderDecoder
from nnunet_genesis.nnunet_v2.trainers.pretrain import (nnUNetTrainer_GenesisPretrain, nnUNetTrainer_GenesisPretrain_AdamW,
                                                       nnUNetTrainer_GenesisPretrain_NnUNetSGD,
                                                       nnUNetTrainer_GenesisPretrain_Published,
                                                       nnUNetTrainer_GenesisPretrain_Residual)
from nnunet_genesis.nnunet_v2.trainers.seeded import nnUNetTrainer_Seeded

# v1 variants (suffixes of nnUNetTrainerV2_GenesisPretrain / nnUNetTrainerV2_Genesis) with no v2 class, and why
V1_ONLY = {
    "_DDP": "nnU-Net v2's nnUNetTrainer trains with DDP itself (nnUNetv2_train -num_gpus N), so every v2 trainer "
            "here already runs distributed; v1 needs a separate nnUNetTrainerV2_DDP subclass for nnUNet_train_DDP",
}

__all__ = ["nnUNetTrainer_Genesis", "nnUNetTrainer_GenesisEncoderDecoder", "nnUNetTrainer_GenesisPretrain",
           "nnUNetTrainer_GenesisPretrain_AdamW", "nnUNetTrainer_GenesisPretrain_NnUNetSGD",
           "nnUNetTrainer_GenesisPretrain_Published", "nnUNetTrainer_GenesisPretrain_Residual", "nnUNetTrainer_Seeded"]
