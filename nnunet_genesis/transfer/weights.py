"""Adaptive transfer of pretrained U-Net weights into the network nnU-Net (v1 or v2) plans for a target task.

nnU-Net's own ``load_pretrained_weights`` is all-or-nothing: one differing shape anywhere in the
convolution blocks and it refuses.  A Models Genesis checkpoint pretrained on single-channel CT
(1 input channel, 3x3x3 kernels everywhere, a fixed number of pooling steps) practically never matches
the network nnU-Net plans for a new task (2 or 4 MRI modalities, 1x3x3 kernels in the anisotropic top
stages, 3 to 6 pooling steps).  This module transfers what *can* be transferred, adapts what can be
adapted without changing what the pretrained filters compute, and writes down every decision in a
:class:`TransferReport`.

The parts, each in a module of its own:

* :mod:`nnunet_genesis.transfer.rules`: which source tensor matches which target tensor (stage by stage, by
  resolution level) and the adaptation rules for differing shapes, each with the property it keeps;
* :mod:`nnunet_genesis.transfer.report`: the statuses, the report and the acceptance policy
  (:class:`TransferRefused`);
* here: planning a transfer (pure) and applying it to a network; no nnU-Net is imported (the network comes
  from the caller);
* :mod:`nnunet_genesis.commands.transfer_dry_run`: the dry run on a planned task or dataset (it builds the
  network nnU-Net v1 or v2 would train, :mod:`nnunet_genesis.nnunet_v1.network`, :mod:`nnunet_genesis.nnunet_v2.network`).

A checkpoint that carries nnssl's adaptation plan (nnssl's own, or our v2 pretraining's:
:mod:`nnunet_genesis.checkpoints.adaptation_plan`) has the plan checked and summarised in the report (architecture,
pretraining patch size and spacing, trainer, citations); one whose plan names a network whose tensors cannot
correspond to a U-Net's (a Primus transformer) is refused with one reason saying so.

nnU-Net v2 (``PlainConvUNet``, ``ResidualEncoderUNet`` of dynamic_network_architectures) works on either side:
a v1 Generic_UNet or Models Genesis checkpoint into a v2 network, v2 into v2, v2 into v1.  Roles and the
v1 <-> v2 key table live in :mod:`nnunet_genesis.transfer.rules`.  A v2 state dict holds some tensors under
two keys (aliases, :func:`~nnunet_genesis.transfer.rules.canonical_keys`): the report has one entry per
tensor, under its canonical key, and lists the aliases in ``report.aliases``; every alias key is loaded with
its tensor, so ``load_state_dict`` sees every key.
"""
from __future__ import annotations

import os
from collections.abc import Mapping

import torch
from torch import nn

from nnunet_genesis.checkpoints import adaptation_plan
from nnunet_genesis.checkpoints.files import (CheckpointError, _strip_wrapper_prefixes,  # noqa: F401 (re-exported)
                                        allow_nnunet_checkpoint_globals, load_state_dict_from_checkpoint,
                                        read_checkpoint_file)
from nnunet_genesis.transfer.report import (DEFAULT_MODE, MIN_ENCODER_FRACTION, MODES, PARTS, STATUSES, TRANSFERRED,  # noqa: F401
                                            TransferEntry, TransferRefused, TransferReport, check_transfer_accepted,
                                            selected_parts)
from nnunet_genesis.transfer.rules import (_Role, _adapt, _assign_roles, adapt_conv_kernel,  # noqa: F401
                                           adapt_input_channels, adapt_transposed_conv_kernel, canonical_keys)

__all__ = [
    "CheckpointError",
    "TransferEntry",
    "TransferRefused",
    "TransferReport",
    "adapt_input_channels",
    "adapt_conv_kernel",
    "adapt_transposed_conv_kernel",
    "allow_nnunet_checkpoint_globals",
    "check_transfer_accepted",
    "load_state_dict_from_checkpoint",
    "plan_transfer",
    "transfer_weights",
]


# ----------------------------------------------------------------------------------------------
# Planning and applying a transfer
# ----------------------------------------------------------------------------------------------

def _flow_order(role: _Role) -> tuple:
    """Sort key: encoder by increasing level, decoder by decreasing level (upsampling first), heads, others."""
    rank = {"context": 0, "tu": 1, "localization": 1, "seg_outputs": 2}.get(role.component, 3)
    module, _, name = (role.name or role.leaf).rpartition(".")
    leaf = (module, {"weight": 0, "bias": 1}.get(name, 2), name)  # conv.weight, conv.bias, instnorm.weight, ...
    if rank == 0:  # a v2 ResEnc's stem (convolution 0) before its residual blocks
        return rank, role.level, role.unit != "convolution", role.conv, leaf
    if rank in (1, 2):
        return rank, -role.level, role.component != "tu", role.conv, leaf
    return rank, 0, 0, leaf


def plan_transfer(target_state_dict: Mapping[str, torch.Tensor], source_state_dict: Mapping[str, torch.Tensor],
                  mode: str = DEFAULT_MODE, include_seg_outputs: bool = False,
                  source_name: str = "<in-memory checkpoint>") -> tuple[dict[str, torch.Tensor], TransferReport]:
    """Decide, for every target tensor, what the source provides (pure: neither input is modified).

    Returns ``(updates, report)``: ``updates`` maps target keys to new tensors (target dtype and
    device) for every ``loaded``/``adapted`` entry.  Matching and adaptation rules: module docstring.
    ``mode`` is ``"encoder"`` (default, :data:`DEFAULT_MODE`) or ``"encoder+decoder"`` (the whole
    U-Net, as the published Models Genesis fine-tuning); ``seg_outputs`` only with ``include_seg_outputs=True``.
    Aliases (v2): source aliases are dropped before matching; a target alias gets no entry of its own
    (fractions count each tensor once) but is in ``updates`` with its tensor and in ``report.aliases``.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    source_state_dict = {_strip_wrapper_prefixes(k): v for k, v in source_state_dict.items()}
    source_canonical = canonical_keys(source_state_dict)
    source_state_dict = {k: v for k, v in source_state_dict.items() if source_canonical[k] == k}
    aliases = {k: c for k, c in canonical_keys(target_state_dict).items() if k != c}
    target_roles = _assign_roles(target_state_dict)
    source_roles = _assign_roles(source_state_dict)
    source_by_role = {role: key for key, role in source_roles.items()}
    selected = set(selected_parts(mode, include_seg_outputs))

    updates: dict[str, torch.Tensor] = {}
    entries: list[TransferEntry] = []
    consumed: dict[str, str] = {}  # source key -> what became of it, when not transferred
    for key, target in target_state_dict.items():
        if key in aliases:
            continue
        role = target_roles[key]
        target_shape = tuple(target.shape)
        source_key = source_by_role.get(role)
        source = source_state_dict.get(source_key) if source_key is not None else None
        entry = TransferEntry(key=key, part=role.part, status="", reason="", numel=int(target.numel()),
                              target_shape=list(target_shape),
                              source_shape=list(source.shape) if source is not None else None, source_key=source_key)
        if role.part not in selected:
            entry.status = "excluded"
            entry.reason = ("include_seg_outputs=False" if role.part == "seg_outputs"
                            else f"part {role.part!r} not transferred in mode {mode!r}")
        elif source is None:
            entry.status = "not_in_source"
            entry.reason = f"source has no {role.describe()}"
        elif tuple(source.shape) == target_shape:
            entry.status = "loaded"
            updates[key] = source
        else:
            adapted, note = _adapt(role, source, target_shape)
            if adapted is None:
                entry.status, entry.reason = "skipped", note
            else:
                entry.status, entry.reason = "adapted", note
                updates[key] = adapted
        if source_key is not None and not entry.transferred:
            consumed[source_key] = f"counterpart {key} {entry.status}"
        entries.append(entry)

    # Same dtype and device as the target, so that the result can be loaded (or compared) directly.
    updates = {key: value.detach().to(device=target_state_dict[key].device, dtype=target_state_dict[key].dtype,
                                      copy=True)
               for key, value in updates.items()}
    updates.update({alias: updates[key] for alias, key in aliases.items() if key in updates})
    matched = {e.source_key for e in entries if e.source_key is not None}
    unused = {}
    for key, role in source_roles.items():
        if key not in matched:
            unused[key] = f"no counterpart in target ({role.describe()})"
        elif key in consumed:
            unused[key] = consumed[key]
    # Rows in data-flow order (encoder top-down, decoder bottom-up, then heads), which reads well in a log.
    entries.sort(key=lambda e: _flow_order(target_roles[e.key]))
    unused = dict(sorted(unused.items(), key=lambda item: _flow_order(source_roles[item[0]])))
    report = TransferReport(entries=entries, unused_source_keys=unused, mode=mode,
                            include_seg_outputs=include_seg_outputs, source=source_name, aliases=aliases)
    return updates, report


def transfer_weights(network: nn.Module, source, mode: str = DEFAULT_MODE, include_seg_outputs: bool = False,
                     min_encoder_fraction: float = MIN_ENCODER_FRACTION, allow_partial: bool = False,
                     strict: bool = False) -> TransferReport:
    """Load what ``source`` offers into ``network`` (a Generic_UNet or an nnU-Net v2 PlainConvUNet /
    ResidualEncoderUNet) by the rules of the module docstring.

    ``source``: checkpoint path, loaded checkpoint or state dict, or module
    (:func:`load_state_dict_from_checkpoint`).  Refuses -- raising :class:`TransferRefused` and
    leaving ``network`` untouched -- when less than ``min_encoder_fraction`` of the encoder's
    parameters would be transferred (unless ``allow_partial``), or, with ``strict=True``, when any
    tensor of the selected parts (encoder; decoder in mode ``encoder+decoder``; seg_outputs if
    included) is neither loaded nor adapted.  ``strict`` applies even with ``allow_partial``.
    Returns the :class:`TransferReport` of the accepted transfer.
    """
    if not 0.0 <= min_encoder_fraction <= 1.0:
        raise ValueError(f"min_encoder_fraction must lie in [0, 1], got {min_encoder_fraction}")
    if isinstance(network, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        network = network.module
    if isinstance(getattr(network, "_orig_mod", None), nn.Module):  # torch.compile (nnU-Net v2 compiles)
        network = network._orig_mod
    source_name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else "<in-memory checkpoint>"
    checkpoint = read_checkpoint_file(source_name) if isinstance(source, (str, os.PathLike)) else source
    source_state_dict = load_state_dict_from_checkpoint(checkpoint, name=source_name)
    try:
        plan = adaptation_plan.plan_of_checkpoint(checkpoint, source_name)
    except adaptation_plan.PlanError as error:
        raise CheckpointError(str(error)) from None
    target_state_dict = network.state_dict()
    updates, report = plan_transfer(target_state_dict, source_state_dict, mode=mode,
                                    include_seg_outputs=include_seg_outputs, source_name=source_name)
    if plan is not None:
        report.source_plan = adaptation_plan.source_summary(plan, checkpoint)
        refusal = adaptation_plan.architecture_refusal(plan)
        if refusal:
            raise TransferRefused(report, [refusal])
        try:
            adaptation_plan.check_plan_fits_weights(plan, source_state_dict, source_name)
        except adaptation_plan.PlanError as error:
            raise CheckpointError(str(error)) from None
    check_transfer_accepted(report, min_encoder_fraction, allow_partial, strict)
    target_state_dict.update(updates)
    network.load_state_dict(target_state_dict, strict=True)
    return report
