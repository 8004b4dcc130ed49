"""Pretraining recipes: optimiser, learning-rate schedule, output form and distortion mix, as data.

One recipe is one row of ``RECIPES``; the pretraining trainer and its variants, and
``benchmarks/pretrain_learning.py`` (which measured them) read it from here. The schedule is a
function of training progress ``t`` in [0, 1) (iteration / total iterations, or epoch / total
epochs), so one recipe serves any budget:

    lr(t) = peak_lr * t / warmup                       for t < warmup   (linear warm-up)
    lr(t) = peak_lr * (1 - (t - warmup) / (1 - warmup)) ** 0.9   after   (nnU-Net's poly decay)
    lr(t) = peak_lr                                    when ``schedule == "constant"``

``residual``: the network predicts the correction, ``restored = distorted + network(distorted)``
(trained with MSE against the original as always). A Generic_UNet starts near a constant output;
with a residual it starts near the identity, which is already a good answer for local shuffling
and in-painting, and it has only to learn what the distortion changed. ``zero_init_output`` sets the
full-resolution output layer (``seg_outputs[-1]``, never transferred to fine-tuning) to zero, so
training starts exactly at the identity.

``inside_only``: voxels outside the image leave the loss (``GenesisTransform(inside_key="seg")``: the
target is NaN where nnU-Net's segmentation is -1, i.e. the padding of cases smaller than the patch, the
fill of the spatial augmentation and, for MRI cropped to its nonzero region, the air around the head).
The per-distortion diagnostics leave them out whatever the recipe.

``p_inpaint``: of the training patches that are painted (90 %), the share that is in-painted rather
than out-painted. Published: 0.2, so 72 % of all training patches are out-painted, mostly noise the
network cannot predict. The trainers train and compute their validation loss with the recipe's mix;
their diagnostics score the published one (``nnunet_genesis.pretraining.validation.scoring_transform``).
"""
from dataclasses import asdict, dataclass

import torch

from nnunet_genesis.distortions.composite import PUBLISHED_P_INPAINT

POLY_EXPONENT = 0.9  # nnU-Net's poly_lr (nnunet/training/learning_rate/poly_lr.py)


@dataclass(frozen=True)
class Recipe:
    name: str
    optimizer: str            # "sgd" or "adamw"
    peak_lr: float
    momentum: float = 0.0     # SGD only
    nesterov: bool = False    # SGD only
    weight_decay: float = 3e-5
    warmup: float = 0.0       # fraction of training spent warming up linearly
    schedule: str = "poly"    # "poly" or "constant"
    residual: bool = False
    zero_init_output: bool = False  # residual only: the full-resolution output layer starts at 0
    p_inpaint: float = PUBLISHED_P_INPAINT  # painted training patches: share in-painted (see module doc)
    inside_only: bool = False  # leave voxels outside the image (nnU-Net's seg < 0) out of the loss
    description: str = ""

    def as_dict(self):
        return asdict(self)


RECIPES = {r.name: r for r in (
    Recipe("nnunet_sgd", "sgd", 1e-2, momentum=0.99, nesterov=True,
           description="nnU-Net's own: SGD lr 0.01, Nesterov momentum 0.99, poly decay"),
    Recipe("published_sgd", "sgd", 1e-1, momentum=0.9, schedule="constant",
           description="Models Genesis as published: SGD lr 0.1, momentum 0.9"),
    Recipe("adamw", "adamw", 1e-3, weight_decay=1e-4, warmup=0.05,
           description="AdamW lr 1e-3, 5 % linear warm-up, poly decay"),
    Recipe("adamw_inpaint", "adamw", 1e-3, weight_decay=1e-4, warmup=0.05, p_inpaint=0.8,
           description="AdamW lr 1e-3, 5 % linear warm-up, poly decay; 80 % of painted training patches "
                       "in-painted"),
    Recipe("adamw_inpaint_inside", "adamw", 1e-3, weight_decay=1e-4, warmup=0.05, p_inpaint=0.8, inside_only=True,
           description="adamw_inpaint, with voxels outside the image (padding) left out of the loss"),
    Recipe("adamw_inpaint_lowlr", "adamw", 3e-4, weight_decay=1e-4, warmup=0.15, p_inpaint=0.8,
           description="adamw_inpaint at peak lr 3e-4 with a 15 % warm-up"),
    Recipe("adamw_residual", "adamw", 1e-3, weight_decay=1e-4, warmup=0.05, residual=True,
           description="AdamW lr 1e-3, 5 % linear warm-up, poly decay, residual output"),
    Recipe("adamw_identity_start", "adamw", 1e-3, weight_decay=1e-4, warmup=0.05, residual=True,
           zero_init_output=True,
           description="AdamW lr 1e-3, 5 % linear warm-up, poly decay, residual output starting at the identity"),
    Recipe("sgd_residual", "sgd", 1e-2, momentum=0.99, nesterov=True, residual=True,
           description="nnU-Net's SGD with a residual output"),
)}


# the trainers' default, chosen by measurement (the README's "Does pretraining learn?")
DEFAULT_RECIPE = "adamw_inpaint"


def transform_kwargs(recipe: Recipe, overrides=None) -> dict:
    """``GenesisTransform`` arguments for training with ``recipe`` (its distortion mix), then ``overrides``
    (a trainer's ``genesis_transform_kwargs``) on top."""
    kwargs = {"p_inpaint": recipe.p_inpaint}
    if recipe.inside_only:
        kwargs["inside_key"] = "seg"  # batchgenerators' key of nnU-Net's segmentation (v2: see nnunet_v2/transforms)
    return dict(kwargs, **(overrides or {}))


def learning_rate(recipe: Recipe, progress: float) -> float:
    """The learning rate at training progress ``progress`` in [0, 1] (see module doc)."""
    progress = min(max(float(progress), 0.0), 1.0)
    if recipe.schedule == "constant":
        return recipe.peak_lr
    if recipe.warmup > 0 and progress < recipe.warmup:
        return recipe.peak_lr * progress / recipe.warmup
    decayed = (progress - recipe.warmup) / (1.0 - recipe.warmup) if recipe.warmup < 1 else 1.0
    return recipe.peak_lr * (1.0 - min(decayed, 1.0)) ** POLY_EXPONENT


def set_recipe_lr(optimizer, recipe: Recipe, epochs_done: float, num_epochs: int) -> float:
    """Set every group of ``optimizer`` to the recipe's rate at ``epochs_done / num_epochs`` (fractional epochs:
    the pretraining trainers, v1 and v2, call it before every iteration); returns that rate."""
    lr = learning_rate(recipe, epochs_done / max(num_epochs, 1))
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


def make_optimizer(recipe: Recipe, parameters) -> torch.optim.Optimizer:
    """The recipe's optimiser at its peak rate (the schedule sets ``lr`` each step or epoch)."""
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(parameters, recipe.peak_lr, momentum=recipe.momentum, nesterov=recipe.nesterov,
                               weight_decay=recipe.weight_decay)
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(parameters, recipe.peak_lr, weight_decay=recipe.weight_decay)
    raise ValueError("recipe %s: unknown optimizer %r (sgd or adamw)" % (recipe.name, recipe.optimizer))
