"""nnUNetTrainerV2_GenesisPretrain: Models Genesis restoration with the target task's own nnU-Net.

``nnUNet_train 3d_fullres nnUNetTrainerV2_GenesisPretrain TaskMMM_Genesis<Target> all``
on a task made by ``nnUNet_genesis_prepare`` (same plans as the target task). Compared with
nnUNetTrainerV2 only the learning problem changes (see ``nnunet_genesis/pretraining.py``):
input = distorted patch, target = original patch, output channels = input channels, linear
output, MSE on the full-resolution output. The network is the plans' Generic_UNet, so
``model_final_checkpoint.model`` feeds ``nnUNetTrainerV2_Genesis -pretrained_weights`` directly,
and ``-c`` resumes like any nnU-Net training.

Defaults (nnU-Net's, so a pretraining run costs what one fold costs): 1000 epochs x 250
iterations, SGD (Nesterov, momentum 0.99) from lr 0.01 with the poly schedule, gradient clipping
at 12. ``nnUNetTrainerV2_GenesisPretrain_Published`` uses the published optimiser instead (SGD
lr 0.1, momentum 0.9) and stops after 20 epochs without improvement. Other choices are thin
subclasses that change class attributes or ``__init__`` values, as nnU-Net's own variants do.

Validation: the validation loss is the restoration MSE; nnU-Net's "evaluation metric" (its plot
and best-checkpoint choice) is the validation R^2. At the end of training, ``validate()``
writes restoration scores and preview PNGs to ``validation_restoration/`` instead of nnU-Net's
segmentation export; a preview of one validation patch is written every
``genesis_preview_every`` epochs as ``restoration_preview.png`` next to ``progress.png``.
"""
import os

import numpy as np
import torch
from batchgenerators.utilities.file_and_folder_operations import join
from nnunet.training.network_training.nnUNetTrainerV2 import nnUNetTrainerV2
from nnunet.training.network_training.nnUNetTrainerV2_DDP import nnUNetTrainerV2_DDP

from nnunet_genesis.pretraining import (RestorationAccumulator, RestorationLoss, central_patch,
                                        genesis_augmentation, restore_patch, validate_restoration)
from nnunet_genesis.trainers.ddp import CpuCapableDDPMixin
from nnunet_genesis.trainers.base import GenesisTrainerBase


class GenesisPretrainMixin(GenesisTrainerBase):
    genesis_transform_kwargs = {}     # GenesisTransform arguments (defaults: the published values)
    genesis_preview_every = 50        # epochs, like nnU-Net's checkpoint interval
    genesis_validation_cases = 20     # whole validation cases scored by validate()
    genesis_validation_folder = "validation_restoration"
    genesis_early_stopping = False    # True: stop after self.patience epochs without improvement

    def make_genesis_transform(self, seed):
        from nnunet_genesis.transforms import GenesisTransform
        return GenesisTransform(seed=seed, **self.genesis_transform_kwargs)

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

    def setup_DA_params(self):
        super().setup_DA_params()
        self.oversample_foreground_percent = 0.0  # unlabeled data: there is no foreground to favour

    def compute_loss(self, output, target):  # nnUNetTrainerV2_DDP's loss hook
        return self.loss(output, target)

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

    # --- previews and final validation ------------------------------------------------------
    def _validation_volumes(self, max_cases):
        cases = {}
        for key in sorted(self.dataset_val.keys())[:max_cases]:
            data_file = self.dataset_val[key]["data_file"]
            npy = data_file[:-4] + ".npy"
            volume = np.load(npy, mmap_mode="r") if os.path.isfile(npy) else np.load(data_file)["data"]
            cases[key] = np.asarray(volume[:-1], dtype=np.float32)  # the last channel is nnU-Net's seg
        return cases

    def write_restoration_preview(self):
        from nnunet_genesis.previews import save_preview_grid
        cases = self._validation_volumes(1)
        if not cases:
            return None
        name, volume = next(iter(cases.items()))
        original = central_patch(volume, self.patch_size)
        batch = self.make_genesis_transform(2024)(data=original[None].copy())
        restored = restore_patch(self.plain_network, batch["data"][0])
        path = join(self.output_folder, "restoration_preview.png")
        save_preview_grid({"original": batch["target"][0], "distorted": batch["data"][0], "restored": restored},
                          path, title="%s, epoch %d" % (name, self.epoch))
        return path


    def on_epoch_end(self):
        if self.genesis_early_stopping:
            # nnUNetTrainerV2 always runs to max_num_epochs; here nnU-Net's own patience decides.
            from nnunet.training.network_training.network_trainer import NetworkTrainer
            continue_training = NetworkTrainer.on_epoch_end(self) and self.epoch < self.max_num_epochs
        else:
            continue_training = super().on_epoch_end()
        if self.epoch % self.genesis_preview_every == self.genesis_preview_every - 1 or \
                self.epoch == self.max_num_epochs - 1 or not continue_training:
            if getattr(self, "local_rank", 0) == 0:
                self.write_restoration_preview()
        return continue_training

    def validate(self, *args, **kwargs):
        """Replaces nnU-Net's segmentation export (``nnUNet_train`` calls it after training)."""
        if getattr(self, "local_rank", 0) != 0:
            return None
        summary = validate_restoration(self.plain_network, self._validation_volumes(self.genesis_validation_cases),
                                       self.patch_size, self.make_genesis_transform,
                                       join(self.output_folder, self.genesis_validation_folder))
        self.print_to_log_file("restoration of %d validation cases: mean MSE %.5f (distorted input %.5f), "
                               "mean R^2 %.4f" % (len(summary["cases"]), summary["mean_mse"],
                                                  summary["mean_distorted_mse"], summary["mean_r2"]))
        return summary


class nnUNetTrainerV2_GenesisPretrain(GenesisPretrainMixin, nnUNetTrainerV2):
    """``nnUNet_train 3d_fullres nnUNetTrainerV2_GenesisPretrain TASK all``"""


class nnUNetTrainerV2_GenesisPretrain_Published(nnUNetTrainerV2_GenesisPretrain):
    """The published optimiser (SGD lr 0.1, momentum 0.9) and early stopping (patience 20)."""
    genesis_early_stopping = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.initial_lr = 0.1
        self.patience = 20

    def initialize_optimizer_and_scheduler(self):
        self.optimizer = torch.optim.SGD(self.network.parameters(), self.initial_lr, momentum=0.9,
                                         weight_decay=self.weight_decay)
        self.lr_scheduler = None


class nnUNetTrainerV2_GenesisPretrain_DDP(GenesisPretrainMixin, CpuCapableDDPMixin, nnUNetTrainerV2_DDP):
    """``nnUNet_train_DDP 3d_fullres nnUNetTrainerV2_GenesisPretrain_DDP TASK all`` (torchrun)."""
