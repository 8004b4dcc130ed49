"""nnssl's checkpoint format for the tests: its plan schema (copied into ``nnssl_schema.json``), checkpoints
written the way nnssl writes them, and a reader written after nnU-Net master's.

* :func:`schema_faults` checks a serialised adaptation plan against ``nnssl_schema.json`` (field names, JSON
  types, nesting, which keys nnssl's dataclasses require and which extra keys they refuse).
* :func:`save_nnssl_checkpoint` writes a checkpoint as MIC-DKFZ/nnssl (commit 70448644) does:
  ``src/nnssl/training/nnsslTrainer/AbstractTrainer.py`` ``save_checkpoint`` (``network_weights``, optimizer,
  logging, ``init_args``, ``trainer_name``, ``nnssl_adaptation_plan``: the training-time file) or, with
  ``release=True``, ``src/nnssl/utilities/add_adaptation_plan.py`` (optimizer, grad scaler, EMA, epoch and
  logging dropped: the released OpenMind files), with the plans its trainers build
  (``masked_image_modeling/BaseMAETrainer.py``: ``ArchitecturePlans("ResEncL")``, encoder ``encoder.stages``,
  stem ``encoder.stem``; ``BaseEvaMAETrainer.py``: ``PrimusM``, encoder ``eva``, stem ``down_projection``,
  ``key_to_lpe`` ``eva.pos_embed``); saved as from a GPU, as the released files are.
* :func:`read_like_nnunet_master` / :func:`build_like_nnunet_master` / :func:`load_like_nnunet_master` follow
  MIC-DKFZ/nnUNet master (commit 0e495086): ``nnunetv2/experiment_planning/like_nnssl.py``
  (``preprocess_like_nnssl``: what it reads from the checkpoint into the plans' ``pretrain_info`` and
  ``architecture``) and ``nnunetv2/training/nnUNetTrainer/pretraining/pretrainedTrainer.py``
  (``build_network_architecture``, ``load_pretrained_weights``: encoder and stem loaded into the network's
  ``key_to_encoder`` / ``key_to_stem`` submodules with a strict ``load_state_dict``).  Not copied: rewritten
  for what our tests need (no positional-embedding resizing, which only Primus needs).
"""
import json
import os
from collections.abc import Mapping

import torch
from dynamic_network_architectures.architectures.unet import ResidualEncoderUNet
from torch import nn

from tests.gpu_saved import save_as_if_on_gpu

SCHEMA_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nnssl_schema.json")


def load_schema() -> dict:
    with open(SCHEMA_FILE) as f:
        return json.load(f)


# ----------------------------------------------------------------------------------------------------------------
# the schema
# ----------------------------------------------------------------------------------------------------------------

def _split_union(type_text):
    parts, depth, current = [], 0, ""
    for char in type_text:
        depth += char == "["
        depth -= char == "]"
        if char == "|" and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    return parts + [current]


def _faults(value, type_text, schema, path):
    plain = {"int": lambda v: isinstance(v, int) and not isinstance(v, bool),
             "float": lambda v: isinstance(v, float),
             "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
             "bool": lambda v: isinstance(v, bool), "str": lambda v: isinstance(v, str),
             "null": lambda v: v is None, "dict": lambda v: isinstance(v, Mapping)}
    if type_text in plain:
        return [] if plain[type_text](value) else ["%s: %r is not %s" % (path, value, type_text)]
    if type_text.startswith("list["):
        if not isinstance(value, (list, tuple)):
            return ["%s: %r is not a list" % (path, value)]
        return [f for i, v in enumerate(value) for f in schema_faults(v, type_text[5:-1], schema, "%s[%d]" % (path, i))]
    if type_text.startswith("dict["):
        if not isinstance(value, Mapping):
            return ["%s: %r is not a dict" % (path, value)]
        return [f for k, v in value.items() for f in schema_faults(v, type_text[5:-1], schema, "%s[%r]" % (path, k))]
    entry = schema[type_text]
    if not isinstance(value, Mapping):
        return ["%s: a %s, not a dict (%s)" % (path, type(value).__name__, type_text)]
    fields = entry["fields"]
    faults = ["%s: no %s (%s)" % (path, k, type_text) for k in fields if k not in value and k not in entry["defaults"]]
    if not entry["extra_keys_allowed"]:
        faults += ["%s: key %r is not a field of %s" % (path, k, type_text) for k in value if k not in fields]
    for key, field_type in fields.items():
        if key in value:
            faults += schema_faults(value[key], field_type, schema, "%s.%s" % (path, key))
    return faults


def schema_faults(value, type_text="AdaptationPlan", schema=None, path="plan"):
    """Where ``value`` departs from nnssl's schema for ``type_text`` ([] where it fits)."""
    schema = schema or load_schema()
    alternatives = [_faults(value, alternative, schema, path) for alternative in _split_union(type_text)]
    if any(not faults for faults in alternatives):
        return []
    # the alternative of the value's own kind (a dict for an entry of the schema) says more than "is not null"
    inside = [faults for faults, alternative in zip(alternatives, _split_union(type_text))
              if alternative in schema and isinstance(value, Mapping)]
    return min(inside or alternatives, key=len)


# ----------------------------------------------------------------------------------------------------------------
# checkpoints written the way nnssl writes them
# ----------------------------------------------------------------------------------------------------------------

RESENC_L = dict(features_per_stage=[32, 64, 128, 256, 320, 320], n_blocks_per_stage=[1, 3, 4, 6, 6, 6])


def resenc_l_like(n_stages=4, input_channels=1, output_channels=1, seed=0):
    """nnssl's ResEnc-L (``src/nnssl/architectures/architecture_registry.py: get_res_enc_l``: 3x3x3 kernels,
    stride 2, features 32 ... 320, blocks 1, 3, 4, 6, 6, 6, InstanceNorm, LeakyReLU) cut to its first
    ``n_stages`` stages: the whole network has 100 M parameters, too many for a test."""
    torch.manual_seed(seed)
    return ResidualEncoderUNet(
        input_channels=input_channels, n_stages=n_stages, features_per_stage=RESENC_L["features_per_stage"][:n_stages],
        conv_op=nn.Conv3d, kernel_sizes=[[3, 3, 3]] * n_stages, strides=[[1, 1, 1]] + [[2, 2, 2]] * (n_stages - 1),
        n_blocks_per_stage=RESENC_L["n_blocks_per_stage"][:n_stages], num_classes=output_channels,
        n_conv_per_stage_decoder=[1] * (n_stages - 1), conv_bias=True, norm_op=nn.InstanceNorm3d,
        norm_op_kwargs={"eps": 1e-5, "affine": True}, nonlin=nn.LeakyReLU, nonlin_kwargs={"inplace": True},
        deep_supervision=False)


def primus_like_state_dict(embed_dim=24, depth=2, patch=8, input_channels=1, tokens=8, seed=0):
    """The key layout of dynamic_network_architectures' ``Primus`` (``architectures/primus.py``: ``down_projection``
    = PatchEmbed, ``eva`` = Eva blocks with ``pos_embed``, ``up_projection`` = PatchDecode, ``mask_token``; block
    parameter names as timm's EvaBlock), at toy width: Primus itself cannot be built here (it imports timm, and
    timm torchvision, which fails next to the CPU torch)."""
    generator = torch.Generator().manual_seed(seed)
    shapes = {"down_projection.proj.weight": (embed_dim, input_channels, patch, patch, patch),
              "down_projection.proj.bias": (embed_dim,), "eva.pos_embed": (1, tokens, embed_dim),
              "mask_token": (1, 1, embed_dim), "up_projection.decode.0.0.weight": (embed_dim, 8, 2, 2, 2)}
    for block in range(depth):
        prefix = "eva.blocks.%d." % block
        shapes.update({prefix + "norm1.weight": (embed_dim,), prefix + "attn.qkv.weight": (3 * embed_dim, embed_dim),
                       prefix + "attn.proj.weight": (embed_dim, embed_dim), prefix + "norm2.weight": (embed_dim,),
                       prefix + "mlp.fc1.weight": (4 * embed_dim, embed_dim),
                       prefix + "mlp.fc2.weight": (embed_dim, 4 * embed_dim)})
    return {key: torch.randn(shape, generator=generator) for key, shape in shapes.items()}


def nnssl_plan(arch_class_name, key_to_encoder, key_to_stem, keys_to_in_proj, key_to_lpe=None,
               patch_size=(160, 160, 160), num_input_channels=1):
    """``AdaptationPlan(...).serialize()`` as nnssl's trainers fill it: the architecture by preset name (no
    kwargs), the OpenMind plan's one configuration (1 mm isotropic, z-scored), ResEnc-L's keys."""
    configuration = {
        "data_identifier": "nnsslPlans_onemmiso", "preprocessor_name": "DefaultPreprocessor",
        "spacing_style": "onemmiso", "normalization_schemes": ["ZScoreNormalization"], "use_mask_for_norm": [False],
        "resampling_fn_data": "resample_data_or_seg_to_shape",
        "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
        "resampling_fn_mask": "resample_data_or_seg_to_shape",
        "resampling_fn_mask_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None},
        "spacing": [1, 1, 1], "patch_size": list(patch_size)}
    return {
        "architecture_plans": {"arch_class_name": arch_class_name, "arch_kwargs": None,
                               "arch_kwargs_requiring_import": None},
        "pretrain_plan": {"dataset_name": "Dataset745_OpenMind", "plans_name": "nnsslPlans",
                          "original_median_spacing_after_transp": [1, 1, 1], "image_reader_writer": "NibabelReaderWriter",
                          "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
                          "configurations": {"onemmiso": configuration}, "experiment_planner_used": "ExperimentPlanner"},
        "pretrain_num_input_channels": num_input_channels, "recommended_downstream_patchsize": list(patch_size),
        "key_to_encoder": key_to_encoder, "key_to_stem": key_to_stem, "keys_to_in_proj": list(keys_to_in_proj),
        "key_to_lpe": key_to_lpe}


RESENC_KEYS = dict(key_to_encoder="encoder.stages", key_to_stem="encoder.stem",
                   keys_to_in_proj=("encoder.stem.convs.0.conv", "encoder.stem.convs.0.all_modules.0"))
PRIMUS_KEYS = dict(key_to_encoder="eva", key_to_stem="down_projection", keys_to_in_proj=("down_projection.proj",),
                   key_to_lpe="eva.pos_embed")


def save_nnssl_checkpoint(path, state_dict, plan, trainer_name="BaseMAETrainer", release=True):
    """Write ``state_dict`` with ``plan`` as nnssl does (module docstring); returns the dict written."""
    checkpoint = {"network_weights": dict(state_dict),
                  "init_args": {"plan": plan["pretrain_plan"], "configuration_name": "onemmiso", "fold": 0,
                                "pretrain_json": {}, "device": "cuda:0"},
                  "trainer_name": trainer_name, "nnssl_adaptation_plan": plan}
    if release:
        checkpoint["citations"] = [{"type": "pretraining method", "name": trainer_name,
                                    "apa_citations": ["(the paper of the method)"]}]
    else:
        checkpoint.update({"optimizer_state": {"state": {}, "param_groups": []}, "grad_scaler_state": None,
                           "logging": {"train_losses": [0.5, 0.4]}, "_best_ema": None, "current_epoch": 2})
    save_as_if_on_gpu(checkpoint, str(path))
    return checkpoint


# ----------------------------------------------------------------------------------------------------------------
# reading the way nnU-Net master reads it
# ----------------------------------------------------------------------------------------------------------------

def read_like_nnunet_master(path):
    """like_nnssl.py ``preprocess_like_nnssl``'s reading: ``torch.load(weights_only=True, map_location='cpu')``;
    returns (checkpoint, the plans' ``architecture`` entry, ``pretrain_info``)."""
    checkpoint = torch.load(path, weights_only=True, map_location="cpu")
    plan = checkpoint["nnssl_adaptation_plan"]
    citations = checkpoint["citations"] if "citations" in checkpoint else []
    config = list(plan["pretrain_plan"]["configurations"].keys())[0]
    architecture = dict(plan["architecture_plans"])
    architecture["network_class_name"] = architecture.pop("arch_class_name")
    architecture["_kw_requires_import"] = architecture.pop("arch_kwargs_requiring_import")
    pretrain_info = {
        "key_to_encoder": plan["key_to_encoder"], "key_to_stem": plan["key_to_stem"],
        "keys_to_in_proj": plan["keys_to_in_proj"], "key_to_lpe": plan["key_to_lpe"],
        "pt_num_in_channels": plan["pretrain_num_input_channels"],
        "pt_used_patchsize": plan["pretrain_plan"]["configurations"][config]["patch_size"],
        "pt_recommended_downstream_patchsize": plan["recommended_downstream_patchsize"],
        "pt_spacing": plan["pretrain_plan"]["configurations"][config]["spacing"],
        "citations": citations}
    return checkpoint, architecture, pretrain_info


def build_like_nnunet_master(architecture, num_input_channels, num_output_channels):
    """pretrainedTrainer.py ``build_network_architecture`` for the U-Nets: nnunetv2's ``get_network_from_plans``
    for ``PlainConvUNet`` / ``ResidualEncoderUNet`` or names ending in them (deep supervision off)."""
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    name = architecture["network_class_name"]
    if not (name in ("PlainConvUNet", "ResidualEncoderUNet") or name.endswith(("PlainConvUNet", "ResidualEncoderUNet"))):
        raise NotImplementedError("Unknown architecture class name: %s" % name)
    return get_network_from_plans(name, architecture["arch_kwargs"], architecture["_kw_requires_import"],
                                  num_input_channels, num_output_channels, allow_init=True, deep_supervision=False)


def load_like_nnunet_master(network, checkpoint, pretrain_info):
    """pretrainedTrainer.py ``load_pretrained_weights`` (same input channels): the checkpoint's encoder and stem
    weights, their plan prefixes cut off, loaded strictly into the network's own encoder and stem submodules."""
    weights = checkpoint["network_weights"]
    key_to_encoder, key_to_stem = pretrain_info["key_to_encoder"], pretrain_info["key_to_stem"]
    plan = checkpoint["nnssl_adaptation_plan"]
    key_to_encoder, key_to_stem = plan.get("key_to_encoder", key_to_encoder), plan.get("key_to_stem", key_to_stem)

    def strip(prefix):
        return {k[len(prefix):].lstrip("."): v for k, v in weights.items() if k.startswith(prefix)}
    network.get_submodule(network.key_to_encoder).load_state_dict(strip(key_to_encoder))
    network.get_submodule(network.key_to_stem).load_state_dict(strip(key_to_stem))
    return network
