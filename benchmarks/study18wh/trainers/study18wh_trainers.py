"""Thin trainers for issue #18's whole-head study (Task603_WholeHead, volumes much larger than the patch).

The DeepGrey study's protocol (benchmarks/study18/trainers/study18_trainers.py, loaded by path below: its
budgets ``STUDY18_PRETRAIN_*`` / ``STUDY18_FT_*`` and recipe ``adamw_inpaint_inside``), found by the stock
``nnUNet_train`` through ``nnUNet_extTrainer=benchmarks/study18wh/trainers`` (see ``run_study18wh.sh``). Two
departures, the same in every arm, for CPU time only:

* the patch: ``STUDY18WH_PATCH`` (default 64 64 64, z y x) instead of the plans' 128 x 128 x 128. The network is
  the plans' (5 poolings per axis, so the patch must be divisible by 32). Measured on one core: one training
  iteration at batch 2 takes 79 s at 128^3 and 6.3 s at 64^3 (patch_timing.py). The cases (177 x 207 x 175 median) are 24 times
  the 64^3 patch by volume, "much larger than the patch" as the issue asks (3.0 times the plans' patch);
* the sliding window's step: ``STUDY18WH_STEP`` (default 1.0: tiles that touch, no overlap) instead of
  nnU-Net's 0.5, for the end-of-training validation and for ``nnUNet_predict`` (nnUNetTrainer.validate and
  inference/predict.py pass ``step_size`` by keyword; this trainer replaces it). Mirroring stays off there as
  in the study's ``--disable_tta``.
"""
import dataclasses
import os

import numpy as np

from nnunet_genesis.distortions.transforms import NonLinearIntensityTransform
from nnunet_genesis.integration import import_trainer_file

_S18 = import_trainer_file(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "study18", "trainers",
                                        "study18_trainers.py"))


class WholeHeadPatch:
    """The patch ``STUDY18WH_PATCH`` instead of the plans' (nnUNetTrainer.process_plans sets ``patch_size``;
    setup_DA_params and the sliding window read it after)."""
    patch_variable, patch_default = "STUDY18WH_PATCH", "64 64 64"

    def process_plans(self, plans):
        super().process_plans(plans)
        patch = [int(v) for v in os.environ.get(self.patch_variable, self.patch_default).split()]
        if len(patch) != 3 or any(v % 32 for v in patch):
            raise SystemExit(f"{self.patch_variable}={patch}: three sizes, each divisible by 32 (5 poolings)")
        self.patch_size = np.array(patch, dtype=int)


class WholeHeadPrediction(WholeHeadPatch):
    """Sliding-window step ``STUDY18WH_STEP`` and no mirroring, in validation and in nnUNet_predict."""

    def predict_preprocessed_data_return_seg_and_softmax(self, *args, **kwargs):
        kwargs["step_size"] = float(os.environ.get("STUDY18WH_STEP", "1.0"))
        return super().predict_preprocessed_data_return_seg_and_softmax(*args, **kwargs)

    def validate(self, *args, **kwargs):
        kwargs["do_mirroring"] = False
        return super().validate(*args, **kwargs)


class nnUNetTrainerV2_GenesisPretrain_S18WHInside(WholeHeadPatch, _S18.nnUNetTrainerV2_GenesisPretrain_S18Inside):
    """The DeepGrey study's pretraining (adamw_inpaint_inside, STUDY18_PRETRAIN_EPOCHS x _ITERS) at the study's
    patch."""


class nnUNetTrainerV2_GenesisPretrain_S18WHSmall(nnUNetTrainerV2_GenesisPretrain_S18WHInside):
    """The same pretraining at a smaller patch, ``STUDY18WH_PRETRAIN_PATCH`` (default 32 x 32 x 64): a quarter of
    the 64^3 patch's voxels (measured in training: 550 iterations in 34 CPU-minutes, against 200 in 30 at 64^3,
    docs/measurements_study18_wholehead.md; the distortions and augmentation do not shrink with it). 32^3 is not
    possible: 5 poolings leave 1 x 1 x 1 at the bottom, and instance normalisation refuses a single element in
    training. Fine-tuning keeps ``STUDY18WH_PATCH``; convolutions do not depend on the patch, so the weights
    transfer unchanged."""
    patch_variable, patch_default = "STUDY18WH_PRETRAIN_PATCH", "32 32 64"


class nnUNetTrainerV2_GenesisPretrain_S18WHSmallLowLR(nnUNetTrainerV2_GenesisPretrain_S18WHSmall):
    """The small-patch pretraining at peak rate 3e-4 with a 15 % warm-up (adamw_inpaint_lowlr's schedule, with
    adamw_inpaint_inside's loss): what the collapse warning advises."""

    @property
    def recipe(self):
        return dataclasses.replace(super().recipe, name="adamw_inpaint_inside_lowlr", peak_lr=3e-4, warmup=0.15)


class nnUNetTrainerV2_GenesisPretrain_S18WHSmallIdentity(nnUNetTrainerV2_GenesisPretrain_S18WHSmallLowLR):
    """As ..._S18WHSmallLowLR, with a residual output that starts at the identity (adamw_identity_start's
    output form): restored = distorted + network(distorted), the full-resolution output layer at 0."""

    @property
    def recipe(self):
        return dataclasses.replace(super().recipe, name="adamw_inpaint_inside_lowlr_identity", residual=True,
                                   zero_init_output=True)


class nnUNetTrainerV2_Scratch_S18WH(WholeHeadPrediction, _S18.nnUNetTrainerV2_Scratch_S18):
    """Scratch arm: stock nnUNetTrainerV2, the study's budget, patch and step."""


class nnUNetTrainerV2_Genesis_S18WH(WholeHeadPrediction, _S18.nnUNetTrainerV2_Genesis_S18):
    """Genesis arm: nnUNetTrainerV2_Genesis (encoder-only transfer, warm-up 1 epoch, the plain transfer that
    nnUNetTrainerV2_Genesis_S18 pins), same budget, patch, step."""


class nnUNetTrainerV2_GenesisMix_S18WH(WholeHeadPrediction, _S18.nnUNetTrainerV2_GenesisMix_S18):
    """Genesis arm with shrink and perturb (``STUDY18_MIX``, study18_trainers.ShrinkAndPerturb)."""


class nnUNetTrainerV2_GenesisPretrain_S18WHSmallMonotone(_S18.IncreasingMapsOnly,
                                                         nnUNetTrainerV2_GenesisPretrain_S18WHSmall):
    """The small-patch pretraining with increasing intensity maps only (``p_decreasing`` 0 instead of the published
    0.5): on whole heads a decreasing map swaps the air (20 % of a random patch's voxels inside the image,
    air_fraction.py) with the bright tail of the patch's range, an error of about 8 times the patch's variance for the
    identity (docs/measurements_study18_wholehead.md, benchmarks/distortion_loss_budget.py). The maps:
    ``IncreasingMapsOnly`` (study18_trainers.py)."""


class nnUNetTrainerV2_GenesisPretrain_S18WHSmallNoMap(nnUNetTrainerV2_GenesisPretrain_S18WHSmall):
    """The small-patch pretraining without the intensity map (its probability 0): shuffling and painting only."""
    genesis_transform_kwargs = {"nonlinear": NonLinearIntensityTransform(p_per_channel=0.0)}


class nnUNetTrainerV2_GenesisPretrain_S18WHSmallMonotoneIdentity(_S18.IncreasingMapsOnly,
                                                                 nnUNetTrainerV2_GenesisPretrain_S18WHSmallIdentity):
    """..._S18WHSmallIdentity (residual output starting at the identity, peak 3e-4) with increasing intensity maps
    only, as ..._S18WHSmallMonotone."""


class nnUNetTrainerV2_GenesisPretrain_S18WHSmallMonotoneIdentityPeak1e3(
        nnUNetTrainerV2_GenesisPretrain_S18WHSmallMonotoneIdentity):
    """..._S18WHSmallMonotoneIdentity at adamw_identity_start's schedule: peak 1e-3, 5 % warm-up."""

    @property
    def recipe(self):
        return dataclasses.replace(super().recipe, name="adamw_inpaint_inside_identity_monotone", peak_lr=1e-3,
                                   warmup=0.05)


class nnUNetTrainerV2_GenesisPretrain_S18WHSmallMonotoneIdentityNoSpatial(
        nnUNetTrainerV2_GenesisPretrain_S18WHSmallMonotoneIdentity):
    """..._S18WHSmallMonotoneIdentity without nnU-Net's spatial augmentation (no rotation, scaling or elastic
    deformation): the loader cuts patches of the patch's own size (nnUNetTrainer.setup_DA_params enlarges
    ``basic_generator_patch_size`` for the rotations; here it is the patch). Measured: it cost as much CPU per
    iteration as the run with augmentation (28.1 against 28.6 CPU-minutes for 550 iterations,
    docs/measurements_study18_wholehead.md)."""

    def setup_DA_params(self):
        super().setup_DA_params()
        for key in ("do_elastic", "do_rotation", "do_scaling"):
            self.data_aug_params[key] = False
        self.basic_generator_patch_size = np.array(self.patch_size)


class nnUNetTrainerV2_GenesisPretrain_S18WHSmallMonotoneIdentityConstant(
        nnUNetTrainerV2_GenesisPretrain_S18WHSmallMonotoneIdentity):
    """..._S18WHSmallMonotoneIdentity at a constant rate ``STUDY18WH_CONSTANT_LR`` (default 1e-3; the recipes'
    constant schedule has no warm-up): the peak-1e-3 run beat the identity on in-painting mid-run and slid back
    as its rate decayed."""

    @property
    def recipe(self):
        return dataclasses.replace(super().recipe, name="adamw_inpaint_inside_identity_monotone_constant",
                                   schedule="constant", peak_lr=float(os.environ.get("STUDY18WH_CONSTANT_LR", "1e-3")))
