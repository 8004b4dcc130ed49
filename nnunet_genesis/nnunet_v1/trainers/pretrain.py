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
stopping after 20 epochs without improvement). 1000 epochs x 250 iterations, as nnU-Net.

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
  epochs;
* at the end, ``validate()`` writes ``validation_restoration/`` (per-distortion scores of up to
  ``genesis_validation_cases`` cases, previews per distortion, the verdict) instead of nnU-Net's
  segmentation export, and repeats any collapse warning last.
"""
import os

import numpy as np
from batchgenerators.utilities.file_and_folder_operations import join
from nnunet.training.network_training.nnUNetTrainerV2 import nnUNetTrainerV2
from nnunet.training.network_training.nnUNetTrainerV2_DDP import nnUNetTrainerV2_DDP

from nnunet_genesis.nnunet_v1.augmentation import genesis_augmentation
from nnunet_genesis.pretraining.loss import RestorationAccumulator, RestorationLoss, add_residual_output
from nnunet_genesis.pretraining.trainer_hooks import (GenesisPretrainSettings, final_restoration_report,
                                                      load_restoration_history, record_restoration,
                                                      write_restoration_preview)
from nnunet_genesis.pretraining.validation import outside_as_nan, validation_pairs
from nnunet_genesis.pretraining.recipes import learning_rate, make_optimizer
from nnunet_genesis.nnunet_v1.trainers.ddp import CpuCapableDDPMixin
from nnunet_genesis.nnunet_v1.trainers.base import GenesisTrainerBase



class GenesisPretrainMixin(GenesisPretrainSettings, GenesisTrainerBase):
    genesis_early_stopping = False    # True: stop after self.patience epochs without improvement

    # --- what the network predicts ----------------------------------------------------------
    def process_plans(self, plans):
        super().process_plans(plans)
        # restoration: one output channel per input channel (plans' classes are meaningless here)
        self.num_classes = self.num_input_channels

    def initialize(self, training=True, force_load_plans=False):
        super().initialize(training, force_load_plans)
        self.loss = RestorationLoss()
        if training:
            # nnU-Net's generators were built (not started: workers start on the first batch);
            # replace them with the restoration pipeline on the same data loaders.
            self.tr_gen, self.val_gen = genesis_augmentation(
                self.dl_tr, self.dl_val, self.data_aug_params["patch_size_for_spatialtransform"],
                self.data_aug_params, self.make_genesis_transform, pin_memory=self.pin_memory)
            self.diagnostics_schedule()  # its clock starts with training

    def initialize_network(self):
        super().initialize_network()
        if self.recipe.residual:
            add_residual_output(self.plain_network, zero_init=self.recipe.zero_init_output)

    def setup_DA_params(self):
        super().setup_DA_params()
        self.oversample_foreground_percent = 0.0  # unlabeled data: there is no foreground to favour

    def compute_loss(self, output, target):  # nnUNetTrainerV2_DDP's loss hook
        return self.loss(output, target)

    # --- optimiser and learning rate from the recipe ----------------------------------------
    def initialize_optimizer_and_scheduler(self):
        assert self.network is not None, "self.initialize_network must be called first"
        self.initial_lr = self.recipe.peak_lr
        self.optimizer = make_optimizer(self.recipe, self.network.parameters())
        self.lr_scheduler = None

    def set_recipe_lr(self, epochs_done):
        """Learning rate for training progress ``epochs_done / max_num_epochs`` (fractional epochs)."""
        lr = learning_rate(self.recipe, epochs_done / max(self.max_num_epochs, 1))
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def maybe_update_lr(self, epoch=None):
        # replaces nnUNetTrainerV2's poly-only rule (nnUNetTrainerV2.maybe_update_lr), which would
        # apply a poly decay whatever the recipe says
        ep = self.epoch + 1 if epoch is None else epoch
        self._batch_in_epoch = 0
        self.print_to_log_file("lr:", np.round(self.set_recipe_lr(ep), decimals=6))

    def run_iteration(self, data_generator, do_backprop=True, run_online_evaluation=False):
        if do_backprop:
            batch = getattr(self, "_batch_in_epoch", 0)
            self.set_recipe_lr(self.epoch + batch / max(self.num_batches_per_epoch, 1))
            self._batch_in_epoch = batch + 1
        return super().run_iteration(data_generator, do_backprop, run_online_evaluation)

    # --- online evaluation: R^2 of the validation batches ------------------------------------
    def run_online_evaluation(self, output, target):
        if not hasattr(self, "_restoration_accumulator"):
            self._restoration_accumulator = RestorationAccumulator()
        self._restoration_accumulator.add(output, target)

    def finish_online_evaluation(self):
        acc = getattr(self, "_restoration_accumulator", RestorationAccumulator())
        self.all_val_eval_metrics.append(acc.r2())
        self.print_to_log_file("validation restoration: MSE %.5f, R^2 %.4f" % (acc.mse(), acc.r2()))
        self._restoration_accumulator = RestorationAccumulator()

    # --- per-distortion diagnostics -----------------------------------------------------------
    def _validation_volumes(self, max_cases):
        cases = {}
        for key in sorted(self.dataset_val.keys())[:max_cases]:
            data_file = self.dataset_val[key]["data_file"]
            npy = data_file[:-4] + ".npy"
            volume = np.load(npy, mmap_mode="r") if os.path.isfile(npy) else np.load(data_file)["data"]
            cases[key] = outside_as_nan(volume[:-1], volume[-1:])  # the last channel is nnU-Net's seg
        return cases

    def iterations_done(self):
        """Training iterations behind the network at the end of the current epoch."""
        return (self.epoch + 1) * self.num_batches_per_epoch

    def restoration_history(self):
        """Per-distortion scores so far: [{"epoch", "scores", "collapse"}], kept across ``-c``."""
        if getattr(self, "_restoration_history", None) is None:
            self._restoration_history = load_restoration_history(self.output_folder, self.epoch)
        return self._restoration_history

    def score_restoration_now(self):
        """Score the network per distortion on the fixed diagnostic patches, log the table, keep
        the history (JSON + PNG) and warn on collapse (``pretraining.record_restoration``)."""
        if getattr(self, "_diagnostic_pairs", None) is None:
            self._diagnostic_pairs = validation_pairs(self._validation_volumes(self.genesis_diagnostic_cases),
                                                      self.patch_size, self.make_genesis_transform)
        return record_restoration(self._diagnostic_pairs, self.plain_network, self.restoration_history(), self.epoch,
                                  self.iterations_done(), self.genesis_collapse_min_iterations, self.output_folder,
                                  "%s: restoration R² per distortion" % self.genesis_recipe, self.print_to_log_file)

    def write_restoration_preview(self):
        return write_restoration_preview(self._validation_volumes(1), self.patch_size, self.make_genesis_transform,
                                         self.plain_network, self.output_folder, self.epoch)

    def on_epoch_end(self):
        if self.genesis_early_stopping:
            # nnUNetTrainerV2 always runs to max_num_epochs; here nnU-Net's own patience decides.
            from nnunet.training.network_training.network_trainer import NetworkTrainer
            continue_training = NetworkTrainer.on_epoch_end(self) and self.epoch < self.max_num_epochs
        else:
            continue_training = super().on_epoch_end()
        last = self.epoch == self.max_num_epochs - 1 or not continue_training
        if getattr(self, "local_rank", 0) == 0:
            self.run_epoch_diagnostics(self.epoch, last)
        return continue_training

    def validate(self, *args, **kwargs):
        """Replaces nnU-Net's segmentation export (``nnUNet_train`` calls it after training)."""
        if getattr(self, "local_rank", 0) != 0:
            return None
        return final_restoration_report(self.plain_network, self._validation_volumes(self.genesis_validation_cases),
                                        self.patch_size, self.make_genesis_transform,
                                        join(self.output_folder, self.genesis_validation_folder),
                                        self.iterations_done(), self.genesis_collapse_min_iterations,
                                        self.genesis_recipe, self.print_to_log_file)


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
    """The published optimiser (SGD lr 0.1, momentum 0.9, constant rate) and early stopping (patience 20)."""
    genesis_recipe = "published_sgd"
    genesis_early_stopping = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.patience = 20


class nnUNetTrainerV2_GenesisPretrain_DDP(GenesisPretrainMixin, CpuCapableDDPMixin, nnUNetTrainerV2_DDP):
    """``nnUNet_train_DDP 3d_fullres nnUNetTrainerV2_GenesisPretrain_DDP TASK all`` (torchrun)."""
