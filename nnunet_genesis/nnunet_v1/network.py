"""The Generic_UNet nnU-Net v1 builds from a plans file, built here without a trainer (on the CPU), and its
preprocessed cases as the restoration scores read them.

Follows nnU-Net 1.7.1's ``nnunet/training/network_training/nnUNetTrainer.py`` (``process_plans``: input
channels, base features, classes, kernels of a stage) and ``nnUNetTrainerV2.py`` (``initialize_network``: the
Generic_UNet arguments), so that the transfer's dry run and the restoration scoring build exactly the network
the trainers train.  Where the plans live and which stage a network trains: :mod:`nnunet_genesis.nnunet_v1.layout`.
"""
import os
from collections.abc import Mapping

from torch import nn

from nnunet_genesis.nnunet_v1 import layout


class UnreadableCase(ValueError):
    """A preprocessed case that cannot be read: one line naming the file and the fault."""


def preprocessed_volumes(data_files: Mapping) -> dict:
    """``{case: .npz path}`` (nnU-Net v1's preprocessed cases: the image channels, then the seg channel) ->
    ``{case: float32 (C, Z, Y, X)}`` in sorted case order, NaN where the seg says the voxel is outside the image
    (``nnunet_genesis.pretraining.validation.outside_as_nan``). The ``.npy`` nnU-Net unpacks beside a ``.npz`` is
    read (memory-mapped) where it exists. The v1 counterpart of ``nnunet_v2.network.preprocessed_volumes``, for
    the pretraining trainer's diagnostics and ``nnUNet_genesis_restoration`` alike."""
    import numpy as np
    from nnunet_genesis.pretraining.validation import outside_as_nan
    cases = {}
    for name in sorted(data_files):
        path = data_files[name]
        npy = path[:-4] + ".npy"
        try:
            volume = np.load(npy, mmap_mode="r", allow_pickle=False) if os.path.isfile(npy) else \
                np.load(path, allow_pickle=False)["data"]
            cases[name] = outside_as_nan(volume[:-1], volume[-1:])  # the last channel is nnU-Net's seg
        except Exception as error:
            raise UnreadableCase("%s: unreadable prepared case (%s: %s)" % (path, type(error).__name__, error))
    return cases


def build_generic_unet(num_input_channels: int, base_num_features: int, num_classes: int, pool_op_kernel_sizes,
                       conv_kernel_sizes, deep_supervision: bool = True, conv_per_stage: int = 2) -> nn.Module:
    """The Generic_UNet nnUNetTrainerV2.initialize_network builds, on the CPU.

    3D when the kernels have three axes, 2D with two.  InstanceNorm (affine), LeakyReLU(1e-2), no
    dropout, transposed-convolution upsampling, He initialisation, softmax as inference nonlinearity.
    """
    from nnunet.network_architecture.generic_UNet import Generic_UNet
    from nnunet.network_architecture.initialization import InitWeights_He
    from nnunet.utilities.nd_softmax import softmax_helper

    pool_op_kernel_sizes = [list(map(int, k)) for k in pool_op_kernel_sizes]
    conv_kernel_sizes = [list(map(int, k)) for k in conv_kernel_sizes]
    if len(conv_kernel_sizes) != len(pool_op_kernel_sizes) + 1:
        raise ValueError(f"need one conv kernel per stage: {len(pool_op_kernel_sizes)} pooling steps need "
                         f"{len(pool_op_kernel_sizes) + 1} conv kernel sizes, got {len(conv_kernel_sizes)}")
    dims = len(conv_kernel_sizes[0])
    if dims == 3:
        conv_op, dropout_op, norm_op = nn.Conv3d, nn.Dropout3d, nn.InstanceNorm3d
    elif dims == 2:
        conv_op, dropout_op, norm_op = nn.Conv2d, nn.Dropout2d, nn.InstanceNorm2d
    else:
        raise ValueError(f"conv kernel sizes must have 2 or 3 axes, got {conv_kernel_sizes[0]}")
    # the arguments of nnUNetTrainerV2.initialize_network, in its order
    network = Generic_UNet(int(num_input_channels), int(base_num_features), int(num_classes),
                           len(pool_op_kernel_sizes), int(conv_per_stage), 2, conv_op, norm_op,
                           {"eps": 1e-5, "affine": True}, dropout_op, {"p": 0, "inplace": True},
                           nn.LeakyReLU, {"negative_slope": 1e-2, "inplace": True}, deep_supervision, False,
                           lambda x: x, InitWeights_He(1e-2), pool_op_kernel_sizes, conv_kernel_sizes,
                           False, True, True)
    network.inference_apply_nonlin = softmax_helper
    return network


def _load_plans(plans_file_or_dict) -> tuple:
    if isinstance(plans_file_or_dict, Mapping):
        return dict(plans_file_or_dict), "<plans dict>"
    path = os.fspath(plans_file_or_dict)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"plans file {path!r} does not exist")
    try:
        plans = layout.load_plans(path)
    except Exception as error:
        raise ValueError(f"{path!r} is not an nnU-Net plans pickle ({type(error).__name__}: {error})") from error
    if not isinstance(plans, Mapping):
        raise ValueError(f"{path!r} holds a {type(plans).__name__}, not an nnU-Net plans dict")
    return dict(plans), path


def build_network_from_plans(plans_file_or_dict, stage=None, num_classes=None,
                             deep_supervision: bool = True) -> nn.Module:
    """The network nnUNetTrainerV2 builds for ``stage`` of a plans file (``.pkl``) or loaded plans dict.

    Mirrors nnUNetTrainer.process_plans + nnUNetTrainerV2.initialize_network:
    input channels = ``plans['num_modalities']``, ``plans['base_num_features']``, classes =
    ``plans['num_classes'] + 1`` (background; ``len(plans['all_classes']) + 1`` for plans without
    ``num_classes``) unless ``num_classes`` is given, pooling and conv kernels from
    ``plans['plans_per_stage'][stage]``, ``plans.get('conv_per_stage', 2)`` convolutions per stage.
    ``stage=None`` takes the last stage, the one the 3d_fullres configuration trains.
    """
    plans, name = _load_plans(plans_file_or_dict)
    for required in ("plans_per_stage", "num_modalities", "base_num_features"):
        if required not in plans:
            raise ValueError(f"{name}: plans lack {required!r}")
    stages = plans["plans_per_stage"]
    if not stages:
        raise ValueError(f"{name}: plans_per_stage is empty")
    if stage is None:
        stage = layout.last_stage(plans)
    if stage not in stages:
        raise ValueError(f"{name}: no stage {stage!r} in plans_per_stage (stages: {sorted(stages.keys())})")
    stage_plans = stages[stage]
    for required in ("pool_op_kernel_sizes", "conv_kernel_sizes"):
        if required not in stage_plans:
            raise ValueError(f"{name}: stage {stage} lacks {required!r} (plans from an old nnU-Net version; "
                             f"rerun nnUNet_plan_and_preprocess)")
    if num_classes is None:
        if "num_classes" in plans:
            num_classes = int(plans["num_classes"]) + 1
        elif "all_classes" in plans:
            num_classes = len(plans["all_classes"]) + 1
        else:
            raise ValueError(f"{name}: plans lack 'num_classes' and 'all_classes'")
    return build_generic_unet(plans["num_modalities"], plans["base_num_features"], num_classes,
                              stage_plans["pool_op_kernel_sizes"], stage_plans["conv_kernel_sizes"],
                              deep_supervision=deep_supervision, conv_per_stage=plans.get("conv_per_stage", 2))
