"""Adaptive transfer of pretrained Generic_UNet weights into the network nnU-Net v1 plans for a target task.

nnU-Net's own ``load_pretrained_weights`` is all-or-nothing: one differing shape anywhere in the
convolution blocks and it refuses.  A Models Genesis checkpoint pretrained on single-channel CT
(1 input channel, 3x3x3 kernels everywhere, a fixed number of pooling steps) practically never matches
the network nnU-Net plans for a new task (2 or 4 MRI modalities, 1x3x3 kernels in the anisotropic top
stages, 3 to 6 pooling steps).  This module transfers what *can* be transferred, adapts what can be
adapted without changing what the pretrained filters compute, and writes down every decision in a
:class:`TransferReport`.

Matching: stage by stage, by resolution level
----------------------------------------------
Every tensor of a Generic_UNet is identified by *what it does at which resolution level*, not by its
key.  Level 0 is full resolution; level ``l`` is reached after ``l`` pooling steps.

* Encoder (part ``encoder``): ``conv_blocks_context[l]`` works at level ``l``; its convolutions are
  numbered 0, 1, ... in the order data flows through them.  The bottleneck ``conv_blocks_context[P]``
  (``P`` = number of pooling steps) is a Sequential of two StackedConvLayers, so its keys read
  ``conv_blocks_context.P.0.blocks.0`` and ``conv_blocks_context.P.1.blocks.0`` instead of
  ``...blocks.0`` and ``...blocks.1``; both spellings become "level P, convolution 0/1".  Source
  stage ``l`` goes into target stage ``l``: the shallow stages the two networks share are loaded,
  deeper target stages stay freshly initialised (``not_in_source``) and deeper source stages are
  unused.
* Decoder (part ``decoder``): Generic_UNet builds the decoder from the bottom up, so
  ``conv_blocks_localization[u]``, ``tu[u]`` (transposed convolution that upsamples from level ``l+1``
  to ``l``) and ``seg_outputs[u]`` work at level ``l = P - 1 - u``: index 0 is the *deepest* decoder
  stage.  When source and target have a different number of stages, decoder stages are therefore
  aligned by level counted from the top (full resolution), never by index: the target's last decoder
  stage (level 0, next to the output) receives the source's last decoder stage, and so on upwards.
  Aligning by index would put the source's deepest, most abstract decoder filters at the wrong scale.
* ``seg_outputs`` (part ``seg_outputs``) are aligned by level like the decoder, but only transferred
  when ``include_seg_outputs=True``: the pretext task's output classes (Models Genesis restores the
  image) have nothing to do with the target's labels.
* Any other tensor (part ``other``; Generic_UNet has none) is matched by identical key.

Adaptation rules (applied when a matched tensor's shape differs)
-----------------------------------------------------------------
Conventions: a convolution weight has shape ``(out, in, *k)``, a transposed convolution
(``tu``) weight ``(in, out, *k)``.  Every rule keeps a stated response property of the source
filters exactly, so a pretrained feature detector still detects the same thing after adaptation.

(a) Input channels of the network's first convolution (encoder level 0, convolution 0),
    ``C_old`` -> ``C_new``: every new input channel receives the sum of the source's input-channel
    kernels divided by ``C_new``::

        W_new[:, c] = (sum_{c'} W_old[:, c']) / C_new        for c = 0 .. C_new - 1

    For ``C_old = 1`` this is "repeat the kernel, scale by 1/C_new"; for ``C_old > 1`` it is "average
    the source channels, repeat, scale by C_old/C_new".  Property: for an input whose ``C_new``
    channels all equal the same image ``x`` (perfectly correlated modalities) the first convolution
    gives exactly the source's response to ``x`` fed into all ``C_old`` of its channels, so
    activations keep their size no matter how many modalities the task has.  Channel order carries no
    meaning across tasks, hence the order-free average when ``C_old > 1``.  Bias is unchanged.
    Input-channel differences anywhere else (inside the network they are feature counts) are skipped.
(b) Convolution kernel shape, per spatial axis (for all ``conv`` weights, encoder and decoder):

    * ``k_old > 1 -> k_new = 1`` (e.g. 3x3x3 into the 1x3x3 kernels nnU-Net plans for anisotropic
      stages): sum the source kernel along that axis.  Property: for an input that is constant along
      that axis the response is unchanged (away from the zero-padded border slices), because the
      3-tap filter then computes ``(w_0 + w_1 + w_2) * x``.  Anisotropic stages exist exactly where
      voxels are much thicker along that axis, i.e. where neighbouring slices are the least alike
      and a 2D filter must stand in for the 3D one.
    * ``k_old = 1 -> k_new`` odd (1x3x3 into 3x3x3): put the source kernel in the centre slice,
      zeros elsewhere.  Property: the response equals the source's, slice by slice, for every input
      (the zero taps ignore the neighbouring slices), so the filter starts as the source 2D filter
      and training may grow it into 3D.
    * anything else (e.g. 5 vs 3, even sizes): skipped, with the reason.
(c) Transposed-convolution kernels (``tu``; in Generic_UNet kernel = stride = the pooling kernel of
    that level, e.g. (2,2,2) vs (1,2,2)): each of the ``k`` taps along an axis writes one of the
    ``k`` output sub-positions of an input voxel, so here the kernel axis enumerates *output*
    positions instead of integrating over input.  Per axis:

    * ``k_old = r * k_new`` (2 -> 1): average groups of ``r`` neighbouring taps.  Property: the
      target's output equals the source's output average-pooled by ``r`` along that axis.
    * ``k_new = r * k_old`` (1 -> 2): repeat every tap ``r`` times.  Property: the target's output
      equals the source's output repeated ``r`` times along that axis (nearest-neighbour upsampling).
    * otherwise skipped.  (Both properties hold because kernel == stride, so the taps never overlap.)
(d) A differing feature count -- output channels, or input channels of any but the first
    convolution, or the length of a bias / InstanceNorm tensor -- cannot be adapted without
    inventing filters: the tensor is skipped with a reason such as ``output features 32 vs 30
    (source vs target)`` and keeps its fresh initialisation.  InstanceNorm weights and biases are
    loaded whenever their shapes match.

Statuses and acceptance
-----------------------
Each target tensor gets one status: ``loaded`` (same shape, copied), ``adapted`` (a rule above),
``skipped`` (counterpart found, incompatible), ``not_in_source`` (no counterpart) or ``excluded``
(part not selected).  Source tensors that go into no target tensor are listed as unused
(informational).  ``loaded`` and ``adapted`` count as transferred -- also for ``strict``, because the
adaptations are exact in the stated sense.  By default a transfer covering less than
``min_encoder_fraction`` of the encoder's parameters raises :class:`TransferRefused`: silently
training "pretrained" from scratch is the failure this module exists to prevent.  ``strict=True``
refuses when any tensor of the selected parts is ``skipped`` or ``not_in_source``.  The network is
modified only after the transfer has been accepted, with one ``load_state_dict``.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pickle
import re
from collections.abc import Mapping

import torch
from torch import nn

from nnunet_genesis.checkpoints import (CheckpointError, _strip_wrapper_prefixes,  # noqa: F401 (re-exported)
                                        allow_nnunet_checkpoint_globals, load_state_dict_from_checkpoint)

__all__ = [
    "CheckpointError",
    "TransferEntry",
    "TransferRefused",
    "TransferReport",
    "adapt_input_channels",
    "adapt_conv_kernel",
    "adapt_transposed_conv_kernel",
    "allow_nnunet_checkpoint_globals",
    "build_generic_unet",
    "build_network_from_plans",
    "check_transfer_accepted",
    "load_state_dict_from_checkpoint",
    "plan_transfer",
    "plan_transfer_for_task",
    "transfer_weights",
]

MODES = ("encoder", "encoder+decoder")
# Measured with nnUNet_genesis_study on the validation cases (README, "Does pretraining help?"):
# the encoder alone transfers better than encoder + decoder; as MIC-DKFZ's nnssl fine-tunes.
DEFAULT_MODE = "encoder"
TRANSFERRED = ("loaded", "adapted")
STATUSES = ("loaded", "adapted", "skipped", "not_in_source", "excluded")
PARTS = ("encoder", "decoder", "seg_outputs", "other")


# ----------------------------------------------------------------------------------------------
# What each tensor is: part, resolution level, position in the stage
# ----------------------------------------------------------------------------------------------

_KEY_PATTERNS = (
    # (component, regex); groups: stage, [group], block, leaf
    ("context", re.compile(r"^conv_blocks_context\.(\d+)\.blocks\.(\d+)\.(.+)$")),
    ("context", re.compile(r"^conv_blocks_context\.(\d+)\.(\d+)\.blocks\.(\d+)\.(.+)$")),
    ("localization", re.compile(r"^conv_blocks_localization\.(\d+)\.(\d+)\.blocks\.(\d+)\.(.+)$")),
    ("tu", re.compile(r"^tu\.(\d+)\.(.+)$")),
    ("seg_outputs", re.compile(r"^seg_outputs\.(\d+)\.(.+)$")),
)
_PART_OF_COMPONENT = {"context": "encoder", "localization": "decoder", "tu": "decoder", "seg_outputs": "seg_outputs"}


@dataclasses.dataclass(frozen=True)
class _Role:
    """What a tensor does: component, resolution level, convolution number inside the stage, leaf name."""
    component: str  # context | localization | tu | seg_outputs | other
    level: int
    conv: int
    leaf: str

    @property
    def part(self) -> str:
        return _PART_OF_COMPONENT.get(self.component, "other")

    def describe(self) -> str:
        if self.component == "other":
            return f"tensor {self.leaf!r}"
        what = {"context": "encoder", "localization": "decoder", "tu": "upsampling (tu)",
                "seg_outputs": "seg_outputs"}[self.component]
        conv = f" convolution {self.conv}" if self.component in ("context", "localization") else ""
        return f"{what} level {self.level}{conv} {self.leaf}"


def _assign_roles(state_dict: Mapping[str, torch.Tensor]) -> dict[str, _Role]:
    """Role of every key of a Generic_UNet-like state dict (see the module docstring for levels)."""
    parsed = {}
    for key in state_dict:
        for component, pattern in _KEY_PATTERNS:
            match = pattern.match(key)
            if match:
                groups = match.groups()
                stage, leaf, numbers = int(groups[0]), groups[-1], [int(g) for g in groups[1:-1]]
                # plain stages have no group number (group 0); tu and seg_outputs are one block each
                group, block = {2: numbers, 1: [0] + numbers, 0: [0, 0]}[len(numbers)]
                parsed[key] = (component, stage, group, block, leaf)
                break
    # Convolutions per (component, stage, group), to number convolutions across the groups of a stage.
    blocks_in_group: dict[tuple, int] = {}
    for component, stage, group, block, _ in parsed.values():
        slot = (component, stage, group)
        blocks_in_group[slot] = max(blocks_in_group.get(slot, 0), block + 1)
    context_stages = [p[1] for p in parsed.values() if p[0] == "context"]
    decoder_stages = [p[1] for p in parsed.values() if p[0] in ("localization", "tu", "seg_outputs")]
    if context_stages:
        num_pool = max(context_stages)  # the bottleneck conv_blocks_context[P] sits at level P
    else:
        num_pool = max(decoder_stages) + 1 if decoder_stages else 0
    roles = {}
    for key in state_dict:
        if key not in parsed:
            roles[key] = _Role("other", -1, -1, key)
            continue
        component, stage, group, block, leaf = parsed[key]
        level = stage if component == "context" else num_pool - 1 - stage
        conv = sum(blocks_in_group.get((component, stage, g), 0) for g in range(group)) + block
        roles[key] = _Role(component, level, conv, leaf)
    return roles


# ----------------------------------------------------------------------------------------------
# Adaptation rules (each documented in the module docstring, with the property it keeps)
# ----------------------------------------------------------------------------------------------

def adapt_input_channels(weight: torch.Tensor, new_channels: int) -> torch.Tensor:
    """Rule (a): ``W_new[:, c] = sum_c' W_old[:, c'] / C_new`` for every new input channel ``c``.

    Keeps the response to an input whose channels are all the same image ``x`` equal to the source's
    response to ``x`` in all its channels.  ``weight`` has shape ``(out, C_old, *k)``.
    """
    if new_channels < 1:
        raise ValueError(f"new_channels must be >= 1, got {new_channels}")
    summed = weight.sum(dim=1, keepdim=True)
    return (summed / new_channels).repeat_interleave(new_channels, dim=1)


def adapt_conv_kernel(weight: torch.Tensor, target_kernel) -> tuple[torch.Tensor | None, str]:
    """Rule (b): adapt the spatial kernel of a convolution weight ``(out, in, *k)`` to ``target_kernel``.

    Per axis: ``k -> 1`` sums along the axis (response to inputs constant along it unchanged);
    ``1 -> k`` (odd) puts the kernel in the centre slice, zeros elsewhere (slice-wise response
    unchanged).  Returns ``(adapted weight, description)`` or ``(None, reason)`` when no rule applies.
    """
    target_kernel = tuple(int(k) for k in target_kernel)
    notes = []
    for axis, new in enumerate(target_kernel):
        dim = 2 + axis
        old = weight.shape[dim]
        if old == new:
            continue
        if new == 1:
            weight = weight.sum(dim=dim, keepdim=True)
            notes.append(f"kernel axis {axis} {old}->1 summed")
        elif old == 1 and new % 2 == 1:
            shape = list(weight.shape)
            shape[dim] = new
            embedded = weight.new_zeros(shape)
            embedded.narrow(dim, new // 2, 1).copy_(weight)
            weight = embedded
            notes.append(f"kernel axis {axis} 1->{new} centre slice")
        else:
            return None, f"kernel axis {axis} {old} vs {new} (source vs target): no transfer rule"
    return weight, "; ".join(notes)


def adapt_transposed_conv_kernel(weight: torch.Tensor, target_kernel) -> tuple[torch.Tensor | None, str]:
    """Rule (c): adapt a transposed-convolution weight ``(in, out, *k)`` whose kernel equals its stride.

    Per axis: ``k_old = r k_new`` averages groups of ``r`` taps (output = source output average-pooled
    by ``r``); ``k_new = r k_old`` repeats each tap ``r`` times (output = source output repeated ``r``
    times).  Returns ``(adapted weight, description)`` or ``(None, reason)``.
    """
    target_kernel = tuple(int(k) for k in target_kernel)
    notes = []
    for axis, new in enumerate(target_kernel):
        dim = 2 + axis
        old = weight.shape[dim]
        if old == new:
            continue
        if old % new == 0:
            ratio = old // new
            shape = list(weight.shape)
            shape[dim:dim + 1] = [new, ratio]
            weight = weight.reshape(shape).mean(dim=dim + 1)
            notes.append(f"upsampling kernel axis {axis} {old}->{new} averaged")
        elif new % old == 0:
            weight = weight.repeat_interleave(new // old, dim=dim)
            notes.append(f"upsampling kernel axis {axis} {old}->{new} repeated")
        else:
            return None, f"upsampling kernel axis {axis} {old} vs {new} (source vs target): no transfer rule"
    return weight, "; ".join(notes)


def _shape_text(shape) -> str:
    return "x".join(str(int(s)) for s in shape) if shape is not None and len(shape) else "scalar"


def _adapt(role: _Role, source: torch.Tensor, target_shape: tuple) -> tuple[torch.Tensor | None, str]:
    """Adapt one matched source tensor to ``target_shape``: ``(tensor, description)`` or ``(None, reason)``."""
    source_shape = tuple(source.shape)
    if source.dim() != len(target_shape):
        return None, f"dimensionality {source.dim()} vs {len(target_shape)} (source vs target)"
    if not source.is_floating_point():
        return None, f"shape {_shape_text(source_shape)} vs {_shape_text(target_shape)} (source vs target) of a non-float tensor"
    is_weight_of_conv = source.dim() >= 3
    if not is_weight_of_conv:
        # biases, norm weights and biases: one number per feature
        return None, f"features {source_shape[0] if source_shape else 1} vs {target_shape[0] if target_shape else 1} (source vs target)"
    features = "classes" if role.component == "seg_outputs" else "features"
    transposed = role.component == "tu"
    out_dim, in_dim = (1, 0) if transposed else (0, 1)
    if source_shape[out_dim] != target_shape[out_dim]:
        return None, f"output {features} {source_shape[out_dim]} vs {target_shape[out_dim]} (source vs target)"
    notes = []
    weight = source.to(torch.float32) if source.dtype in (torch.float16, torch.bfloat16) else source
    if source_shape[in_dim] != target_shape[in_dim]:
        is_first_conv = role.component == "context" and role.level == 0 and role.conv == 0
        if not is_first_conv:
            return None, f"input features {source_shape[in_dim]} vs {target_shape[in_dim]} (source vs target)"
        weight = adapt_input_channels(weight, target_shape[in_dim])
        notes.append(f"input channels {source_shape[in_dim]}->{target_shape[in_dim]}: "
                     f"each = sum of source channels / {target_shape[in_dim]}")
    if tuple(weight.shape[2:]) != tuple(target_shape[2:]):
        rule = adapt_transposed_conv_kernel if transposed else adapt_conv_kernel
        weight, note = rule(weight, target_shape[2:])
        if weight is None:
            return None, note
        notes.append(note)
    return weight, "; ".join(notes)


# ----------------------------------------------------------------------------------------------
# The report
# ----------------------------------------------------------------------------------------------

@dataclasses.dataclass
class TransferEntry:
    """The decision for one target tensor."""
    key: str
    part: str  # encoder | decoder | seg_outputs | other
    status: str  # loaded | adapted | skipped | not_in_source | excluded
    reason: str
    numel: int
    target_shape: list[int]
    source_shape: list[int] | None = None
    source_key: str | None = None

    @property
    def transferred(self) -> bool:
        return self.status in TRANSFERRED


def _percent(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f} %" if whole else "n/a"


@dataclasses.dataclass
class TransferReport:
    """Per-target-tensor account of a weight transfer, with the fractions that decide acceptance.

    Fractions are over the numel of the target's state-dict tensors of a part (for Generic_UNet with
    InstanceNorm these are exactly its parameters); ``encoder_fraction`` counts ``conv_blocks_context``,
    ``decoder_fraction`` counts ``tu`` and ``conv_blocks_localization``.  An empty part has fraction 0.
    """
    entries: list[TransferEntry]
    unused_source_keys: dict[str, str]  # source key -> why it went nowhere
    mode: str = DEFAULT_MODE
    include_seg_outputs: bool = False
    source: str = "<in-memory checkpoint>"

    # -- numbers -------------------------------------------------------------------------------
    def numel(self, part: str, transferred_only: bool = False) -> int:
        return sum(e.numel for e in self.entries if e.part == part and (e.transferred or not transferred_only))

    def fraction(self, part: str) -> float:
        total = self.numel(part)
        return self.numel(part, transferred_only=True) / total if total else 0.0

    @property
    def encoder_fraction(self) -> float:
        return self.fraction("encoder")

    @property
    def decoder_fraction(self) -> float:
        return self.fraction("decoder")

    @property
    def counts(self) -> dict[str, int]:
        """Number of target tensors per status (every status present, zeros included)."""
        counts = {status: 0 for status in STATUSES}
        for entry in self.entries:
            counts[entry.status] += 1
        return counts

    def selected_parts(self) -> tuple[str, ...]:
        parts = ["encoder"]
        if self.mode == "encoder+decoder":
            parts += ["decoder", "other"]
        if self.include_seg_outputs:
            parts.append("seg_outputs")
        return tuple(parts)

    def fresh_parameter_names(self) -> list[str]:
        """Target tensor names NOT transferred (skipped, not_in_source, excluded), in state-dict order.

        These keep their fresh initialisation; a warm-up phase trains only these.  Intersect with
        ``network.named_parameters()`` if the state dict also holds buffers.
        """
        return [e.key for e in self.entries if not e.transferred]

    def refusal_reasons(self, min_encoder_fraction: float = 0.5, allow_partial: bool = False,
                        strict: bool = False) -> list[str]:
        """Why this transfer must not be used under the given policy (empty list: accepted)."""
        reasons = []
        if self.numel("encoder") == 0:
            reasons.append("the target has no encoder (conv_blocks_context) tensors: not a Generic_UNet")
        elif not allow_partial and self.encoder_fraction < min_encoder_fraction:
            reasons.append(
                f"only {_percent(self.numel('encoder', True), self.numel('encoder'))} of the encoder's parameters "
                f"were transferred (minimum {100.0 * min_encoder_fraction:.1f} %; pass allow_partial=True to accept)")
        if strict:
            missing = [e for e in self.entries if e.part in self.selected_parts() and not e.transferred
                       and e.status != "excluded"]
            if missing:
                listed = ", ".join(f"{e.key} ({e.status})" for e in missing[:5])
                more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
                reasons.append(f"strict: {len(missing)} tensors of the selected parts were not transferred: {listed}{more}")
        return reasons

    # -- text ----------------------------------------------------------------------------------
    def summary(self) -> str:
        def part_text(part: str, label: str) -> str:
            if part not in self.selected_parts():
                return f"{label} not selected (mode {self.mode!r})" if part == "decoder" else f"{label} not selected"
            return (f"{_percent(self.numel(part, True), self.numel(part))} of {label} parameters "
                    f"({self.numel(part, True)}/{self.numel(part)})")
        counts = self.counts
        seg = part_text("seg_outputs", "seg_outputs") if self.include_seg_outputs else "seg_outputs excluded"
        return (f"transferred {part_text('encoder', 'encoder')}, {part_text('decoder', 'decoder')}, {seg}; "
                f"tensors: {counts['loaded']} loaded, {counts['adapted']} adapted, {counts['skipped']} skipped, "
                f"{counts['not_in_source']} not in source, {counts['excluded']} excluded; "
                f"{len(self.unused_source_keys)} source tensors unused")

    def format(self, show_loaded: bool = True, max_unused: int = 10) -> str:
        """Summary line first, then one row per target tensor, then (some of) the unused source tensors.

        ``show_loaded=False`` folds tensors copied unchanged under their own name into one line.
        """
        lines = [self.summary(), f"source: {self.source}"]
        width = max([len(e.key) for e in self.entries] + [len("target tensor")])
        lines.append(f"{'status':<13} {'part':<11} {'target tensor':<{width}} {'shape':<14} from / reason")
        folded = 0
        for e in self.entries:
            plain_copy = e.status == "loaded" and e.source_key == e.key
            if plain_copy and not show_loaded:
                folded += 1
                continue
            origin = ""
            if e.source_key is not None and (e.source_key != e.key or e.source_shape != e.target_shape):
                origin = f"<- {e.source_key} [{_shape_text(e.source_shape)}]"
            detail = "  ".join(text for text in (origin, e.reason) if text)
            lines.append(f"{e.status:<13} {e.part:<11} {e.key:<{width}} {_shape_text(e.target_shape):<14} {detail}".rstrip())
        if folded:
            lines.append(f"({folded} tensors loaded unchanged under the same name not listed)")
        if self.unused_source_keys:
            lines.append(f"unused in source ({len(self.unused_source_keys)}, informational):")
            for key, why in list(self.unused_source_keys.items())[:max_unused]:
                lines.append(f"  {key}: {why}")
            if len(self.unused_source_keys) > max_unused:
                lines.append(f"  ... and {len(self.unused_source_keys) - max_unused} more")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()

    # -- JSON ----------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "summary": self.summary(),
            "source": self.source,
            "mode": self.mode,
            "include_seg_outputs": self.include_seg_outputs,
            "encoder_fraction": self.encoder_fraction,
            "decoder_fraction": self.decoder_fraction,
            "encoder_numel": [self.numel("encoder", True), self.numel("encoder")],
            "decoder_numel": [self.numel("decoder", True), self.numel("decoder")],
            "numel_per_part": {part: [self.numel(part, True), self.numel(part)] for part in PARTS},
            "counts": self.counts,
            "fresh_parameter_names": self.fresh_parameter_names(),
            "entries": [dataclasses.asdict(e) for e in self.entries],
            "unused_source_keys": dict(self.unused_source_keys),
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> "TransferReport":
        return cls(entries=[TransferEntry(**entry) for entry in data["entries"]],
                   unused_source_keys=dict(data["unused_source_keys"]), mode=data["mode"],
                   include_seg_outputs=bool(data["include_seg_outputs"]), source=data["source"])

    def save_json(self, path) -> None:
        with open(path, "w") as handle:
            json.dump(self.to_dict(), handle, indent=1)

    @classmethod
    def load_json(cls, path) -> "TransferReport":
        with open(path) as handle:
            return cls.from_dict(json.load(handle))


class TransferRefused(RuntimeError):
    """A transfer the policy does not accept; ``.report`` holds the full report, ``.reasons`` why."""

    def __init__(self, report: TransferReport, reasons: list[str] | None = None):
        self.report = report
        self.reasons = list(reasons or [])
        text = "; ".join(self.reasons) or "transfer refused"
        # compact table (rows that are not plain copies); report.format() lists every tensor
        super().__init__(f"pretrained weight transfer refused: {text}\n{report.format(show_loaded=False)}")


def check_transfer_accepted(report: TransferReport, min_encoder_fraction: float = 0.5,
                            allow_partial: bool = False, strict: bool = False) -> None:
    """Raise :class:`TransferRefused` unless ``report`` is acceptable under the given policy."""
    reasons = report.refusal_reasons(min_encoder_fraction, allow_partial, strict)
    if reasons:
        raise TransferRefused(report, reasons)


# ----------------------------------------------------------------------------------------------
# Planning and applying a transfer
# ----------------------------------------------------------------------------------------------

def _flow_order(role: _Role) -> tuple:
    """Sort key: encoder by increasing level, decoder by decreasing level (upsampling first), heads, others."""
    rank = {"context": 0, "tu": 1, "localization": 1, "seg_outputs": 2}.get(role.component, 3)
    module, _, name = role.leaf.rpartition(".")
    leaf = (module, {"weight": 0, "bias": 1}.get(name, 2), name)  # conv.weight, conv.bias, instnorm.weight, ...
    if rank == 0:
        return rank, role.level, role.conv, leaf
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
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    source_state_dict = {_strip_wrapper_prefixes(k): v for k, v in source_state_dict.items()}
    target_roles = _assign_roles(target_state_dict)
    source_roles = _assign_roles(source_state_dict)
    source_by_role = {role: key for key, role in source_roles.items()}
    selected = {"encoder"} | ({"decoder", "other"} if mode == "encoder+decoder" else set())
    if include_seg_outputs:
        selected.add("seg_outputs")

    updates: dict[str, torch.Tensor] = {}
    entries: list[TransferEntry] = []
    consumed: dict[str, str] = {}  # source key -> what became of it, when not transferred
    for key, target in target_state_dict.items():
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
                            include_seg_outputs=include_seg_outputs, source=source_name)
    return updates, report


def transfer_weights(network: nn.Module, source, mode: str = DEFAULT_MODE, include_seg_outputs: bool = False,
                     min_encoder_fraction: float = 0.5, allow_partial: bool = False,
                     strict: bool = False) -> TransferReport:
    """Load what ``source`` offers into ``network`` (a Generic_UNet) by the rules of the module docstring.

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
    source_name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else "<in-memory checkpoint>"
    source_state_dict = load_state_dict_from_checkpoint(source)
    target_state_dict = network.state_dict()
    updates, report = plan_transfer(target_state_dict, source_state_dict, mode=mode,
                                    include_seg_outputs=include_seg_outputs, source_name=source_name)
    check_transfer_accepted(report, min_encoder_fraction, allow_partial, strict)
    target_state_dict.update(updates)
    network.load_state_dict(target_state_dict, strict=True)
    return report


# ----------------------------------------------------------------------------------------------
# Building the networks nnU-Net builds
# ----------------------------------------------------------------------------------------------

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
    network = Generic_UNet(int(num_input_channels), int(base_num_features), int(num_classes),
                           len(pool_op_kernel_sizes), int(conv_per_stage), 2, conv_op, norm_op,
                           {"eps": 1e-5, "affine": True}, dropout_op, {"p": 0, "inplace": True},
                           nn.LeakyReLU, {"negative_slope": 1e-2, "inplace": True}, deep_supervision, False,
                           lambda x: x, InitWeights_He(1e-2), pool_op_kernel_sizes, conv_kernel_sizes,
                           False, True, True)
    network.inference_apply_nonlin = softmax_helper
    return network


def _load_plans(plans_file_or_dict) -> tuple[dict, str]:
    if isinstance(plans_file_or_dict, Mapping):
        return dict(plans_file_or_dict), "<plans dict>"
    path = os.fspath(plans_file_or_dict)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"plans file {path!r} does not exist")
    try:
        with open(path, "rb") as handle:
            plans = pickle.load(handle)
    except Exception as error:
        raise ValueError(f"{path!r} is not an nnU-Net plans pickle ({type(error).__name__}: {error})") from error
    if not isinstance(plans, Mapping):
        raise ValueError(f"{path!r} holds a {type(plans).__name__}, not an nnU-Net plans dict")
    return dict(plans), path


def build_network_from_plans(plans_file_or_dict, stage=None, num_classes: int | None = None,
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
        stage = sorted(stages.keys())[-1]
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


def plan_transfer_for_task(weights, task, model="3d_fullres", plans_identifier="nnUNetPlansv2.1",
                           mode=DEFAULT_MODE, min_encoder_fraction=0.5, allow_partial=False,
                           strict=False) -> TransferReport:
    """Dry run of ``nnUNetTrainerV2_Genesis -pretrained_weights weights`` on a planned task.

    Builds the network nnU-Net would train for ``task`` (id or name) and ``model`` (2d, 3d_lowres:
    first stage, 3d_fullres: last stage) from ``$nnUNet_preprocessed/<task>/<plans_identifier>_plans_*D.pkl``
    and transfers into it. Returns the report; raises TransferRefused exactly when the trainer would.
    """
    from nnunet.paths import preprocessing_output_dir
    from nnunet.utilities.task_name_id_conversion import convert_id_to_task_name

    task_name = str(task) if str(task).startswith("Task") else convert_id_to_task_name(int(task))
    plans_file = os.path.join(preprocessing_output_dir or "", task_name,
                              plans_identifier + ("_plans_2D.pkl" if model == "2d" else "_plans_3D.pkl"))
    if not os.path.isfile(plans_file):
        raise FileNotFoundError("no plans for %s %s: %s does not exist (run nnUNet_plan_and_preprocess first)"
                                % (task_name, model, plans_file))
    with open(plans_file, "rb") as f:
        plans = pickle.load(f)
    stages = sorted(plans["plans_per_stage"].keys())
    if model == "3d_lowres" and len(stages) == 1:
        raise ValueError("%s has a single 3D stage: 3d_lowres does not exist, use 3d_fullres" % task_name)
    network = build_network_from_plans(plans, stage=stages[-1] if model == "3d_fullres" else stages[0])
    return transfer_weights(network, weights, mode=mode, min_encoder_fraction=min_encoder_fraction,
                            allow_partial=allow_partial, strict=strict)
