"""``nnUNetTrainer_GenesisPretrain`` and its recipe variants (nnU-Net v2).

Every hook body is written once, in ``nnunet_genesis.pretraining.trainer_hooks.PretrainHooks`` (shared with v1);
the methods here map nnunetv2's hooks (``nnunetv2/training/nnUNetTrainer/nnUNetTrainer.py``, named in each
docstring) onto it and answer its accessors. The variants and their settings are v1's
(``tests/test_trainer_families.py``).
"""
import os
import numpy as np
import torch
from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from batchgeneratorsv2.transforms.utils.pseudo2d import Convert2DTo3DTransform, Convert3DTo2DTransform
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.helpers import dummy_context
from torch import autocast
from nnunet_genesis.checkpoints.adaptation_plan import build_plan, checkpoint_extras, distortion_mix, network_keys, plain_data, \
    write_plan_json
from nnunet_genesis.io.atomic import atomic_write
from nnunet_genesis.nnunet_v2.network import preprocessed_volumes
from nnunet_genesis.nnunet_v2.augmentation import GenesisRestorationTransform
from nnunet_genesis.pretraining.loss import RestorationLoss, add_residual_output
from nnunet_genesis.pretraining.trainer_hooks import PretrainHooks
from nnunet_genesis.pretraining.recipes import RECIPES, make_optimizer, set_recipe_lr
from nnunet_genesis.nnunet_v2.trainers.base import plain_network
from nnunet_genesis.nnunet_v2.trainers.seeded import SeededTraining


class RecipeLRSchedule:
    """The recipe's learning rate as v2's ``lr_scheduler``: ``step(epochs_done)``, which
    ``nnUNetTrainer.on_train_epoch_start`` calls with the epoch number (the trainer sets the rate of every
    iteration itself: ``PretrainHooks.genesis_lr_before_iteration``)."""

    def __init__(self, optimizer, recipe, num_epochs):
        self.optimizer, self.recipe, self.num_epochs = optimizer, recipe, num_epochs

    def step(self, epochs_done=0):
        return set_recipe_lr(self.optimizer, self.recipe, epochs_done, self.num_epochs)


class _PatienceEnded(Exception):
    """Raised by on_epoch_end to leave nnUNetTrainer.run_training's epoch loop (it has no other exit)."""


def spatial_augmentation(patch_size, rotation_for_DA, do_dummy_2d_data_aug) -> list:
    """The spatial part of stock ``nnUNetTrainer.get_training_transforms`` (Convert3DTo2D, SpatialTransform,
    Convert2DTo3D, in its order and with its settings): the stock pipeline is built and the rest dropped."""
    stock = nnUNetTrainer.get_training_transforms(patch_size, rotation_for_DA, None, None, do_dummy_2d_data_aug)
    spatial = [t for t in stock.transforms
               if isinstance(t, (Convert3DTo2DTransform, SpatialTransform, Convert2DTo3DTransform))]
    if not any(isinstance(t, SpatialTransform) for t in spatial):
        raise RuntimeError("nnUNetTrainer.get_training_transforms has no SpatialTransform: this nnunetv2 "
                           "release is not supported by nnUNetTrainer_GenesisPretrain")
    return spatial


class nnUNetTrainer_GenesisPretrain(SeededTraining, PretrainHooks, nnUNetTrainer):
    """``nnUNetv2_train DatasetMMM 3d_fullres all -tr nnUNetTrainer_GenesisPretrain`` (see the package doc;
    settings: ``nnunet_genesis.pretraining.trainer_hooks.GenesisPretrainSettings``). With
    ``nnUNet_genesis_training_seed`` set, every draw is seeded, the distortions' included
    (``nnunet_genesis/nnunet_v2/trainers/seeded.py``)."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict, device=torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.enable_deep_supervision = False      # only the full-resolution output is scored
        self.oversample_foreground_percent = 0.0  # unlabeled data: no foreground to favour
        self.initial_lr, self.weight_decay = self.recipe.peak_lr, self.recipe.weight_decay
        self._genesis_stop = False

    plain_network = property(lambda self: plain_network(self.network))

    # --- the accessors PretrainHooks reads (nnunet_genesis/pretraining/trainer_hooks.py) ---------
    def genesis_epoch(self):
        return self.current_epoch

    def genesis_num_epochs(self):
        return self.num_epochs

    def genesis_iterations_per_epoch(self):
        return self.num_iterations_per_epoch

    def genesis_patch_size(self):
        return self.configuration_manager.patch_size

    def genesis_validation_losses(self):
        return self.logger.get_value("val_losses", step=None)   # kept in the checkpoint's logging

    def _validation_volumes(self, max_cases):
        """Up to ``max_cases`` validation cases (sorted names) as float32 (C, X, Y, Z) arrays."""
        _, val_keys = self.do_split()
        return preprocessed_volumes(self.preprocessed_dataset_folder, sorted(val_keys)[:max_cases])

    # --- the network, loss, optimiser and data ------------------------------------------------
    @classmethod
    def build_network_architecture(cls, plans_manager, configuration_manager, num_input_channels,
                                   num_output_channels, enable_deep_supervision=True):
        """nnUNetTrainer.build_network_architecture with one output channel per input channel and no
        deep supervision (restoration); the recipe's residual output as a forward hook (weights, names
        and checkpoint format stay the plans' network's)."""
        network = super().build_network_architecture(plans_manager, configuration_manager, num_input_channels,
                                                     num_input_channels, False)
        recipe = RECIPES[cls.genesis_recipe]
        if recipe.residual:
            if recipe.zero_init_output:  # the full-resolution head of v2's UNet decoders
                head = network.decoder.seg_layers[-1]
                with torch.no_grad():
                    head.weight.zero_()
                    if head.bias is not None:
                        head.bias.zero_()
            add_residual_output(network)
        return network

    def set_deep_supervision_enabled(self, enabled: bool):
        """nnUNetTrainer.set_deep_supervision_enabled: always off here (restoration scores one output)."""
        super().set_deep_supervision_enabled(False)

    def _build_loss(self):
        """nnUNetTrainer._build_loss: MSE against the original patch."""
        return RestorationLoss()

    def configure_optimizers(self):
        """nnUNetTrainer.configure_optimizers: the recipe's optimiser and schedule."""
        optimizer = make_optimizer(self.recipe, self.network.parameters())
        return optimizer, RecipeLRSchedule(optimizer, self.recipe, self.num_epochs)

    def get_training_transforms(self, patch_size, rotation_for_DA, deep_supervision_scales, mirror_axes,
                                do_dummy_2d_data_aug, use_mask_for_norm=None, is_cascaded=False,
                                foreground_labels=None, regions=None, ignore_label=None):
        """nnUNetTrainer.get_training_transforms' spatial augmentation (its SpatialTransform and dummy-2D
        wiring, taken from the stock pipeline, so its settings stay nnU-Net's), then the Genesis distortions
        (fresh entropy per worker, or the training's seed when it is seeded) instead of its intensity augmentation,
        mirroring and label handling."""
        distort = self.make_genesis_transform(self.genesis_training_seed())
        return ComposeTransforms(spatial_augmentation(patch_size, rotation_for_DA, do_dummy_2d_data_aug)
                                 + [GenesisRestorationTransform(distort)])

    def get_validation_transforms(self, deep_supervision_scales, is_cascaded=False, foreground_labels=None,
                                  regions=None, ignore_label=None):
        """nnUNetTrainer.get_validation_transforms: the Genesis distortions only, with the fixed validation
        seed, so that the validation loss is comparable between epochs."""
        return ComposeTransforms([GenesisRestorationTransform(self.make_validation_transform())])

    # --- training ------------------------------------------------------------------------------
    def on_train_start(self):
        """nnUNetTrainer.on_train_start, then the diagnostics' clock starts."""
        super().on_train_start()
        self.diagnostics_schedule()

    def on_train_epoch_start(self):
        """nnUNetTrainer.on_train_epoch_start (sets the recipe's rate for the epoch start)."""
        self.genesis_epoch_start()
        super().on_train_epoch_start()

    def train_step(self, batch: dict) -> dict:
        """nnUNetTrainer.train_step, after setting the recipe's rate for this iteration."""
        self.genesis_lr_before_iteration()
        return super().train_step(batch)

    def validation_step(self, batch: dict) -> dict:
        """nnUNetTrainer.validation_step: loss and the sums of the validation R^2 (no Dice)."""
        data = batch["data"].to(self.device, non_blocking=True)
        target = batch["target"].to(self.device, non_blocking=True)
        with autocast(self.device.type, enabled=True) if self.device.type == "cuda" else dummy_context():
            output = self.network(data)
            loss = self.loss(output, target)
        self.genesis_accumulate(output, target)
        return {"loss": loss.detach().cpu().numpy()}

    def on_validation_epoch_end(self, val_outputs):
        """nnUNetTrainer.on_validation_epoch_end: logs the validation R^2 where nnU-Net logs its pseudo
        Dice (progress.png, the EMA that picks checkpoint_best.pth), then early stopping (with a patience) and
        the per-distortion diagnostics."""
        loss = float(np.mean([np.mean(o["loss"]) for o in val_outputs])) if val_outputs else float("nan")
        r2 = self.genesis_validation_r2()
        self.logger.log("mean_fg_dice", r2, self.current_epoch)
        self.logger.log("dice_per_class_or_region", [r2], self.current_epoch)
        self.logger.log("val_losses", loss, self.current_epoch)
        self._genesis_stop = self.genesis_patience_ended()
        if self.is_ddp:   # every process stops at the same epoch: the first process decides
            decision = [self._genesis_stop]
            torch.distributed.broadcast_object_list(decision, src=0)
            self._genesis_stop = decision[0]
        self.genesis_epoch_end(self.current_epoch == self.num_epochs - 1 or self._genesis_stop)

    def on_epoch_end(self):
        """nnUNetTrainer.on_epoch_end (checkpoints, then the epoch count), then leave the loop when the patience
        has ended."""
        super().on_epoch_end()
        if self._genesis_stop:
            raise _PatienceEnded()

    def run_training(self):
        """nnUNetTrainer.run_training; stopped early, it ends as a finished training does (on_train_end: the final
        checkpoint, the data loaders shut down)."""
        try:
            super().run_training()
        except _PatienceEnded:
            self.on_train_end()

    def adaptation_plan(self) -> dict:
        """nnssl's adaptation plan of this network (``nnunet_genesis.checkpoints.adaptation_plan.build_plan``): the plans'
        architecture, configuration and channels, the network's encoder and stem paths, our recipe and mix."""
        from nnunet_genesis import __version__
        from nnunet_genesis.nnunet_v2.prepare import PROVENANCE_KEY
        plans = self.plans_manager.plans
        # the mix as the transform has it (genesis_transform_kwargs may hold transform objects: not plain data)
        genesis = {"trainer": type(self).__name__, "package_version": __version__, "recipe": self.recipe.as_dict(),
                   "distortion_mix": distortion_mix(self.make_genesis_transform(0)),
                   "target_dataset": plans.get(PROVENANCE_KEY, {}).get("target_dataset")}
        return build_plan(plans, self.configuration_name, self.configuration_manager.configuration,
                          self.num_input_channels, network_keys(self.plain_network), genesis)

    def save_checkpoint(self, filename: str) -> None:
        """nnUNetTrainer.save_checkpoint (nnunetv2 2.8.1: the same keys), plus nnssl's adaptation plan and the
        citations beside ``network_weights`` (as nnssl's ``AbstractBaseTrainer.save_checkpoint``), numpy values
        made plain so that ``torch.load(weights_only=True)`` opens it (nnU-Net master's reading), written
        atomically; ``adaptation_plan.json`` beside it."""
        if self.local_rank != 0 or self.disable_checkpointing:
            return super().save_checkpoint(filename)  # nothing, or nnU-Net's "No checkpoint written"
        checkpoint = {
            "network_weights": self.plain_network.state_dict(),
            "optimizer_state": self.optimizer.state_dict(),
            "grad_scaler_state": self.grad_scaler.state_dict() if self.grad_scaler is not None else None,
            "logging": self.logger.get_checkpoint(),
            "_best_ema": self._best_ema,
            "current_epoch": self.current_epoch + 1,
            "init_args": self.my_init_kwargs,
            "trainer_name": self.__class__.__name__,
            "inference_allowed_mirroring_axes": self.inference_allowed_mirroring_axes,
        }
        plan = self.adaptation_plan()
        checkpoint = plain_data(dict(checkpoint, **checkpoint_extras(plan)), arrays="tensor")
        atomic_write(filename, lambda tmp: torch.save(checkpoint, tmp))
        write_plan_json(plan, os.path.dirname(os.path.abspath(filename)), self.__class__.__name__)

    def perform_actual_validation(self, save_probabilities: bool = False):
        """nnUNetTrainer.perform_actual_validation (run by ``nnUNetv2_train`` after training and by
        ``--val``): writes ``validation_restoration/`` instead of a segmentation export. ``current_epoch``
        counts the epochs trained here (on_epoch_end has stepped it past the last)."""
        return self.genesis_final_report(self.current_epoch)


class nnUNetTrainer_GenesisPretrain_NnUNetSGD(nnUNetTrainer_GenesisPretrain):
    """nnU-Net's SGD (lr 0.01, Nesterov momentum 0.99, poly decay), direct output."""
    genesis_recipe = "nnunet_sgd"


class nnUNetTrainer_GenesisPretrain_AdamW(nnUNetTrainer_GenesisPretrain):
    """AdamW with warm-up and poly decay, direct output, the published distortion mix."""
    genesis_recipe = "adamw"


class nnUNetTrainer_GenesisPretrain_Residual(nnUNetTrainer_GenesisPretrain):
    """AdamW with warm-up and poly decay, residual output (restored = input + network(input))."""
    genesis_recipe = "adamw_residual"


class nnUNetTrainer_GenesisPretrain_Published(nnUNetTrainer_GenesisPretrain):
    """The published optimiser (SGD lr 0.1, momentum 0.9, constant rate) and early stopping: training ends once
    the validation loss has not improved for 20 epochs."""
    genesis_recipe = "published_sgd"
    genesis_early_stopping_patience = 20
