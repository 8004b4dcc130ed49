"""nnUNetTrainerV2_Genesis: nnUNetTrainerV2 that fine-tunes from pretrained (Models Genesis) weights.

Only three things differ from nnUNetTrainerV2:

* ``-pretrained_weights W`` goes through the adaptive transfer of ``nnunet_genesis.transfer.weights``
  (report printed, logged and saved as ``transfer_report.json`` in the fold folder; a transfer
  that would leave most of the encoder untrained is refused, never silently ignored);
* a warm-up (``nnunet_genesis.transfer.finetuning``): for ``genesis_warmup_epochs`` epochs the transferred
  parameters learn at ``genesis_warmup_lr_scale`` × the learning rate (0 = frozen);
* at epoch 100 with a foreground Dice of 0, nnUNetTrainerV2 lowers the momentum *and
  re-initialises the network*; here only the momentum is lowered, since re-initialising would
  silently throw the pretrained weights away.

Everything else (data, augmentation, loss, validation, prediction) is nnUNetTrainerV2's, so
nnUNet_predict, nnUNet_find_best_configuration and nnUNet_ensemble treat it like any trainer.

Variants are thin subclasses that change the class attributes, as nnU-Net does for its own
variants (see ``nnUNetTrainerV2_GenesisEncoderDecoder``).
"""
from nnunet.training.network_training.nnUNetTrainerV2 import nnUNetTrainerV2
from nnunet.training.network_training.nnUNetTrainerV2_DDP import nnUNetTrainerV2_DDP

from nnunet_genesis.transfer.finetuning import (TRANSFERRED, FineTuneSettings, parameter_groups, transfer_for_training,
                                       transferred_names_from_optimizer_state, warmup_description, warmup_lr_scale)
from nnunet_genesis.pretrained_weights_handlers import register_pretrained_weights_handler
from nnunet_genesis.nnunet_v1.trainers.ddp import CpuCapableDDPMixin
from nnunet_genesis.nnunet_v1.trainers.base import GenesisTrainerBase


class GenesisFineTuneMixin(FineTuneSettings, GenesisTrainerBase):
    # what a variant may change: nnunet_genesis.transfer.finetuning.FineTuneSettings
    transferred_parameter_names = ()

    # --- hooks -----------------------------------------------------------------------------

    def initialize_network(self):
        super().initialize_network()
        register_pretrained_weights_handler(self.network, self.load_pretrained_weights)

    def initialize_optimizer_and_scheduler(self):
        super().initialize_optimizer_and_scheduler()
        if self.transferred_parameter_names:
            groups = parameter_groups(self.plain_network.named_parameters(), self.transferred_parameter_names)
            self.optimizer = type(self.optimizer)(groups, **self.optimizer.defaults)

    def load_pretrained_weights(self, fname):
        """Called by stock ``nnUNet_train ... -pretrained_weights fname`` (see integration.py)."""
        report, self.transferred_parameter_names = transfer_for_training(
            self.plain_network, fname, self.output_folder, self.genesis_transfer_mode,
            self.genesis_min_encoder_fraction, self.genesis_allow_partial, self.genesis_strict, self.print_to_log_file,
            self.genesis_allow_unlearned)
        self.initialize_optimizer_and_scheduler()
        self.print_to_log_file(warmup_description(self.genesis_warmup_epochs, self.genesis_warmup_shape,
                                                  self.genesis_warmup_lr_scale, self.genesis_transferred_lr_scale))
        return report

    def load_checkpoint_ram(self, checkpoint, train=True):
        # -c: rebuild the [fresh, transferred] groups recorded in the checkpoint before nnU-Net
        # loads the optimizer state into them.
        if not self.was_initialized:
            self.initialize(train)
        names = transferred_names_from_optimizer_state(checkpoint.get("optimizer_state_dict")) if train else []
        if names:
            self.transferred_parameter_names = names
            self.initialize_optimizer_and_scheduler()
        return super().load_checkpoint_ram(checkpoint, train)

    def maybe_update_lr(self, epoch=None):
        super().maybe_update_lr(epoch)
        ep = self.epoch + 1 if epoch is None else epoch
        base_lr = self.optimizer.param_groups[0]["lr"]
        for group in self.optimizer.param_groups:
            scale = warmup_lr_scale(ep, self.genesis_warmup_epochs, self.genesis_warmup_lr_scale,
                                    self.genesis_warmup_shape, self.genesis_transferred_lr_scale) \
                if group.get("genesis_role") == TRANSFERRED else 1.0
            group["lr"] = base_lr * scale

    def run_training(self):
        if self.epoch == 0 and not self.transferred_parameter_names:
            self.print_to_log_file("WARNING: %s got no -pretrained_weights: this run trains from scratch."
                                   % type(self).__name__)
        return super().run_training()

    def on_epoch_end(self):
        # nnUNetTrainerV2.on_epoch_end minus its epoch-100 network re-initialisation (see module doc).
        super(nnUNetTrainerV2, self).on_epoch_end()
        continue_training = self.epoch < self.max_num_epochs
        if self.epoch == 100 and self.all_val_eval_metrics and self.all_val_eval_metrics[-1] == 0:
            for group in self.optimizer.param_groups:
                group["momentum"] = 0.95
            self.print_to_log_file("At epoch 100 the mean foreground Dice is 0: momentum reduced to 0.95 "
                                   "(the pretrained weights are kept, not re-initialised).")
        return continue_training


class nnUNetTrainerV2_Genesis(GenesisFineTuneMixin, nnUNetTrainerV2):
    """``nnUNet_train 3d_fullres nnUNetTrainerV2_Genesis TASK FOLD -pretrained_weights W``"""


class nnUNetTrainerV2_GenesisEncoderDecoder(nnUNetTrainerV2_Genesis):
    """Transfers encoder and decoder (the whole U-Net but its 1x1x1 heads), as the published Models
    Genesis fine-tuning does; measured worse than the encoder alone (README, "Does pretraining help?")."""
    genesis_transfer_mode = "encoder+decoder"


class nnUNetTrainerV2_GenesisEncoder(nnUNetTrainerV2_Genesis):
    """The default made explicit (and the name earlier versions used for it): the encoder only is
    transferred; the decoder starts fresh and trains during the warm-up."""
    genesis_transfer_mode = "encoder"


class nnUNetTrainerV2_Genesis_DDP(GenesisFineTuneMixin, CpuCapableDDPMixin, nnUNetTrainerV2_DDP):
    """``nnUNet_train_DDP ... nnUNetTrainerV2_Genesis_DDP TASK FOLD -pretrained_weights W``"""


