"""The account of a weight transfer: one entry per target tensor, the fractions per part, the acceptance policy.

Each target tensor gets one status: ``loaded`` (same shape, copied), ``adapted`` (a rule of :mod:`nnunet_genesis.transfer.rules`),
``skipped`` (counterpart found, incompatible), ``not_in_source`` (no counterpart) or ``excluded``
(part not selected).  Source tensors that go into no target tensor are listed as unused
(informational).  ``loaded`` and ``adapted`` count as transferred -- also for ``strict``, because the
adaptations are exact in the stated sense.  By default a transfer covering less than
``min_encoder_fraction`` of the encoder's parameters raises :class:`TransferRefused`: silently
training "pretrained" from scratch is the failure the transfer exists to prevent.  ``strict=True``
refuses when any tensor of the selected parts is ``skipped`` or ``not_in_source``.  ``transfer_weights``
modifies the network only after the transfer has been accepted, with one ``load_state_dict``.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping

MODES = ("encoder", "encoder+decoder")
# Measured with nnUNet_genesis_study on the validation cases (README, "Does pretraining help?"):
# the encoder alone transfers better than encoder + decoder; as MIC-DKFZ's nnssl fine-tunes.
DEFAULT_MODE = "encoder"
# the acceptance policy's default: a transfer covering less of the encoder's parameters is refused
MIN_ENCODER_FRACTION = 0.5
TRANSFERRED = ("loaded", "adapted")
STATUSES = ("loaded", "adapted", "skipped", "not_in_source", "excluded")
PARTS = ("encoder", "decoder", "seg_outputs", "other")
#: the report's file name in a fine-tuning fold folder (written by nnUNetTrainerV2_Genesis, read by the study)
TRANSFER_REPORT_FILE = "transfer_report.json"


def selected_parts(mode: str = DEFAULT_MODE, include_seg_outputs: bool = False) -> tuple[str, ...]:
    """The parts a transfer in ``mode`` covers (the one place that decides it): the encoder; in mode
    ``encoder+decoder`` also the decoder and the other tensors; ``seg_outputs`` only when included."""
    parts = ["encoder"]
    if mode == "encoder+decoder":
        parts += ["decoder", "other"]
    if include_seg_outputs:
        parts.append("seg_outputs")
    return tuple(parts)


def _shape_text(shape) -> str:
    return "x".join(str(int(s)) for s in shape) if shape is not None and len(shape) else "scalar"


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
    nnU-Net v2: ``encoder.*`` (stem included), resp. ``decoder.transpconvs`` and ``decoder.stages``.  A v2
    state dict holds some tensors under several keys (``<m>.all_modules.N``, ``decoder.encoder.*``;
    :func:`nnunet_genesis.transfer.rules.canonical_keys`): ``entries`` has one entry per tensor, under its
    canonical key, so every fraction counts each parameter once; ``aliases`` maps each other key to that
    canonical key (loaded with it; empty for Generic_UNet).
    """
    entries: list[TransferEntry]
    unused_source_keys: dict[str, str]  # source key -> why it went nowhere
    mode: str = DEFAULT_MODE
    include_seg_outputs: bool = False
    source: str = "<in-memory checkpoint>"
    aliases: dict[str, str] = dataclasses.field(default_factory=dict)  # alias key -> canonical key (v2)
    # what the source checkpoint's nnssl adaptation plan says (adaptation_plan.source_summary); None without one
    source_plan: dict | None = None

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
        return selected_parts(self.mode, self.include_seg_outputs)

    def fresh_parameter_names(self) -> list[str]:
        """Target tensor names NOT transferred (skipped, not_in_source, excluded), in state-dict order.

        These keep their fresh initialisation; a warm-up phase trains only these.  Intersect with
        ``network.named_parameters()`` if the state dict also holds buffers.  Aliases of a fresh tensor
        (v2) follow at the end, so the list holds every state-dict name of it.
        """
        fresh = [e.key for e in self.entries if not e.transferred]
        if self.aliases:
            names = set(fresh)
            fresh += [alias for alias, key in self.aliases.items() if key in names]
        return fresh

    def refusal_reasons(self, min_encoder_fraction: float = MIN_ENCODER_FRACTION, allow_partial: bool = False,
                        strict: bool = False) -> list[str]:
        """Why this transfer must not be used under the given policy (empty list: accepted)."""
        reasons = []
        if self.numel("encoder") == 0:
            reasons.append("the target has no encoder (conv_blocks_context) tensors: not a Generic_UNet"
                           " (nor an nnU-Net v2 PlainConvUNet / ResidualEncoderUNet)")
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
        if self.source_plan:
            from nnunet_genesis.checkpoints.adaptation_plan import describe_source
            lines.append(f"source plan: {describe_source(self.source_plan)}")
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
        if self.aliases:
            lines.append(f"{len(self.aliases)} alias keys (the same tensor under a second name, e.g. "
                         f"{next(iter(self.aliases))} = {next(iter(self.aliases.values()))}) follow their tensor")
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
            **({"aliases": dict(self.aliases)} if self.aliases else {}),
            **({"source_plan": dict(self.source_plan)} if self.source_plan else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> "TransferReport":
        return cls(entries=[TransferEntry(**entry) for entry in data["entries"]],
                   unused_source_keys=dict(data["unused_source_keys"]), mode=data["mode"],
                   include_seg_outputs=bool(data["include_seg_outputs"]), source=data["source"],
                   aliases=dict(data.get("aliases", {})), source_plan=data.get("source_plan"))

    def save_json(self, path) -> None:
        from nnunet_genesis.io.atomic import write_json_atomic
        write_json_atomic(self.to_dict(), path)

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


def check_transfer_accepted(report: TransferReport, min_encoder_fraction: float = MIN_ENCODER_FRACTION,
                            allow_partial: bool = False, strict: bool = False) -> None:
    """Raise :class:`TransferRefused` unless ``report`` is acceptable under the given policy."""
    reasons = report.refusal_reasons(min_encoder_fraction, allow_partial, strict)
    if reasons:
        raise TransferRefused(report, reasons)
