"""Score any pretraining checkpoint's restoration on a prepared task (``nnUNet_genesis_restoration``).

The network is the one the task's plans give (Generic_UNet, output channels = input channels,
as ``nnUNetTrainerV2_GenesisPretrain`` builds it); the weights must fill it completely (the
adaptive transfer in strict mode, segmentation heads included, so a checkpoint planned for another
task is adapted where the rules allow and refused otherwise). Whether the output is residual
(``nnunet_genesis/recipes.py``) is read from the checkpoint's ``.model.pkl`` (the trainer that
wrote it and its recipe), or given by the caller for weights without one.
"""
import os
from typing import Optional

import numpy as np

from nnunet_genesis import safe_pickle
from nnunet_genesis.atomic import refuse_output_inside_inputs
from nnunet_genesis.nnunet_v1 import layout


class ScoreError(ValueError):
    """Bad input to the scoring command: one line naming the file and the fault."""


def residual_from_checkpoint(weights: str) -> Optional[bool]:
    """True / False when ``weights``'s ``.pkl`` names a Genesis pretraining trainer; None when there
    is no ``.pkl`` or it names another trainer."""
    info = weights + ".pkl"
    if not os.path.isfile(info):
        return None
    try:
        name = safe_pickle.load(info).get("name")
    except safe_pickle.UnsafePickleError as error:
        raise ScoreError(str(error)) from None
    except Exception as error:
        raise ScoreError("%s: not an nnU-Net checkpoint .pkl (%s: %s)" % (info, type(error).__name__, error))
    from nnunet_genesis.integration import find_genesis_trainer
    from nnunet_genesis.recipes import RECIPES
    trainer = find_genesis_trainer(str(name))
    recipe = getattr(trainer, "genesis_recipe", None)
    return RECIPES[recipe].residual if recipe in RECIPES else None


def load_prepared_cases(task_dir: str, plans: dict, stage, max_cases: int):
    """Up to ``max_cases`` preprocessed cases of ``task_dir`` (sorted by name), without the seg channel."""
    folder = layout.stage_folder(task_dir, plans, stage)
    if not os.path.isdir(folder):
        raise ScoreError("%s: no preprocessed data folder (run nnUNet_genesis_prepare first)" % folder)
    names = sorted(f[:-4] for f in os.listdir(folder) if f.endswith(".npz"))[:max_cases]
    if not names:
        raise ScoreError("%s: no prepared cases (.npz)" % folder)
    cases = {}
    for name in names:
        path = os.path.join(folder, name + ".npz")
        try:
            cases[name] = np.asarray(np.load(path, allow_pickle=False)["data"][:-1], dtype=np.float32)
        except Exception as error:
            raise ScoreError("%s: unreadable prepared case (%s: %s)" % (path, type(error).__name__, error))
    return cases


def score_checkpoint(weights: str, task: str, output_folder: str, max_cases: int = 20,
                     residual: Optional[bool] = None,
                     plans_identifier: str = layout.DEFAULT_PLANS_IDENTIFIER):
    """Score ``weights`` on the prepared task ``task`` (id or name); writes ``output_folder``
    (summary.json, a preview PNG per distortion). Returns (summary, residual, how residual was decided)."""
    from nnunet_genesis.pretraining import add_residual_output, restoration_report
    from nnunet_genesis.nnunet_v1.network import build_network_from_plans
    from nnunet_genesis.transfer import TransferRefused, transfer_weights
    from nnunet_genesis.transforms import GenesisTransform
    from nnunet_genesis.unlabeled import _nnunet_folders, resolve_task_name

    if not os.path.isfile(weights):
        raise ScoreError("%s: no such checkpoint file" % weights)
    if max_cases < 1:
        raise ScoreError("--cases %d: score at least 1 case" % max_cases)
    task_name = resolve_task_name(task)
    task_dir = os.path.join(_nnunet_folders()[2], task_name)
    refuse_output_inside_inputs(output_folder, {"-w": weights, "-t": task_dir})
    plans_file = layout.plans_file(task_dir, plans_identifier)
    if not os.path.isfile(plans_file):
        raise ScoreError("%s: no 3D plans (prepare the task with nnUNet_genesis_prepare first)" % plans_file)
    plans = layout.load_plans(plans_file)
    stage = layout.last_stage(plans)
    network = build_network_from_plans(plans, stage=stage, num_classes=plans["num_modalities"],
                                       deep_supervision=False)
    try:
        transfer_weights(network, weights, mode="encoder+decoder", include_seg_outputs=True, strict=True)
    except TransferRefused as refused:
        raise ScoreError("%s does not fit the restoration network of %s's plans: %s"
                         % (weights, task_name, "; ".join(refused.reasons)))
    recorded = residual_from_checkpoint(weights)
    if residual is None:
        residual, how = (recorded, "recorded in %s.pkl" % weights) if recorded is not None else \
            (False, "not recorded (no .pkl beside the weights, or the trainer it names is not a Genesis pretraining "
                    "trainer found here: ours or in nnUNet_extTrainer): assumed direct; pass --residual if not")
    else:
        how = "given on the command line"
    if residual:
        add_residual_output(network)
    cases = load_prepared_cases(task_dir, plans, stage, max_cases)
    patch_size = [int(p) for p in plans["plans_per_stage"][stage]["patch_size"]]
    summary = restoration_report(network, cases, patch_size, lambda seed: GenesisTransform(seed=seed), output_folder,
                                 extra={"weights": os.path.abspath(weights), "task": task_name, "residual": residual})
    return summary, residual, how
