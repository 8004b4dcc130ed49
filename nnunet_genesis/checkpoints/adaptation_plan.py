"""What travels with a pretraining checkpoint: nnssl's adaptation plan, with our recipe and distortion mix inside.

The one owner of that format here: building the plan our v2 pretraining writes, checking a plan that comes with
a checkpoint (ours or nnssl's), and reading from it what the transfer needs.  Imports no nnU-Net.

The format follows MIC-DKFZ/nnssl (commit 70448644), read, not copied:

* ``src/nnssl/adaptation_planning/adaptation_plan.py``: ``AdaptationPlan.serialize`` -- ``architecture_plans``
  (``ArchitecturePlans``: ``arch_class_name``, ``arch_kwargs``, ``arch_kwargs_requiring_import``; the kwargs of
  ``DynamicArchitecturePlans`` with the classes as dotted names), ``pretrain_plan``, ``pretrain_num_input_channels``,
  ``recommended_downstream_patchsize``, ``key_to_encoder``, ``key_to_stem``, ``keys_to_in_proj``, ``key_to_lpe``;
  ``AdaptationPlan.from_dict`` reads exactly these keys, so other keys are ignored by it;
* ``src/nnssl/experiment_planning/experiment_planners/plan.py``: ``Plan`` and ``ConfigurationPlan`` (the
  ``pretrain_plan`` and its one configuration);
* ``src/nnssl/training/nnsslTrainer/AbstractTrainer.py``: ``save_checkpoint`` stores the serialised plan under
  ``nnssl_adaptation_plan`` beside ``network_weights`` and turns numpy values into plain ones (``_convert_numpy``);
* ``src/nnssl/utilities/add_adaptation_plan.py``: ``adaptation_plan.json`` beside ``checkpoint_final.pth`` (with
  ``trainer_name``); an nnU-Net-style plans' configuration is kept under its spacing style's name.

And it is read the way MIC-DKFZ/nnUNet master (commit 0e495086) reads it: ``nnunetv2/experiment_planning/
like_nnssl.py`` (``torch.load(weights_only=True)``; the first configuration's ``spacing`` and ``patch_size``; the
top-level ``citations`` of the checkpoint) and ``nnunetv2/training/nnUNetTrainer/pretraining/pretrainedTrainer.py``
/ ``dynamicPretrainedTrainer.py`` (encoder and stem loaded by ``key_to_encoder`` / ``key_to_stem``; the optional
``architecture_kwargs``; class names ``PlainConvUNet`` / ``ResidualEncoderUNet`` or dotted names ending in them).

Departures, each for a reason: ``arch_class_name`` is the dotted class name nnU-Net v2's plans hold (nnU-Net
master accepts it; a bare name would make nnU-Net search the whole architectures package for it); for a
``PlainConvUNet`` ``arch_kwargs`` holds ``n_conv_per_stage`` where nnssl's ``DynamicArchitecturePlans`` (made for
residual encoders) has ``n_blocks_per_stage`` -- ``PlainConvUNet`` takes no other; our recipe and distortion mix
are under ``nnunet_genesis``, a key nnssl's reader does not look at.
"""
import os
from collections.abc import Mapping

import numpy as np

PLAN_KEY = "nnssl_adaptation_plan"        # in the checkpoint, beside "network_weights"
PLAN_FILE = "adaptation_plan.json"        # beside the checkpoint
CITATIONS_KEY = "citations"               # in the checkpoint: what nnU-Net master prints when it fine-tunes
GENESIS_KEY = "nnunet_genesis"            # in the plan: our recipe and distortion mix
ARCHITECTURE_KWARGS_KEY = "architecture_kwargs"   # in the plan: read by nnU-Net master's DynamicPretrainedTrainer
SPACING_STYLE = "median"   # nnssl's name for the style nnU-Net's plans use (target spacing from the median)

#: AdaptationPlan.from_dict's keys (key_to_lpe: nnU-Net master reads it with [], so it is always written)
PLAN_FIELDS = ("architecture_plans", "pretrain_plan", "pretrain_num_input_channels",
               "recommended_downstream_patchsize", "key_to_encoder", "key_to_stem", "keys_to_in_proj", "key_to_lpe")
#: architectures whose tensors correspond to nnU-Net's U-Nets (nnssl's ARCHITECTURE_PRESETS that are U-Nets)
UNET_ARCHITECTURES = ("PlainConvUNet", "ResidualEncoderUNet", "ResEncL", "NoSkipResEncL")
#: nnssl's transformer presets (dynamic_network_architectures' architectures/primus.py)
TRANSFORMER_PREFIXES = ("Primus",)

CITATIONS = [
    {"type": "pretraining method", "name": "Models Genesis (nnunet-genesis)", "apa_citations": [
        "Zhou, Z., Sodha, V., Pang, J., Gotway, M. B., & Liang, J. (2021). Models Genesis. Medical Image Analysis, "
        "67, 101840.",
        "Zhou, Z., Sodha, V., Rahman Siddiquee, M. M., Feng, R., Tajbakhsh, N., Gotway, M. B., & Liang, J. (2019). "
        "Models Genesis: Generic Autodidactic Models for 3D Medical Image Analysis. MICCAI 2019, 384-393."]},
    {"type": "architecture and framework", "name": "nnU-Net", "apa_citations": [
        "Isensee, F., Jaeger, P. F., Kohl, S. A., Petersen, J., & Maier-Hein, K. H. (2021). nnU-Net: a "
        "self-configuring method for deep learning-based biomedical image segmentation. Nature Methods, 18(2), "
        "203-211."]},
]


class PlanError(ValueError):
    """An adaptation plan that is not in nnssl's schema, or does not fit its checkpoint (one line)."""


def plain_data(obj, arrays: str = "list"):
    """``obj`` with numpy scalars as Python numbers and numpy arrays as lists (``arrays="list"``, for JSON) or
    tensors (``arrays="tensor"``, for a checkpoint), recursively; tuples stay tuples.  As nnssl's
    ``AbstractBaseTrainer._convert_numpy``: a checkpoint of plain data opens with ``torch.load(weights_only=True)``
    without allow-listing numpy (nnU-Net master's reading)."""
    if isinstance(obj, Mapping):
        return {key: plain_data(value, arrays) for key, value in obj.items()}
    if isinstance(obj, list):
        return [plain_data(value, arrays) for value in obj]
    if isinstance(obj, tuple):
        return tuple(plain_data(value, arrays) for value in obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        if arrays == "tensor":
            import torch
            return torch.from_numpy(obj)
        return obj.tolist()
    return obj


def distortion_mix(transform) -> dict:
    """The settings of a ``GenesisTransform`` (painting probabilities and each step's public numbers)."""
    def settings(step):
        return {k: list(v) if isinstance(v, tuple) else v for k, v in vars(step).items()
                if not k.startswith("_") and k not in ("data_key", "target_key")
                and isinstance(v, (bool, int, float, tuple, list))}
    mix = {"p_paint": transform.p_paint, "p_inpaint": transform.p_inpaint}
    for name in ("flip", "shuffle", "nonlinear", "inpaint", "outpaint"):
        mix[name] = settings(getattr(transform, name))
    return plain_data(mix)


# ------------------------------------------------------------------------------------------------------------------
# building (our v2 pretraining)
# ------------------------------------------------------------------------------------------------------------------

def build_plan(plans: Mapping, configuration: str, configuration_dict: Mapping, num_input_channels: int,
               network_keys: Mapping, genesis: Mapping) -> dict:
    """The adaptation plan of a network pretrained with nnU-Net v2 ``plans`` (dict) and ``configuration`` (its
    resolved dict: ``ConfigurationManager.configuration``), serialised as nnssl's ``AdaptationPlan.serialize``.

    ``network_keys``: the network's ``key_to_encoder``, ``key_to_stem``, ``keys_to_in_proj`` (and
    ``key_to_lpe``), as dynamic_network_architectures' networks declare them; ``genesis``: our recipe, mix and
    provenance, stored under :data:`GENESIS_KEY`.  The pretraining patch size is the configuration's, and so is
    the recommended downstream patch size (the network was pretrained with the target's plans).
    """
    architecture = configuration_dict["architecture"]
    arch_kwargs = plain_data(dict(architecture["arch_kwargs"]))
    patch_size = [int(p) for p in configuration_dict["patch_size"]]
    pretrain_configuration = {
        "data_identifier": configuration_dict["data_identifier"],
        "preprocessor_name": configuration_dict["preprocessor_name"],
        "spacing_style": SPACING_STYLE,
        "normalization_schemes": list(configuration_dict["normalization_schemes"]),
        "use_mask_for_norm": list(configuration_dict["use_mask_for_norm"]),
        "resampling_fn_data": configuration_dict["resampling_fn_data"],
        "resampling_fn_data_kwargs": dict(configuration_dict["resampling_fn_data_kwargs"]),
        "resampling_fn_mask": configuration_dict["resampling_fn_seg"],   # nnssl's mask = nnU-Net's seg
        "resampling_fn_mask_kwargs": dict(configuration_dict["resampling_fn_seg_kwargs"]),
        "spacing": [float(s) for s in configuration_dict["spacing"]],
        "patch_size": patch_size,
    }
    plan = {
        "architecture_plans": {
            "arch_class_name": architecture["network_class_name"],
            "arch_kwargs": arch_kwargs,
            "arch_kwargs_requiring_import": list(architecture["_kw_requires_import"]),
        },
        "pretrain_plan": {
            "dataset_name": plans["dataset_name"],
            "plans_name": plans["plans_name"],
            "original_median_spacing_after_transp": list(plans["original_median_spacing_after_transp"]),
            "image_reader_writer": plans["image_reader_writer"],
            "transpose_forward": list(plans["transpose_forward"]),
            "transpose_backward": list(plans["transpose_backward"]),
            "configurations": {SPACING_STYLE: pretrain_configuration},
            "experiment_planner_used": plans["experiment_planner_used"],
        },
        "pretrain_num_input_channels": int(num_input_channels),
        "recommended_downstream_patchsize": list(patch_size),
        "key_to_encoder": network_keys["key_to_encoder"],
        "key_to_stem": network_keys["key_to_stem"],
        "keys_to_in_proj": list(network_keys["keys_to_in_proj"]),
        "key_to_lpe": network_keys.get("key_to_lpe"),
        ARCHITECTURE_KWARGS_KEY: arch_kwargs,
        GENESIS_KEY: dict(genesis, nnunet_configuration=configuration),
    }
    plan = plain_data(plan)
    validate_plan(plan, "the plan built for %s" % plans["dataset_name"])
    return plan


def network_keys(network) -> dict:
    """``key_to_encoder``, ``key_to_stem``, ``keys_to_in_proj``, ``key_to_lpe`` of a dynamic_network_architectures
    network (declared in its ``__init__``, ``architectures/unet.py``); PlanError naming the class without them."""
    missing = [k for k in ("key_to_encoder", "key_to_stem", "keys_to_in_proj") if not hasattr(network, k)]
    if missing:
        raise PlanError("%s declares no %s: nnssl's adaptation plan needs them (dynamic_network_architectures' "
                        "networks declare them)" % (type(network).__name__, ", ".join(missing)))
    return {"key_to_encoder": network.key_to_encoder, "key_to_stem": network.key_to_stem,
            "keys_to_in_proj": list(network.keys_to_in_proj), "key_to_lpe": getattr(network, "key_to_lpe", None)}


def checkpoint_extras(plan: Mapping) -> dict:
    """What a checkpoint carries beside ``network_weights``: the plan and the citations nnU-Net master prints."""
    return {PLAN_KEY: plan, CITATIONS_KEY: plain_data(CITATIONS)}


def write_plan_json(plan: Mapping, folder: str, trainer_name: str) -> str:
    """``adaptation_plan.json`` in ``folder`` (with ``trainer_name``, as nnssl's add_adaptation_plan.py), atomically."""
    from nnunet_genesis.io.atomic import write_json_atomic
    return write_json_atomic(dict(plan, trainer_name=trainer_name), os.path.join(folder, PLAN_FILE))


# ------------------------------------------------------------------------------------------------------------------
# checking and reading (any checkpoint that carries a plan)
# ------------------------------------------------------------------------------------------------------------------

def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check(condition, where, text):
    if not condition:
        raise PlanError("%s: %s is not an adaptation plan in nnssl's schema: %s" % (where, PLAN_KEY, text))


def validate_plan(plan, where: str) -> None:
    """PlanError (one line naming ``where`` and the fault) unless ``plan`` has the keys and types nnssl's
    ``AdaptationPlan.from_dict`` and nnU-Net master's readers use."""
    _check(isinstance(plan, Mapping), where, "a %s, not a dict" % type(plan).__name__)
    missing = [key for key in PLAN_FIELDS if key not in plan]
    _check(not missing, where, "no %s" % ", ".join(missing))
    arch = plan["architecture_plans"]
    _check(isinstance(arch, Mapping) and isinstance(arch.get("arch_class_name"), str), where,
           "architecture_plans has no arch_class_name")
    _check(arch.get("arch_kwargs") is None or isinstance(arch["arch_kwargs"], Mapping), where,
           "architecture_plans.arch_kwargs is neither a dict nor null")
    _check(arch.get("arch_kwargs_requiring_import") is None or isinstance(arch["arch_kwargs_requiring_import"], (list, tuple)),
           where, "architecture_plans.arch_kwargs_requiring_import is neither a list nor null")
    pretrain = plan["pretrain_plan"]
    configurations = pretrain.get("configurations") if isinstance(pretrain, Mapping) else None
    _check(isinstance(configurations, Mapping) and configurations, where, "pretrain_plan has no configurations")
    for name, configuration in configurations.items():
        _check(isinstance(configuration, Mapping) and "spacing" in configuration and "patch_size" in configuration,
               where, "pretrain_plan configuration %r has no spacing or patch_size" % (name,))
    channels = plan["pretrain_num_input_channels"]
    _check(_is_int(channels) and channels >= 1, where, "pretrain_num_input_channels %r is not a count" % (channels,))
    patch = plan["recommended_downstream_patchsize"]
    _check(isinstance(patch, (list, tuple)) and all(_is_int(p) and p > 0 for p in patch), where,
           "recommended_downstream_patchsize %r is not a patch size" % (patch,))
    for key in ("key_to_encoder", "key_to_stem"):
        _check(isinstance(plan[key], str) and plan[key], where, "%s is not a module path" % key)
    _check(isinstance(plan["keys_to_in_proj"], (list, tuple)) and all(isinstance(k, str) for k in plan["keys_to_in_proj"]),
           where, "keys_to_in_proj is not a list of module paths")
    _check(plan["key_to_lpe"] is None or isinstance(plan["key_to_lpe"], str), where, "key_to_lpe is neither a path nor null")


def plan_of_checkpoint(checkpoint, where: str):
    """The checked adaptation plan a loaded checkpoint dict carries, or None when it carries none."""
    if not isinstance(checkpoint, Mapping) or PLAN_KEY not in checkpoint:
        return None
    plan = checkpoint[PLAN_KEY]
    validate_plan(plan, where)
    return plan


def check_plan_fits_weights(plan: Mapping, state_dict: Mapping, where: str) -> None:
    """PlanError when the plan's encoder or stem path names no tensor of the checkpoint's weights."""
    for key in ("key_to_encoder", "key_to_stem"):
        prefix = plan[key] + "."
        if not any(name.startswith(prefix) for name in state_dict):
            raise PlanError("%s: its adaptation plan's %s %r names no tensor of its network_weights"
                            % (where, key, plan[key]))


def architecture_name(plan: Mapping) -> str:
    """'ResEncL', 'PrimusM', 'PlainConvUNet' ... (the last part of a dotted class name)."""
    return plan["architecture_plans"]["arch_class_name"].rsplit(".", 1)[-1]


def architecture_refusal(plan: Mapping):
    """Why the plan's network cannot correspond to a U-Net's tensors (one sentence), or None when it may."""
    name = architecture_name(plan)
    if name.startswith(TRANSFORMER_PREFIXES):
        return ("its nnssl adaptation plan names %s, a transformer (patch embedding %r, attention blocks %r): none "
                "of its weights corresponds to a convolution of nnU-Net's U-Net; fine-tune it with nnU-Net master's "
                "nnUNetv2_train_pretrained -tr PretrainedTrainer_Primusx" % (name, plan["key_to_stem"],
                                                                               plan["key_to_encoder"]))
    return None


def pretrain_configuration(plan: Mapping) -> dict:
    """The pretraining configuration (the first, as nnU-Net master's like_nnssl.py reads it)."""
    return next(iter(plan["pretrain_plan"]["configurations"].values()))


def source_summary(plan: Mapping, checkpoint: Mapping) -> dict:
    """What a transfer report records about a source checkpoint that carries a plan."""
    configuration = pretrain_configuration(plan)
    summary = {"format": PLAN_KEY, "architecture": plan["architecture_plans"]["arch_class_name"],
               "pretrain_num_input_channels": plan["pretrain_num_input_channels"],
               "pretrain_patch_size": plain_data(configuration.get("patch_size")),
               "pretrain_spacing": plain_data(configuration.get("spacing")),
               "key_to_encoder": plan["key_to_encoder"], "key_to_stem": plan["key_to_stem"],
               "trainer_name": checkpoint.get("trainer_name")}
    if isinstance(plan.get(GENESIS_KEY), Mapping):
        summary["genesis_recipe"] = plan[GENESIS_KEY].get("recipe", {}).get("name")
    citations = checkpoint.get(CITATIONS_KEY)
    if isinstance(citations, list):
        summary["citations"] = [c.get("name", "?") for c in citations if isinstance(c, Mapping)]
    return plain_data(summary)


def describe_source(summary: Mapping) -> str:
    """One line for the report: 'nnssl adaptation plan: ResEncL, 1 input channel, pretrained on ...'."""
    def shape(values):
        return "x".join("%g" % v for v in values) if values else "?"
    text = ("nnssl adaptation plan: %s, %s input channel(s), pretrained on %s patches at spacing %s by %s"
            % (summary["architecture"].rsplit(".", 1)[-1], summary["pretrain_num_input_channels"], shape(summary["pretrain_patch_size"]),
               shape(summary["pretrain_spacing"]), summary.get("trainer_name") or "?"))
    if summary.get("genesis_recipe"):
        text += " (recipe %s)" % summary["genesis_recipe"]
    if summary.get("citations"):
        text += "; please cite: %s" % ", ".join(summary["citations"])
    return text
