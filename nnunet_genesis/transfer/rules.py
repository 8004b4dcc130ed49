"""What each tensor of a U-Net (nnU-Net v1 or v2) does, and the rules that adapt a pretrained tensor to another shape.

The vocabulary of the transfer in :mod:`nnunet_genesis.transfer.weights`: which source tensor corresponds to which
target tensor (by role and resolution level, never by key), and how a matched tensor of another shape is
adapted.  Pure functions of tensors; nothing here loads, decides acceptance or reports.

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

nnU-Net v1 and v2: one vocabulary (the only place that knows both namings)
----------------------------------------------------------------------------
v2 networks (dynamic_network_architectures 0.4.x, followed: ``architectures/unet.py`` (PlainConvUNet,
ResidualEncoderUNet), ``building_blocks/plain_conv_encoder.py``, ``building_blocks/residual_encoders.py``,
``building_blocks/residual.py``, ``building_blocks/unet_decoder.py``, ``building_blocks/simple_conv_blocks.py``)
get the same roles as Generic_UNet, so v1 -> v2, v2 -> v2 and v2 -> v1 transfers use the rules below
unchanged.  ``S`` stage, ``c`` convolution, ``u`` decoder index (0 = deepest), ``P`` pooling steps::

    role (level, conv)         nnU-Net v1 Generic_UNet                 nnU-Net v2 (PlainConvUNet / ResidualEncoderUNet)
    encoder S, conv c          conv_blocks_context.S.blocks.c.*        encoder.stages.S.[i.]convs.c.*     (i: pool module)
      bottleneck (S = P)       conv_blocks_context.P.c.blocks.0.*      encoder.stages.P.[i.]convs.c.*
      stem = encoder 0, conv 0   -                                     encoder.stem.convs.0.*                   (ResEnc)
      encoder S, block b         -                                     encoder.stages.S.[i.]blocks.b.<conv1|conv2|conv3|skip.N>.*
    decoder P-1-u, conv c      conv_blocks_localization.u.c.blocks.0.* decoder.stages.u.convs.c.*
    upsampling P-1-u           tu.u.weight                             decoder.transpconvs.u.weight, .bias
    seg_outputs P-1-u          seg_outputs.u.weight                    decoder.seg_layers.u.weight, .bias
    leaf names                 conv.*, instnorm.*, lrelu.*             conv.*, norm.*, nonlin.*
    aliases (same tensor)        -                                     <m>.all_modules.0.* = <m>.conv.*
                                                                       <m>.all_modules.N.* = <m>.norm.* (N >= 1;
                                                                         the nonlin.* one if that holds the tensor)
                                                                       decoder.encoder.* = encoder.*

Leaves are compared under the v2 names (``instnorm`` -> ``norm``, ``lrelu`` -> ``nonlin``); reports keep each
network's own spelling.  A residual block is a unit of its own (role "block b", leaves ``conv1.conv.weight``,
``skip.norm.bias``; ``skip.N`` -> ``skip``, N depends on whether the block pools), so it matches residual
blocks only: its convolutions compute a residual, not what a plain convolution at that place computes.
Aliases: a v2 state dict holds some tensors twice (``ConvDropoutNormReLU`` registers its conv and norm
both by name and inside ``all_modules``; ``UNetDecoder`` keeps the encoder as ``decoder.encoder``).
:func:`canonical_keys` names each tensor once, by the key ``named_parameters()`` reports (the first one
registered); :func:`_assign_roles` gives an alias its tensor's role.


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
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping

import torch

from nnunet_genesis.transfer.report import _shape_text

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
_V2_KEY_PATTERNS = (
    # nnU-Net v2 (table in the module docstring): (component, unit, regex); groups: stage, number, leaf
    ("context", "convolution", re.compile(r"^encoder\.stem()\.convs\.(\d+)\.(.+)$")),
    ("context", "convolution", re.compile(r"^encoder\.stages\.(\d+)\.(?:\d+\.)?convs\.(\d+)\.(.+)$")),
    ("context", "block", re.compile(r"^encoder\.stages\.(\d+)\.(?:\d+\.)?blocks\.(\d+)\.(.+)$")),
    ("localization", "convolution", re.compile(r"^decoder\.stages\.(\d+)\.convs\.(\d+)\.(.+)$")),
    ("tu", "convolution", re.compile(r"^decoder\.transpconvs\.(\d+)()\.(.+)$")),
    ("seg_outputs", "convolution", re.compile(r"^decoder\.seg_layers\.(\d+)()\.(.+)$")),
)
_LEAF_NAMES = {"instnorm": "norm", "lrelu": "nonlin"}  # v1 module name -> the v2 name leaves are compared by
_ALL_MODULES = re.compile(r"^(.+)\.all_modules\.(\d+)\.([^.]+)$")
_PART_OF_COMPONENT = {"context": "encoder", "localization": "decoder", "tu": "decoder", "seg_outputs": "seg_outputs"}


@dataclasses.dataclass(frozen=True)
class _Role:
    """What a tensor does: component, resolution level, number of the convolution (or residual block) inside
    the stage, leaf name (compared under the v2 names); ``name``: the leaf as the network spells it (reports)."""
    component: str  # context | localization | tu | seg_outputs | other
    level: int
    conv: int
    leaf: str
    unit: str = "convolution"  # convolution | block (a residual block of a v2 ResidualEncoder)
    name: str = dataclasses.field(default="", compare=False)

    @property
    def part(self) -> str:
        return _PART_OF_COMPONENT.get(self.component, "other")

    def describe(self) -> str:
        leaf = self.name or self.leaf
        if self.component == "other":
            return f"tensor {leaf!r}"
        what = {"context": "encoder", "localization": "decoder", "tu": "upsampling (tu)",
                "seg_outputs": "seg_outputs"}[self.component]
        conv = f" {self.unit} {self.conv}" if self.component in ("context", "localization") else ""
        return f"{what} level {self.level}{conv} {leaf}"


def _same_tensor(a: torch.Tensor, b: torch.Tensor) -> bool:
    try:
        return (a.numel() > 0 and a.device == b.device and a.shape == b.shape and a.stride() == b.stride()
                and a.data_ptr() == b.data_ptr())
    except (RuntimeError, NotImplementedError):  # tensors without storage (meta, some wrappers)
        return False


def canonical_keys(state_dict: Mapping[str, torch.Tensor]) -> dict[str, str]:
    """``{key: canonical key}`` for every key: the name under which the report lists the key's tensor.

    The one place where v2's aliases are resolved (table in the module docstring): ``decoder.encoder.X``
    is ``encoder.X``; ``<m>.all_modules.N.p`` is ``<m>.conv.p`` / ``<m>.norm.p`` / ``<m>.nonlin.p``, the
    one holding the same tensor (same storage), else ``conv`` for N = 0 and the only other candidate
    for N >= 1 (a state dict whose copies were made separately).  The canonical key is the name
    ``named_parameters()`` reports, since the named modules are registered first.  Any other key
    (all of Generic_UNet's) is its own canonical key.
    """
    keys = set(state_dict)
    canonical = {}
    for key in state_dict:
        name = key
        if name.startswith("decoder.encoder.") and name[len("decoder."):] in keys:
            name = name[len("decoder."):]
        match = _ALL_MODULES.match(name)
        if match:
            module, index, leaf = match.group(1), int(match.group(2)), match.group(3)
            candidates = [f"{module}.{child}.{leaf}" for child in ("conv", "norm", "nonlin")
                          if f"{module}.{child}.{leaf}" in keys]
            shared = [c for c in candidates if _same_tensor(state_dict[c], state_dict[key])]
            others = [c for c in candidates if not c.startswith(module + ".conv.")]
            if len(shared) == 1:
                name = shared[0]
            elif index == 0 and f"{module}.conv.{leaf}" in keys:
                name = f"{module}.conv.{leaf}"
            elif index > 0 and len(others) == 1:
                name = others[0]
        canonical[key] = name
    return canonical


def _parse_v2(key: str):
    """``(component, unit, stage, number, leaf as spelled, leaf compared)`` of a v2 key, or None."""
    for component, unit, pattern in _V2_KEY_PATTERNS:
        match = pattern.match(key)
        if match:
            stage, number, leaf = match.groups()
            compared = re.sub(r"^skip\.\d+\.", "skip.", leaf) if unit == "block" else leaf
            return component, unit, int(stage or 0), int(number or 0), leaf, compared
    return None


def _assign_roles(state_dict: Mapping[str, torch.Tensor]) -> dict[str, _Role]:
    """Role of every key of a Generic_UNet or nnU-Net v2 U-Net state dict (module docstring: levels, v2 keys).

    An alias (:func:`canonical_keys`) gets the role of its tensor's canonical key.
    """
    canonical = canonical_keys(state_dict)
    parsed = {}
    for key in state_dict:
        if canonical[key] != key:
            continue
        for component, pattern in _KEY_PATTERNS:
            match = pattern.match(key)
            if match:
                groups = match.groups()
                stage, leaf, numbers = int(groups[0]), groups[-1], [int(g) for g in groups[1:-1]]
                # plain stages have no group number (group 0); tu and seg_outputs are one block each
                group, block = {2: numbers, 1: [0] + numbers, 0: [0, 0]}[len(numbers)]
                parsed[key] = (component, stage, group, block, leaf, "convolution", leaf)
                break
        else:
            v2 = _parse_v2(key)
            if v2 is not None:
                component, unit, stage, number, leaf, compared = v2
                parsed[key] = (component, stage, 0, number, leaf, unit, compared)
    # Convolutions per (component, stage, group), to number convolutions across the groups of a stage.
    blocks_in_group: dict[tuple, int] = {}
    for component, stage, group, block, *_ in parsed.values():
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
        if canonical[key] != key:
            continue
        if key not in parsed:
            roles[key] = _Role("other", -1, -1, key, name=key)
            continue
        component, stage, group, block, leaf, unit, compared = parsed[key]
        level = stage if component == "context" else num_pool - 1 - stage
        conv = sum(blocks_in_group.get((component, stage, g), 0) for g in range(group)) + block
        module, dot, rest = compared.partition(".")
        compared = _LEAF_NAMES.get(module, module) + dot + rest
        roles[key] = _Role(component, level, conv, compared, unit, name=leaf)
    return {key: roles[canonical[key]] for key in state_dict}


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


def _differing_axes(weight: torch.Tensor, target_kernel):
    """``(axis, tensor dim, source size, target size)`` for each spatial axis where ``weight``'s kernel (its
    dims 2, 3, 4) differs from ``target_kernel``."""
    for axis, new in enumerate(int(k) for k in target_kernel):
        old = weight.shape[2 + axis]
        if old != new:
            yield axis, 2 + axis, old, new


def adapt_conv_kernel(weight: torch.Tensor, target_kernel) -> tuple[torch.Tensor | None, str]:
    """Rule (b): adapt the spatial kernel of a convolution weight ``(out, in, *k)`` to ``target_kernel``.

    Per axis: ``k -> 1`` sums along the axis (response to inputs constant along it unchanged);
    ``1 -> k`` (odd) puts the kernel in the centre slice, zeros elsewhere (slice-wise response
    unchanged).  Returns ``(adapted weight, description)`` or ``(None, reason)`` when no rule applies.
    """
    notes = []
    for axis, dim, old, new in _differing_axes(weight, target_kernel):
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
    notes = []
    for axis, dim, old, new in _differing_axes(weight, target_kernel):
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
        is_first_conv = (role.component == "context" and role.level == 0 and role.conv == 0
                         and role.unit == "convolution")
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

