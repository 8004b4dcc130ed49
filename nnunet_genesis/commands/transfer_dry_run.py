"""The dry run of ``nnUNet_genesis_transfer``: the network nnU-Net (v1 or v2) would train for a planned task or
dataset, built without a trainer, and the adaptive transfer into it.

Here, in the command layer, because building that network asks nnU-Net (its layout, plans and network
classes); the transfer itself (:mod:`nnunet_genesis.transfer.weights`) imports no nnU-Net.
"""
import os

from nnunet_genesis.nnunet_v1 import layout
from nnunet_genesis.nnunet_v1.network import build_network_from_plans
from nnunet_genesis.transfer.report import DEFAULT_MODE, MIN_ENCODER_FRACTION, TransferReport
from nnunet_genesis.transfer.weights import transfer_weights


def plan_transfer_for_task(weights, task, model="3d_fullres", plans_identifier=layout.DEFAULT_PLANS_IDENTIFIER,
                           mode=DEFAULT_MODE, min_encoder_fraction=MIN_ENCODER_FRACTION, allow_partial=False,
                           strict=False) -> TransferReport:
    """Dry run of ``nnUNetTrainerV2_Genesis -pretrained_weights weights`` on a planned task.

    Builds the network nnU-Net would train for ``task`` (id or name) and ``model`` (2d, 3d_lowres:
    first stage, 3d_fullres: last stage) from ``$nnUNet_preprocessed/<task>/<plans_identifier>_plans_*D.pkl``
    and transfers into it. Returns the report; raises TransferRefused exactly when the trainer would.
    """
    task_name = layout.resolve_task_name(task)
    plans_file = layout.plans_file(os.path.join(layout.process_folders().preprocessed or "", task_name),
                                   plans_identifier, layout.plans_dims(model))
    if not os.path.isfile(plans_file):
        raise FileNotFoundError("no plans for %s %s: %s does not exist (run nnUNet_plan_and_preprocess first)"
                                % (task_name, model, plans_file))
    plans = layout.load_plans(plans_file)
    try:
        stage = layout.stage_for_network(plans, model)
    except ValueError as error:
        raise ValueError("%s has %s" % (task_name, error)) from None
    network = build_network_from_plans(plans, stage=stage)
    return transfer_weights(network, weights, mode=mode, min_encoder_fraction=min_encoder_fraction,
                            allow_partial=allow_partial, strict=strict)


def plan_transfer_for_dataset(weights, dataset, configuration=None, plans_identifier=None, mode=DEFAULT_MODE,
                              min_encoder_fraction=MIN_ENCODER_FRACTION, allow_partial=False, strict=False) -> TransferReport:
    """Dry run of ``nnUNetTrainer_Genesis -pretrained_weights weights`` on a planned nnU-Net v2 dataset (id or
    name), ``configuration`` (default 3d_fullres) of the plans ``plans_identifier`` (default nnUNetPlans): the
    network nnUNetTrainer builds (:func:`nnunet_genesis.nnunet_v2.network.build_network`), then the same
    transfer as :func:`plan_transfer_for_task`."""
    from nnunet_genesis.nnunet_v2 import network as v2
    target = v2.load_target(dataset, plans_identifier or v2.DEFAULT_PLANS_IDENTIFIER,
                            configuration or v2.DEFAULT_CONFIGURATION)
    network, _ = v2.build_network(target, configuration or v2.DEFAULT_CONFIGURATION)
    return transfer_weights(network, weights, mode=mode, min_encoder_fraction=min_encoder_fraction,
                            allow_partial=allow_partial, strict=strict)
