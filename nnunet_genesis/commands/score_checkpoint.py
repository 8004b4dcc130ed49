"""Score any pretraining checkpoint's restoration on a prepared task or dataset (``nnUNet_genesis_restoration``).

One scorer for nnU-Net v1 and v2 (:func:`score_checkpoint`); each version's adapter gives it a
:class:`ScoringTarget`: the network the plans give with output channels = input channels and no deep
supervision (as the pretraining trainers build it), the patch size and the prepared cases.  v1
(:func:`v1_target`): a task, its 3D plans ``.pkl``, Generic_UNet, ``.npz`` cases; v2 (:func:`v2_target`): a
dataset, configuration and plans, the plans' PlainConvUNet / ResidualEncoderUNet, the configuration's cases
(:mod:`nnunet_genesis.nnunet_v2.network`).  The weights must fill the network completely (the adaptive transfer
in strict mode, segmentation heads included, so a checkpoint planned for another task is adapted where the rules
allow and refused otherwise).  Whether the output is residual (``nnunet_genesis/pretraining/recipes.py``) is read from what
the checkpoint records -- v1: its ``.model.pkl`` (the trainer that wrote it and its recipe); v2: the recipe in its
adaptation plan, or its ``trainer_name`` -- or given by the caller for weights that record none.  The scores mean
what the trainers' do (``nnunet_genesis.pretraining.validation.scoring_transform``: the published distortions and
mix, whatever the checkpoint's recipe trained with), so a checkpoint scores the same here as in its trainer's log.
"""
import os
from dataclasses import dataclass
from typing import Callable, Optional

from nnunet_genesis.io import safe_pickle
from nnunet_genesis.io.atomic import refuse_output_inside_inputs
from nnunet_genesis.nnunet_v1 import layout


class ScoreError(ValueError):
    """Bad input to the scoring command: one line naming the file and the fault."""


@dataclass
class ScoringTarget:
    """What a version's adapter hands the scorer."""
    name: str                                # task (v1) or dataset (v2) name
    network: object                          # restoration network of the plans (weights not yet loaded)
    patch_size: list
    load_cases: Callable[[int], dict]        # max_cases -> {case: float32 (C, X, Y, Z)}, sorted by name
    recorded_recipe: Callable[[str], tuple]  # weights -> (recipe name or None, where it is recorded)
    folder: str                              # the prepared task's / dataset's folder (an input: never written)


def _v1_recorded_recipe(weights: str):
    """(recipe, where) when ``weights``'s ``.pkl`` names a Genesis pretraining trainer; (None, ...) otherwise."""
    info = weights + ".pkl"
    if not os.path.isfile(info):
        return None, None
    try:
        name = safe_pickle.load(info).get("name")
    except safe_pickle.UnsafePickleError as error:
        raise ScoreError(str(error)) from None
    except Exception as error:
        raise ScoreError("%s: not an nnU-Net checkpoint .pkl (%s: %s)" % (info, type(error).__name__, error))
    from nnunet_genesis.integration import find_genesis_trainer
    trainer = find_genesis_trainer(str(name))
    return getattr(trainer, "genesis_recipe", None), "%s.pkl" % weights


def _v2_recorded_recipe(weights: str):
    """(recipe, where) for a v2 checkpoint: the recipe in its adaptation plan (ours), else that of the Genesis
    trainer its ``trainer_name`` names (ours, or a user's in ``nnUNet_extTrainer``); (None, None) if neither."""
    from nnunet_genesis.checkpoints.adaptation_plan import GENESIS_KEY, PLAN_KEY
    from nnunet_genesis.checkpoints.files import read_checkpoint_file
    checkpoint = read_checkpoint_file(weights)
    checkpoint = checkpoint if isinstance(checkpoint, dict) else {}
    plan = checkpoint.get(PLAN_KEY) if isinstance(checkpoint.get(PLAN_KEY), dict) else {}
    recipe = plan.get(GENESIS_KEY, {}).get("recipe", {}) if isinstance(plan.get(GENESIS_KEY), dict) else {}
    if isinstance(recipe, dict) and recipe.get("name"):
        return recipe["name"], "its adaptation plan"
    name = checkpoint.get("trainer_name")
    if not isinstance(name, str):
        return None, None
    from nnunet_genesis.integration import find_ext_trainer
    from nnunet_genesis.nnunet_v2 import trainers
    trainer = getattr(trainers, name) if name in trainers.__all__ else find_ext_trainer(name)
    return getattr(trainer, "genesis_recipe", None), "the recipe of its trainer %s" % name


def load_prepared_cases(task_dir: str, plans: dict, stage, max_cases: int):
    """Up to ``max_cases`` preprocessed cases of ``task_dir`` (sorted by name), without the seg channel, NaN
    where the seg says the voxel is outside the image (read as the pretraining trainer reads them:
    ``nnunet_genesis.nnunet_v1.network.preprocessed_volumes``)."""
    from nnunet_genesis.nnunet_v1.network import UnreadableCase, preprocessed_volumes
    folder = layout.stage_folder(task_dir, plans, stage)
    if not os.path.isdir(folder):
        raise ScoreError("%s: no preprocessed data folder (run nnUNet_genesis_prepare first)" % folder)
    names = sorted(f[:-4] for f in os.listdir(folder) if f.endswith(".npz"))[:max_cases]
    if not names:
        raise ScoreError("%s: no prepared cases (.npz)" % folder)
    try:
        return preprocessed_volumes({name: os.path.join(folder, name + ".npz") for name in names})
    except UnreadableCase as error:
        raise ScoreError(str(error)) from None


def v1_target(task: str, plans_identifier: str = layout.DEFAULT_PLANS_IDENTIFIER) -> ScoringTarget:
    """nnU-Net v1: the prepared task's 3D plans (last stage), Generic_UNet, its ``.npz`` cases."""
    from nnunet_genesis.nnunet_v1.network import build_network_from_plans
    from nnunet_genesis.nnunet_v1.prepare import _nnunet_folders, resolve_task_name
    task_name = resolve_task_name(task)
    task_dir = os.path.join(_nnunet_folders()[2], task_name)
    plans_file = layout.plans_file(task_dir, plans_identifier)
    if not os.path.isfile(plans_file):
        raise ScoreError("%s: no 3D plans (prepare the task with nnUNet_genesis_prepare first)" % plans_file)
    plans = layout.load_plans(plans_file)
    stage = layout.last_stage(plans)
    network = build_network_from_plans(plans, stage=stage, num_classes=plans["num_modalities"],
                                       deep_supervision=False)
    return ScoringTarget(task_name, network, [int(p) for p in plans["plans_per_stage"][stage]["patch_size"]],
                         lambda n: load_prepared_cases(task_dir, plans, stage, n), _v1_recorded_recipe, task_dir)


def v2_target(dataset: str, plans_identifier: str = None, configuration: str = None) -> ScoringTarget:
    """nnU-Net v2: the prepared dataset's ``configuration`` of its plans (defaults 3d_fullres, nnUNetPlans),
    the plans' network, the configuration's preprocessed cases (:mod:`nnunet_genesis.nnunet_v2.network`)."""
    from nnunet_genesis.nnunet_v2 import layout as layout_v2
    from nnunet_genesis.nnunet_v2 import network as v2
    configuration = configuration or v2.DEFAULT_CONFIGURATION
    target = v2.load_target(dataset, plans_identifier or v2.DEFAULT_PLANS_IDENTIFIER, configuration)
    try:
        channels = len(layout_v2.channel_names(target.dataset_json))
        network, manager = v2.build_network(target, configuration, num_output_channels=channels,
                                            deep_supervision=False)
    except layout_v2.LayoutError as error:
        raise ScoreError(str(error)) from None
    folder = v2.configuration_data_folder(target, configuration)

    def load_cases(max_cases):
        if not os.path.isdir(folder):
            raise ScoreError("%s: no preprocessed data folder (run nnUNet_genesis_prepare --nnunet 2 first)" % folder)
        cases = v2.preprocessed_volumes(folder, max_cases=max_cases)
        if not cases:
            raise ScoreError("%s: no prepared cases" % folder)
        return cases
    return ScoringTarget(target.name, network, [int(p) for p in manager.patch_size], load_cases,
                         _v2_recorded_recipe, os.path.dirname(os.path.abspath(folder)))


def score_checkpoint(weights: str, task: str, output_folder: str, max_cases: int = 20,
                     residual: Optional[bool] = None, plans_identifier: Optional[str] = None, nnunet: int = 1,
                     configuration: Optional[str] = None):
    """Score ``weights`` on the prepared task (v1) or dataset (v2) ``task`` (id or name); writes
    ``output_folder`` (summary.json, a preview PNG per distortion). Returns (summary, residual, how residual
    was decided)."""
    from nnunet_genesis.pretraining.loss import add_residual_output
    from nnunet_genesis.pretraining.validation import restoration_report
    from nnunet_genesis.pretraining.recipes import RECIPES
    from nnunet_genesis.transfer.weights import TransferRefused, transfer_weights

    if not os.path.isfile(weights):
        raise ScoreError("%s: no such checkpoint file" % weights)
    if max_cases < 1:
        raise ScoreError("--cases %d: score at least 1 case" % max_cases)
    if nnunet == 2:
        target = v2_target(task, plans_identifier, configuration)
    else:
        target = v1_target(task, plans_identifier or layout.DEFAULT_PLANS_IDENTIFIER)
    refuse_output_inside_inputs(output_folder, {"-w": weights, "-t": target.folder})
    network = target.network
    try:
        transfer_weights(network, weights, mode="encoder+decoder", include_seg_outputs=True, strict=True)
    except TransferRefused as refused:
        raise ScoreError("%s does not fit the restoration network of %s's plans: %s"
                         % (weights, target.name, "; ".join(refused.reasons)))
    recipe, where = target.recorded_recipe(weights)
    if residual is None:
        if recipe in RECIPES:
            residual, how = RECIPES[recipe].residual, "recorded in %s" % where
        else:
            residual, how = False, ("not recorded (the checkpoint names no Genesis pretraining trainer found here "
                                    "-- ours or in nnUNet_extTrainer -- nor a recipe): assumed direct; pass "
                                    "--residual if not")
    else:
        how = "given on the command line"
    if residual:
        add_residual_output(network)
    cases = target.load_cases(max_cases)
    summary = restoration_report(network, cases, target.patch_size, output_folder,
                                 extra={"weights": os.path.abspath(weights), "task": target.name,
                                        "residual": residual})
    return summary, residual, how
