"""nnUNetTrainerV2_GenesisPretrain: Models Genesis restoration with the target task's own nnU-Net.

``nnUNet_train 3d_fullres nnUNetTrainerV2_GenesisPretrain TaskMMM_Genesis<Target> all``
on a task made by ``nnUNet_genesis_prepare`` (same plans as the target task). Compared with
nnUNetTrainerV2 only the learning problem changes (see ``nnunet_genesis/pretraining/``):
input = distorted patch, target = original patch, output channels = input channels, linear
output, MSE on the full-resolution output. The network is the plans' Generic_UNet, so
``model_final_checkpoint.model`` feeds ``nnUNetTrainerV2_Genesis -pretrained_weights`` directly,
and ``-c`` resumes like any nnU-Net training.

Optimiser, schedule and output form come from a recipe (``nnunet_genesis/pretraining/recipes.py``), chosen by
measurement (``benchmarks/pretrain_learning.py``, see the README): ``genesis_recipe``. The learning
rate is set before every training iteration (a warm-up shorter than an epoch works), from the
progress ``(epoch + batch / batches per epoch) / max_num_epochs``. Variants:
``nnUNetTrainerV2_GenesisPretrain_NnUNetSGD`` (nnU-Net's SGD, the first default),
``nnUNetTrainerV2_GenesisPretrain_AdamW`` (the default's optimiser with the published distortion mix),
``nnUNetTrainerV2_GenesisPretrain_Residual`` (residual output) and
``nnUNetTrainerV2_GenesisPretrain_Published`` (SGD lr 0.1, momentum 0.9, constant rate, early
stopping once the validation loss has not improved for 20 epochs). 1000 epochs x 250 iterations, as nnU-Net.
The v2 family (``nnunet_genesis/nnunet_v2/trainers/``) has the same variants with the same settings
(``tests/test_trainer_families.py``); the DDP one is v1's only (``nnunet_genesis.nnunet_v2.trainers.V1_ONLY``).

Validation, what the user sees:
* nnU-Net's "evaluation metric" (its plot and best-checkpoint choice) is the R^2 of the
  validation batches (composite distortion);
* at the first and last epoch, and in between as often as ``genesis_diagnostics_share`` of the wall
  time allows (``nnunet_genesis/pretraining/schedule.py``), the network's R^2 per distortion against the
  identity and mean baselines on fixed validation patches (voxels outside the image left out) (``nnunet_genesis/pretraining/scores.py``):
  a table in the log, ``restoration_history.json`` and ``restoration_progress.png`` next to
  nnU-Net's ``progress.png``, and a COLLAPSE warning in the log when the restored patches are
  flat (judged from ``genesis_collapse_min_iterations`` training iterations on);
* ``restoration_preview.png`` (original / distorted / restored) every ``genesis_preview_every``
  epochs (the scored composite: ``nnunet_genesis.pretraining.validation.scoring_transform``);
* at the end, ``validate()`` writes ``validation_restoration/`` (per-distortion scores of up to
  ``genesis_validation_cases`` cases, previews per distortion, the verdict) instead of nnU-Net's
  segmentation export, and repeats any collapse warning last.

Every hook body is written once, in ``nnunet_genesis.pretraining.trainer_hooks.PretrainHooks`` (shared with v2);
the methods here map nnU-Net 1.7.1's hooks (``nnunet/training/network_training/nnUNetTrainerV2.py`` and
``network_trainer.py``) onto it and answer its accessors.
"""
import numpy as np
from nnunet.training.network_training.nnUNetTrainerV2 import nnUNetTrainerV2
from nnunet.training.network_training.nnUNetTrainerV2_DDP import nnUNetTrainerV2_DDP

from nnunet_genesis.nnunet_v1.augmentation import genesis_augmentation
from nnunet_genesis.nnunet_v1.network import preprocessed_volumes
from nnunet_genesis.nnunet_v1.trainers.base import GenesisTrainerBase
from nnunet_genesis.nnunet_v1.trainers.ddp import CpuCapableDDPMixin
from nnunet_genesis.nnunet_v1.trainers.seeded import SeededTraining
from nnunet_genesis.pretraining.loss import RestorationLoss, add_residual_output
from nnunet_genesis.pretraining.recipes import make_optimizer
from nnunet_genesis.pretraining.trainer_hooks import PretrainHooks


class GenesisPretrainMixin(SeededTraining, PretrainHooks, GenesisTrainerBase):
    # --- the accessors PretrainHooks reads (nnunet_genesis/pretraining/trainer_hooks.py) ---------
    def genesis_epoch(self):
        return self.epoch

    def genesis_num_epochs(self):
        return self.max_num_epochs

    def genesis_iterations_per_epoch(self):
        return self.num_batches_per_epoch

    def genesis_patch_size(self):
        return self.patch_size

    def genesis_validation_losses(self):
        return self.all_val_losses   # NetworkTrainer.run_training appends each epoch's; checkpoints keep them

    def _validation_volumes(self, max_cases):
        keys = sorted(self.dataset_val.keys())[:max_cases]
        return preprocessed_volumes({key: self.dataset_val[key]["data_file"] for key in keys})

    # --- what the network predicts ----------------------------------------------------------
    def process_plans(self, plans):
        """nnUNetTrainer.process_plans, then one output channel per input channel (restoration)."""
        super().process_plans(plans)
        self.num_classes = self.num_input_channels

    def initialize(self, training=True, force_load_plans=False):
        """nnUNetTrainerV2.initialize (seeded by ``SeededTraining`` when ``nnUNet_genesis_training_seed`` is set),
        then the restoration loss and data pipeline."""
        super().initialize(training, force_load_plans)
        self.loss = RestorationLoss()
        if training:
            # nnU-Net's generators were built (not started: workers start on the first batch);
            # replace them with the restoration pipeline on the same data loaders, seeded like them.
            seed = self.genesis_training_seed()
            self.tr_gen, self.val_gen = genesis_augmentation(
                self.dl_tr, self.dl_val, self.data_aug_params["patch_size_for_spatialtransform"],
                self.data_aug_params, self.make_genesis_transform(seed), self.make_validation_transform(),
                pin_memory=self.pin_memory)
            self.seed_augmenters(seed)
            self.diagnostics_schedule()  # its clock starts with training

    def initialize_network(self):
        """nnUNetTrainerV2.initialize_network, with the recipe's residual output."""
        super().initialize_network()
        if self.recipe.residual:
            add_residual_output(self.plain_network, zero_init=self.recipe.zero_init_output)

    def setup_DA_params(self):
        """nnUNetTrainerV2.setup_DA_params; unlabeled data: there is no foreground to favour."""
        super().setup_DA_params()
        self.oversample_foreground_percent = 0.0

    def compute_loss(self, output, target):  # nnUNetTrainerV2_DDP's loss hook
        return self.loss(output, target)

    # --- optimiser and learning rate from the recipe ----------------------------------------
    def initialize_optimizer_and_scheduler(self):
        """nnUNetTrainerV2.initialize_optimizer_and_scheduler: the recipe's optimiser; the rate is set by hand."""
        assert self.network is not None, "self.initialize_network must be called first"
        self.initial_lr = self.recipe.peak_lr
        self.optimizer = make_optimizer(self.recipe, self.network.parameters())
        self.lr_scheduler = None

    def maybe_update_lr(self, epoch=None):
        """Replaces nnUNetTrainerV2.maybe_update_lr (poly only, whatever the recipe says): the recipe's rate at
        the start of epoch ``epoch`` (default the next one)."""
        ep = self.epoch + 1 if epoch is None else epoch
        self.genesis_epoch_start()
        self.print_to_log_file("lr:", np.round(self.set_recipe_lr(ep), decimals=6))

    def run_iteration(self, data_generator, do_backprop=True, run_online_evaluation=False):
        """nnUNetTrainerV2.run_iteration, after setting the recipe's rate for this training iteration."""
        if do_backprop:
            self.genesis_lr_before_iteration()
        return super().run_iteration(data_generator, do_backprop, run_online_evaluation)

    # --- online evaluation: R^2 of the validation batches ------------------------------------
    def run_online_evaluation(self, output, target):
        """nnUNetTrainerV2.run_online_evaluation: the sums of the validation R^2 (no Dice)."""
        self.genesis_accumulate(output, target)

    def finish_online_evaluation(self):
        """nnUNetTrainer.finish_online_evaluation: the R^2 is nnU-Net's evaluation metric here."""
        self.all_val_eval_metrics.append(self.genesis_validation_r2())

    # --- epoch end and training end ----------------------------------------------------------
    def on_epoch_end(self):
        """nnUNetTrainerV2.on_epoch_end, then early stopping (with a patience) and the diagnostics."""
        continue_training = super().on_epoch_end() and not self.genesis_patience_ended()
        self.genesis_epoch_end(self.epoch == self.max_num_epochs - 1 or not continue_training)
        return continue_training

    def validate(self, *args, **kwargs):
        """Replaces nnUNetTrainerV2.validate, the segmentation export (``nnUNet_train`` calls it after training).
        nnU-Net has stepped ``epoch`` back to the last epoch trained (NetworkTrainer.run_training)."""
        return self.genesis_final_report(self.epoch + 1)


class nnUNetTrainerV2_GenesisPretrain(GenesisPretrainMixin, nnUNetTrainerV2):
    """``nnUNet_train 3d_fullres nnUNetTrainerV2_GenesisPretrain TASK all``"""


class nnUNetTrainerV2_GenesisPretrain_NnUNetSGD(nnUNetTrainerV2_GenesisPretrain):
    """nnU-Net's SGD (lr 0.01, Nesterov momentum 0.99, poly decay), direct output: the first default."""
    genesis_recipe = "nnunet_sgd"


class nnUNetTrainerV2_GenesisPretrain_AdamW(nnUNetTrainerV2_GenesisPretrain):
    """AdamW with warm-up and poly decay, direct output, the published distortion mix (20 % of the painted
    patches in-painted): the default before the mix was measured."""
    genesis_recipe = "adamw"


class nnUNetTrainerV2_GenesisPretrain_Residual(nnUNetTrainerV2_GenesisPretrain):
    """AdamW with warm-up and poly decay, residual output (restored = input + network(input))."""
    genesis_recipe = "adamw_residual"


class nnUNetTrainerV2_GenesisPretrain_Published(nnUNetTrainerV2_GenesisPretrain):
    """The published optimiser (SGD lr 0.1, momentum 0.9, constant rate) and early stopping: training ends once
    the validation loss has not improved for 20 epochs."""
    genesis_recipe = "published_sgd"
    genesis_early_stopping_patience = 20


class nnUNetTrainerV2_GenesisPretrain_DDP(GenesisPretrainMixin, CpuCapableDDPMixin, nnUNetTrainerV2_DDP):
    """``nnUNet_train_DDP 3d_fullres nnUNetTrainerV2_GenesisPretrain_DDP TASK all`` (torchrun)."""
