"""``nnUNetTrainer_Genesis``: fine-tuning from pretrained weights (nnU-Net v2).

Split from ``nnunet_genesis.nnunet_v2.trainers`` (issue #20).
"""
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunet_genesis.transfer.finetuning import (TRANSFERRED, FineTuneSettings, parameter_groups, transfer_for_training,
                                       transferred_names_from_optimizer_state, warmup_description, warmup_lr_scale)
from nnunet_genesis.pretrained_weights_handlers import register_pretrained_weights_handler
from nnunet_genesis.nnunet_v2.trainers.base import plain_network


def regroup_optimizer(optimizer, groups):
    """Replace ``optimizer``'s parameter groups by ``groups`` in place (the scheduler nnU-Net made
    for it keeps working on the same object); the optimizer's defaults fill the rest."""
    optimizer.param_groups.clear()
    optimizer.state.clear()
    for group in groups:
        optimizer.add_param_group(group)


class nnUNetTrainer_Genesis(FineTuneSettings, nnUNetTrainer):
    """``nnUNetv2_train DATASET 3d_fullres FOLD -tr nnUNetTrainer_Genesis -pretrained_weights W``; what a
    variant may change: ``nnunet_genesis.transfer.finetuning.FineTuneSettings``."""

    transferred_parameter_names = ()

    plain_network = property(lambda self: plain_network(self.network))

    def initialize(self):
        """nnUNetTrainer.initialize, then route ``-pretrained_weights`` for this network to
        :meth:`load_pretrained_weights` (``nnunetv2.run.load_pretrained_weights``, patched by the hook)."""
        super().initialize()
        register_pretrained_weights_handler(self.network, self.load_pretrained_weights)

    def configure_optimizers(self):
        """nnUNetTrainer.configure_optimizers, with [fresh, transferred] parameter groups once weights
        were transferred."""
        optimizer, lr_scheduler = super().configure_optimizers()
        if self.transferred_parameter_names:
            regroup_optimizer(optimizer, parameter_groups(self.plain_network.named_parameters(),
                                                          self.transferred_parameter_names))
        return optimizer, lr_scheduler

    def load_pretrained_weights(self, fname):
        """Called by stock ``nnUNetv2_train ... -pretrained_weights fname`` (see integration.py)."""
        report, self.transferred_parameter_names = transfer_for_training(
            self.plain_network, fname, self.output_folder, self.genesis_transfer_mode,
            self.genesis_min_encoder_fraction, self.genesis_allow_partial, self.genesis_strict, self.print_to_log_file,
            self.genesis_allow_unlearned)
        self.optimizer, self.lr_scheduler = self.configure_optimizers()
        self.print_to_log_file(warmup_description(self.genesis_warmup_epochs, self.genesis_warmup_shape,
                                                  self.genesis_warmup_lr_scale, self.genesis_transferred_lr_scale))
        return report

    def load_checkpoint(self, filename_or_checkpoint):
        """nnUNetTrainer.load_checkpoint (``--c``, ``--val``): rebuild the [fresh, transferred] groups
        recorded in the checkpoint's optimizer state before nnU-Net loads that state into them."""
        if not self.was_initialized:
            self.initialize()
        checkpoint = filename_or_checkpoint
        if isinstance(checkpoint, str):
            checkpoint = torch.load(checkpoint, map_location="cpu", weights_only=False)
        names = transferred_names_from_optimizer_state(checkpoint.get("optimizer_state"))
        if names:
            self.transferred_parameter_names = names
            self.optimizer, self.lr_scheduler = self.configure_optimizers()
        return super().load_checkpoint(filename_or_checkpoint)

    def on_train_start(self):
        super().on_train_start()
        if self.current_epoch == 0 and not self.transferred_parameter_names:
            self.print_to_log_file("WARNING: %s got no -pretrained_weights: this run trains from scratch."
                                   % type(self).__name__)

    def on_train_epoch_start(self):
        """nnUNetTrainer.on_train_epoch_start (poly rate for every group), then the warm-up factor of
        the transferred group."""
        super().on_train_epoch_start()
        base_lr = self.optimizer.param_groups[0]["lr"]
        for group in self.optimizer.param_groups:
            if group.get("genesis_role") == TRANSFERRED:
                group["lr"] = base_lr * warmup_lr_scale(self.current_epoch, self.genesis_warmup_epochs,
                                                        self.genesis_warmup_lr_scale, self.genesis_warmup_shape,
                                                        self.genesis_transferred_lr_scale)
                self.print_to_log_file("transferred parameters: learning rate %g" % group["lr"])


class nnUNetTrainer_GenesisEncoderDecoder(nnUNetTrainer_Genesis):
    """Transfers encoder and decoder (all but the segmentation heads), as the published fine-tuning."""
    genesis_transfer_mode = "encoder+decoder"
