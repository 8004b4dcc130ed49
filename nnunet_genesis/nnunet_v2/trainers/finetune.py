"""``nnUNetTrainer_Genesis``: fine-tuning from pretrained weights (nnU-Net v2).

Every hook body is written once, in ``nnunet_genesis.transfer.finetuning.FineTuneHooks`` (shared with v1); the
methods here map nnunetv2's hooks (``nnunetv2/training/nnUNetTrainer/nnUNetTrainer.py``, named in each
docstring) onto it. The variants and their settings are v1's (``tests/test_trainer_families.py``). With
``nnUNet_genesis_training_seed`` set (``nnUNet_genesis_study`` sets it), every random draw is seeded
(``nnunet_genesis/nnunet_v2/trainers/seeded.py``), as in the study's scratch arm.
"""
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunet_genesis.transfer.finetuning import FineTuneHooks
from nnunet_genesis.nnunet_v2.trainers.base import plain_network
from nnunet_genesis.nnunet_v2.trainers.seeded import SeededTraining


class nnUNetTrainer_Genesis(SeededTraining, FineTuneHooks, nnUNetTrainer):
    """``nnUNetv2_train DATASET 3d_fullres FOLD -tr nnUNetTrainer_Genesis -pretrained_weights W``; what a
    variant may change: ``nnunet_genesis.transfer.finetuning.FineTuneSettings``."""

    plain_network = property(lambda self: plain_network(self.network))

    # --- the accessors FineTuneHooks reads (nnunet_genesis/transfer/finetuning.py) --------------
    def genesis_epoch(self):
        return self.current_epoch

    def genesis_rebuild_optimizer(self):
        self.optimizer, self.lr_scheduler = self.configure_optimizers()

    # --- nnU-Net v2's hooks ----------------------------------------------------------------------
    def initialize(self):
        """nnUNetTrainer.initialize, then route ``-pretrained_weights`` for this network to
        ``load_pretrained_weights`` (``nnunetv2.run.load_pretrained_weights``, patched by the hook)."""
        super().initialize()
        self.genesis_register_pretrained_weights()

    def configure_optimizers(self):
        """nnUNetTrainer.configure_optimizers, with [fresh, transferred] parameter groups once weights
        were transferred."""
        optimizer, lr_scheduler = super().configure_optimizers()
        return self.genesis_regroup(optimizer), lr_scheduler

    def load_checkpoint(self, filename_or_checkpoint):
        """nnUNetTrainer.load_checkpoint (``--c``, ``--val``): rebuild the [fresh, transferred] groups
        recorded in the checkpoint's optimizer state before nnU-Net loads that state into them."""
        if not self.was_initialized:
            self.initialize()
        checkpoint = filename_or_checkpoint
        if isinstance(checkpoint, str):
            checkpoint = torch.load(checkpoint, map_location="cpu", weights_only=False)
        self.genesis_resume_groups(checkpoint.get("optimizer_state"))
        return super().load_checkpoint(filename_or_checkpoint)

    def on_train_start(self):
        """nnUNetTrainer.on_train_start, then the "trains from scratch" warning where it applies."""
        super().on_train_start()
        self.genesis_warn_if_scratch()

    def on_train_epoch_start(self):
        """nnUNetTrainer.on_train_epoch_start (poly rate for every group), then the warm-up factor of
        the transferred group."""
        super().on_train_epoch_start()
        self.genesis_apply_warmup(self.current_epoch)


class nnUNetTrainer_GenesisEncoderDecoder(nnUNetTrainer_Genesis):
    """Transfers encoder and decoder (all but the segmentation heads), as the published fine-tuning."""
    genesis_transfer_mode = "encoder+decoder"
