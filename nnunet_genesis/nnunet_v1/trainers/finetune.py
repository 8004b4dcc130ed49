"""nnUNetTrainerV2_Genesis: nnUNetTrainerV2 that fine-tunes from pretrained (Models Genesis) weights.

Only four things differ from nnUNetTrainerV2:

* ``-pretrained_weights W`` goes through the adaptive transfer of ``nnunet_genesis.transfer.weights``
  (report printed, logged and saved as ``transfer_report.json`` in the fold folder; a transfer
  that would leave most of the encoder untrained is refused, never silently ignored);
* a warm-up (``nnunet_genesis.transfer.finetuning``): for ``genesis_warmup_epochs`` epochs the transferred
  parameters learn at ``genesis_warmup_lr_scale`` × the learning rate (0 = frozen);
* at epoch 100 with a foreground Dice of 0, nnUNetTrainerV2 lowers the momentum *and
  re-initialises the network*; here only the momentum is lowered, since re-initialising would
  silently throw the pretrained weights away;
* with ``nnUNet_genesis_training_seed`` set (``nnUNet_genesis_study`` sets it), every random draw is seeded
  (``nnunet_genesis/nnunet_v1/trainers/seeded.py``), as in the study's scratch arm.

Everything else (data, augmentation, loss, validation, prediction) is nnUNetTrainerV2's, so
nnUNet_predict, nnUNet_find_best_configuration and nnUNet_ensemble treat it like any trainer.

Variants are thin subclasses that change the class attributes, as nnU-Net does for its own
variants (see ``nnUNetTrainerV2_GenesisEncoderDecoder``). Every hook body is written once, in
``nnunet_genesis.transfer.finetuning.FineTuneHooks`` (shared with v2); the methods here map nnU-Net 1.7.1's hooks
(``nnunet/training/network_training/nnUNetTrainerV2.py`` and ``network_trainer.py``) onto it.
"""
from nnunet.training.network_training.nnUNetTrainerV2 import nnUNetTrainerV2
from nnunet.training.network_training.nnUNetTrainerV2_DDP import nnUNetTrainerV2_DDP

from nnunet_genesis.nnunet_v1.trainers.base import GenesisTrainerBase
from nnunet_genesis.nnunet_v1.trainers.ddp import CpuCapableDDPMixin
from nnunet_genesis.nnunet_v1.trainers.seeded import SeededTraining
from nnunet_genesis.transfer.finetuning import FineTuneHooks


class GenesisFineTuneMixin(SeededTraining, FineTuneHooks, GenesisTrainerBase):
    # what a variant may change: nnunet_genesis.transfer.finetuning.FineTuneSettings

    # --- the accessors FineTuneHooks reads (nnunet_genesis/transfer/finetuning.py) --------------
    def genesis_epoch(self):
        return self.epoch

    def genesis_rebuild_optimizer(self):
        self.initialize_optimizer_and_scheduler()

    # --- nnU-Net v1's hooks ----------------------------------------------------------------------
    def initialize_network(self):
        """nnUNetTrainerV2.initialize_network, then ``-pretrained_weights`` is routed to this trainer."""
        super().initialize_network()
        self.genesis_register_pretrained_weights()

    def initialize_optimizer_and_scheduler(self):
        """nnUNetTrainerV2.initialize_optimizer_and_scheduler, with [fresh, transferred] groups after a transfer."""
        super().initialize_optimizer_and_scheduler()
        self.genesis_regroup(self.optimizer)

    def load_checkpoint_ram(self, checkpoint, train=True):
        """NetworkTrainer.load_checkpoint_ram (``-c``, ``-val``), after rebuilding the recorded groups."""
        if not self.was_initialized:
            self.initialize(train)
        if train:
            self.genesis_resume_groups(checkpoint.get("optimizer_state_dict"))
        return super().load_checkpoint_ram(checkpoint, train)

    def maybe_update_lr(self, epoch=None):
        """nnUNetTrainerV2.maybe_update_lr (poly rate in group 0), then the warm-up factor of the transferred group."""
        super().maybe_update_lr(epoch)
        self.genesis_apply_warmup(self.epoch + 1 if epoch is None else epoch)

    def run_training(self):
        """nnUNetTrainerV2.run_training, after the "trains from scratch" warning where it applies."""
        self.genesis_warn_if_scratch()
        return super().run_training()

    def on_epoch_end(self):
        """nnUNetTrainerV2.on_epoch_end minus its epoch-100 network re-initialisation (see module doc)."""
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
    Genesis fine-tuning does; measured worse than the encoder alone (docs/measurements.md)."""
    genesis_transfer_mode = "encoder+decoder"


class nnUNetTrainerV2_Genesis_DDP(GenesisFineTuneMixin, CpuCapableDDPMixin, nnUNetTrainerV2_DDP):
    """``nnUNet_train_DDP ... nnUNetTrainerV2_Genesis_DDP TASK FOLD -pretrained_weights W``"""
