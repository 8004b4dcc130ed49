"""Fine-tuning variants with the demo's budget, compared in docs/measurements.md (section 3) by
``nnUNet_genesis_study`` on the demo's data. Measurement only, not shipped: found through
``nnUNet_extTrainer=competition/demo_trainers:benchmarks/trainers`` (the demo's folder first: the study's scratch
arm is the demo's ``nnUNetTrainerV2_Scratch_Demo``), e.g.::

    nnUNet_genesis_study ... --genesis_trainer nnUNetTrainerV2_GenesisLinearWarmup_Demo
"""
from competition.demo_trainers.demo_trainers import DemoBudget, nnUNetTrainerV2_Genesis_Demo
from nnunet_genesis.nnunet_v1.trainers import nnUNetTrainerV2_GenesisEncoderDecoder


class nnUNetTrainerV2_GenesisEncoder_Demo(nnUNetTrainerV2_Genesis_Demo):
    """The demo's default fine-tuning (encoder only) under the name the encoder-only study of
    docs/measurements.md section 3.2 used: a name of its own gives those runs their own result folders beside
    the demo's."""


class nnUNetTrainerV2_GenesisLinearWarmup_Demo(nnUNetTrainerV2_Genesis_Demo):
    """Fine-tuning variant in nnssl's manner, scaled to the demo's 4 epochs: the transferred layers' rate
    ramps linearly from 0 over 2 epochs (0, 0.05 x) and stays at 0.1 x nnU-Net's (1e-3, nnssl's peak)
    afterwards; the fresh layers train at nnU-Net's rate. Compare it with nnUNetTrainerV2_Genesis_Demo
    (1 frozen epoch, then the full rate) on the study's validation Dice."""
    genesis_warmup_epochs = 2
    genesis_warmup_shape = "linear"
    genesis_warmup_lr_scale = 0.0
    genesis_transferred_lr_scale = 0.1


class nnUNetTrainerV2_GenesisEncoderDecoder_Demo(DemoBudget, nnUNetTrainerV2_GenesisEncoderDecoder):
    """Fine-tuning variant with the demo's budget: encoder and decoder are transferred (the published
    Models Genesis fine-tuning); compare it with nnUNet_genesis_study on the validation Dice."""
    genesis_warmup_epochs = 1
    genesis_allow_unlearned = True  # as nnUNetTrainerV2_Genesis_Demo
