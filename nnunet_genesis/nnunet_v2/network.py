"""The network nnU-Net v2 builds for a planned dataset, and its preprocessed cases, without a trainer (on the CPU).

The v2 counterpart of :mod:`nnunet_genesis.nnunet_v1.network`, for the transfer's dry run
(``nnUNet_genesis_transfer --nnunet 2``) and the restoration scoring (``nnUNet_genesis_restoration --nnunet 2``).
nnunetv2 2.8.1's own code is called, not re-derived: ``nnUNetTrainer.initialize``
(``training/nnUNetTrainer/nnUNetTrainer.py``: input channels from ``determine_num_input_channels``, outputs from
the label manager's ``num_segmentation_heads``, the network from the static ``build_network_architecture``) and
its dataset classes (``training/dataloading/nnunet_dataset.py``: ``infer_dataset_class``, ``load_case``).  The
dataset, plans and configuration are resolved as ``nnUNet_genesis_prepare --nnunet 2`` resolves them
(:func:`nnunet_genesis.nnunet_v2.prepare.load_target`).
"""

from nnunet_genesis.nnunet_v2 import layout
from nnunet_genesis.nnunet_v2.prepare import DEFAULT_CONFIGURATION, DEFAULT_PLANS_IDENTIFIER, Target, load_target

__all__ = ["Target", "load_target", "build_network", "preprocessed_volumes", "configuration_data_folder",
           "DEFAULT_CONFIGURATION", "DEFAULT_PLANS_IDENTIFIER"]


def build_network(target: Target, configuration: str = DEFAULT_CONFIGURATION, num_output_channels=None,
                  deep_supervision: bool = True):
    """The network ``nnUNetTrainer.initialize`` builds for ``target`` and ``configuration``: the plans'
    architecture, the dataset's input channels, ``num_output_channels`` outputs (default: the label manager's
    segmentation heads, as fine-tuning trains; the input channels for restoration)."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    plans_manager = layout.plans_manager(target.plans)
    configuration_manager = layout.configuration_manager(plans_manager, configuration)
    channels = determine_num_input_channels(plans_manager, configuration_manager, target.dataset_json)
    if num_output_channels is None:
        num_output_channels = plans_manager.get_label_manager(target.dataset_json).num_segmentation_heads
    network = nnUNetTrainer.build_network_architecture(plans_manager, configuration_manager, channels,
                                                       num_output_channels, deep_supervision)
    return network, configuration_manager


def preprocessed_volumes(folder: str, keys=None, max_cases=None) -> dict:
    """Preprocessed cases of a configuration's data ``folder`` (``keys``, default all, sorted; at most
    ``max_cases``) as float32 (C, X, Y, Z) arrays, read with the dataset class nnU-Net would use, NaN where the
    case's seg says the voxel is outside the image (left out of the restoration scores, as the trainers score)."""
    from nnunet_genesis.pretraining.validation import outside_as_nan
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
    dataset_class = infer_dataset_class(folder)
    keys = sorted(dataset_class.get_identifiers(folder) if keys is None else keys)
    keys = keys[:max_cases] if max_cases is not None else keys
    if not keys:
        return {}
    dataset = dataset_class(folder, keys)
    cases = {}
    for key in keys:
        data, seg = dataset.load_case(key)[:2]
        cases[key] = outside_as_nan(data[:], seg[:])  # [:]: blosc2
    return cases


def configuration_data_folder(target: Target, configuration: str = DEFAULT_CONFIGURATION) -> str:
    """Where ``target``'s preprocessed cases of ``configuration`` lie."""
    return layout.configuration_folder(target.folder, target.plans, configuration)
