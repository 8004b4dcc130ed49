"""The fine-tuning trainers' schedule and hook bodies (v1 ``nnUNetTrainerV2_Genesis``, v2 ``nnUNetTrainer_Genesis``).

:class:`FineTuneHooks` holds the settings a variant changes and every hook body the two families share
(``-pretrained_weights`` through the adaptive transfer, the [fresh, transferred] optimizer groups, their rebuilding
on a resume, the warm-up rates, the "trains from scratch" warning); the v1 and v2 trainers only map nnU-Net's
hooks onto it and answer two accessors: ``genesis_epoch()`` (v1 ``epoch``, v2 ``current_epoch``) and
``genesis_rebuild_optimizer()`` (v1 ``initialize_optimizer_and_scheduler``, v2 ``configure_optimizers``), plus
``network``, ``plain_network``, ``optimizer``, ``output_folder`` and ``print_to_log_file``, which both have.

Warm-up: for the first ``warmup_epochs`` epochs the transferred parameters learn at
``warmup_lr_scale`` × the learning rate (default 0: frozen) while the freshly initialised ones
(the segmentation heads, and any stage the pretrained network did not have) learn at the full
rate. Then every parameter follows nnU-Net's poly schedule (``poly_lr`` of nnU-Net 1.7.1's
``nnunet/training/learning_rate/poly_lr.py``, applied by ``nnUNetTrainerV2.maybe_update_lr`` in
``nnunet/training/network_training/nnUNetTrainerV2.py``; the factor here multiplies it per group).

Shrink and perturb: right after the transfer, the transferred convolution weights become
``genesis_pretrained_share`` (default 0.3) x pretrained + the rest x the network's own initialisation
(:mod:`nnunet_genesis.transfer.shrink_perturb`, which says why and what measured it); 1.0 keeps them as they are.

Why the warm-up: the segmentation heads start random, and at nnU-Net's initial learning rate (0.01,
momentum 0.99) their first gradients flow back into, and scramble, the pretrained features.
Letting the heads settle first keeps what pretraining learned. It is done with two optimizer
parameter groups rather than ``requires_grad=False`` so that DistributedDataParallel, which
only registers parameters that require gradients when it wraps the network, keeps syncing all
of them after the warm-up.
"""
from typing import Dict, Iterable, List, Sequence

from nnunet_genesis.transfer.report import DEFAULT_MODE, MIN_ENCODER_FRACTION
from nnunet_genesis.transfer.shrink_perturb import DEFAULT_PRETRAINED_SHARE


FRESH, TRANSFERRED = "fresh", "transferred"


def regroup_optimizer(optimizer, groups):
    """Replace ``optimizer``'s parameter groups by ``groups`` in place (a scheduler made for it keeps working on
    the same object); the optimizer's defaults fill the rest."""
    optimizer.param_groups.clear()
    optimizer.state.clear()
    for group in groups:
        optimizer.add_param_group(group)


class FineTuneSettings:
    """What a fine-tuning variant may change, as class attributes: the defaults of the v1
    (``nnUNetTrainerV2_Genesis``) and v2 (``nnUNetTrainer_Genesis``) trainers alike."""
    genesis_transfer_mode = DEFAULT_MODE       # "encoder"; or "encoder+decoder"
    genesis_min_encoder_fraction = MIN_ENCODER_FRACTION         # below this the transfer is refused ...
    genesis_allow_partial = False              # ... unless this is True
    genesis_strict = False                     # True: refuse anything not transferred
    # 10 of nnU-Net's 1000 epochs (2,500 iterations): ample for 1x1x1 heads to settle, 1 % of the budget.
    genesis_warmup_epochs = 10
    genesis_warmup_lr_scale = 0.0              # 0: transferred parameters frozen during the warm-up
    genesis_warmup_shape = "constant"          # or "linear": ramp from genesis_warmup_lr_scale to the rate after
    genesis_transferred_lr_scale = 1.0         # after the warm-up: transferred parameters at this x the rate
    # transferred convolution weights = this x pretrained + (1 - this) x the network's own fresh initialisation
    # (shrink and perturb, nnunet_genesis/transfer/shrink_perturb.py); 1.0: the pretrained weights as they are
    genesis_pretrained_share = DEFAULT_PRETRAINED_SHARE
    # True: fine-tune from a checkpoint whose pretraining record says it did not learn (the verdict is still
    # printed and reported); as nnUNet_genesis_allow_unlearned=1 for one run (nnunet_genesis/checkpoints/pretraining_record.py)
    genesis_allow_unlearned = False


def warmup_lr_scale(epoch: int, warmup_epochs: int, scale_during_warmup: float, shape: str = "constant",
                    scale_after: float = 1.0) -> float:
    """Learning-rate factor of the transferred parameters at ``epoch`` (0-based).

    ``shape="constant"``: ``scale_during_warmup`` while epoch < warmup_epochs (0 = frozen).
    ``shape="linear"``: a linear ramp from ``scale_during_warmup`` towards ``scale_after``,
    ``scale_during_warmup + (scale_after - scale_during_warmup) * epoch / warmup_epochs``.
    From epoch ``warmup_epochs`` on: ``scale_after`` (1 = nnU-Net's rate; below 1 a lower rate
    for the transferred layers for the whole training)."""
    if epoch >= warmup_epochs:
        return float(scale_after)
    if shape == "constant":
        return float(scale_during_warmup)
    if shape == "linear":
        return float(scale_during_warmup + (scale_after - scale_during_warmup) * epoch / warmup_epochs)
    raise ValueError("warm-up shape must be 'constant' or 'linear', got %r" % (shape,))


def parameter_groups(named_parameters: Iterable, transferred_names: Sequence[str]) -> List[Dict]:
    """Split ``network.named_parameters()`` into [fresh, transferred] optimizer groups.

    Group 0 stays the fresh one because nnU-Net's ``maybe_update_lr`` writes the poly learning
    rate into ``param_groups[0]``. Each group records its parameter names, so a resumed
    training (``-c``) can rebuild the same groups before loading the optimizer state.
    A group with no parameters is left out.
    """
    transferred = set(transferred_names)
    named = list(named_parameters)
    groups = []
    for role in (FRESH, TRANSFERRED):
        members = [(n, p) for n, p in named if (n in transferred) == (role == TRANSFERRED)]
        if members:
            groups.append({"params": [p for _, p in members], "genesis_role": role,
                           "genesis_param_names": [n for n, _ in members]})
    return groups


def transferred_names_from_optimizer_state(optimizer_state_dict) -> List[str]:
    """The transferred parameter names recorded in a saved optimizer state ([] if none)."""
    if not optimizer_state_dict:
        return []
    for group in optimizer_state_dict.get("param_groups", []):
        if group.get("genesis_role") == TRANSFERRED:
            return list(group.get("genesis_param_names", []))
    return []


class PretrainedWeightsRefused(SystemExit):
    """``-pretrained_weights`` refused (the transfer, or the checkpoint's own pretraining record): a
    SystemExit with status 1, so the stock ``nnUNet_train`` / ``nnUNetv2_train`` ends with the one
    ``REFUSED`` line already logged, not a traceback. ``line``: that line; ``report``: the transfer
    report (None when refused on the record, before any transfer)."""

    def __init__(self, line: str, report=None):
        super().__init__(1)
        self.line, self.report = line, report

    def __str__(self):
        return self.line


def transfer_for_training(network, fname: str, output_folder: str, mode: str, min_encoder_fraction: float,
                          allow_partial: bool, strict: bool, log, allow_unlearned: bool = False,
                          pretrained_share: float = 1.0):
    """What a fine-tuning trainer (v1 and v2 alike) does with ``-pretrained_weights fname``: the verdict of
    the checkpoint's own pretraining record (``nnunet_genesis.checkpoints.pretraining_record``) ``log``-ged, then the
    adaptive transfer into ``network`` (:func:`nnunet_genesis.transfer.weights.transfer_weights`), the report (with
    that record) saved as ``TRANSFER_REPORT_FILE`` in ``output_folder`` (also when refused) and ``log``-ged.
    With ``pretrained_share`` below 1 the transferred convolution weights are then shrunk and perturbed towards
    ``network``'s own initialisation (:mod:`nnunet_genesis.transfer.shrink_perturb`); the report records the
    share and the tensors mixed (``shrink_and_perturb``).
    A checkpoint whose record says it did not learn (unless ``allow_unlearned`` or
    ``nnUNet_genesis_allow_unlearned=1``) or a
    transfer the policy refuses: one ``REFUSED`` line, then :class:`PretrainedWeightsRefused`. Returns
    (report, the names of the transferred parameters in ``network.named_parameters()`` order)."""
    import os
    from nnunet_genesis.io.atomic import make_dirs, write_json_atomic
    from nnunet_genesis.checkpoints.pretraining_record import describe, read_record, refusal
    from nnunet_genesis.transfer.weights import TransferRefused, transfer_weights
    from nnunet_genesis.transfer.report import TRANSFER_REPORT_FILE
    from nnunet_genesis.transfer.shrink_perturb import check_share, shrink_and_perturb, snapshot
    pretrained_share = check_share(pretrained_share)
    make_dirs(output_folder)
    report_file = os.path.join(output_folder, TRANSFER_REPORT_FILE)
    record = read_record(fname)
    log(describe(record, fname))
    refused_line = None if allow_unlearned else refusal(record, fname)
    if refused_line:
        log(refused_line)
        raise PretrainedWeightsRefused(refused_line)
    fresh_init = snapshot(network) if pretrained_share < 1.0 else {}
    try:
        report = transfer_weights(network, fname, mode=mode, min_encoder_fraction=min_encoder_fraction,
                                  allow_partial=allow_partial, strict=strict)
    except TransferRefused as refused:
        write_json_atomic(dict(refused.report.to_dict(), pretraining_record=record), report_file)
        line = "Pretrained weights %s REFUSED: %s (report: %s)" % (
            fname, "; ".join(refused.reasons) or "transfer refused", report_file)
        log(line)
        raise PretrainedWeightsRefused(line, refused.report) from None
    fresh = set(report.fresh_parameter_names())
    transferred = [n for n, _ in network.named_parameters() if n not in fresh]
    mixed = shrink_and_perturb(network, fresh_init, transferred, pretrained_share)
    write_json_atomic(dict(report.to_dict(), pretraining_record=record,
                           shrink_and_perturb={"pretrained_share": pretrained_share, "mixed_parameter_names": mixed}),
                      report_file)
    verdict = "pretraining record: %s" % (record["verdict"] if record else "none")
    log("Pretrained weights: %s (%s; report: %s)\n%s" % (fname, verdict, report_file, report.format()))
    log("Shrink and perturb: %d transferred convolution weights = %g x pretrained + %g x this network's "
        "initialisation (genesis_pretrained_share)" % (len(mixed), pretrained_share, 1.0 - pretrained_share)
        if mixed else "Shrink and perturb: off (genesis_pretrained_share 1: the pretrained weights as they are)")
    return report, transferred


def warmup_description(warmup_epochs: int, shape: str, warmup_lr_scale_: float, transferred_lr_scale: float) -> str:
    """The log line that states the warm-up a fine-tuning run follows."""
    return ("Warm-up: %d epochs (%s) with transferred parameters from %g x the learning rate, then %g x"
            % (warmup_epochs, shape, warmup_lr_scale_, transferred_lr_scale))


class FineTuneHooks(FineTuneSettings):
    """The hook bodies of both fine-tuning families (accessors: module doc)."""
    transferred_parameter_names = ()

    def genesis_register_pretrained_weights(self) -> None:
        """Route ``-pretrained_weights`` for this network to :meth:`load_pretrained_weights` (the stock
        ``load_pretrained_weights``, patched by ``nnunet_genesis.integration``, asks the registry)."""
        from nnunet_genesis.pretrained_weights_handlers import register_pretrained_weights_handler
        register_pretrained_weights_handler(self.network, self.load_pretrained_weights)

    def load_pretrained_weights(self, fname: str):
        """Called by stock ``nnUNet_train`` / ``nnUNetv2_train ... -pretrained_weights fname``: the transfer
        (:func:`transfer_for_training`), the optimizer rebuilt with its two groups, the warm-up stated."""
        report, self.transferred_parameter_names = transfer_for_training(
            self.plain_network, fname, self.output_folder, self.genesis_transfer_mode,
            self.genesis_min_encoder_fraction, self.genesis_allow_partial, self.genesis_strict, self.print_to_log_file,
            self.genesis_allow_unlearned, self.genesis_pretrained_share)
        self.genesis_rebuild_optimizer()
        self.print_to_log_file(warmup_description(self.genesis_warmup_epochs, self.genesis_warmup_shape,
                                                  self.genesis_warmup_lr_scale, self.genesis_transferred_lr_scale))
        return report

    def genesis_regroup(self, optimizer):
        """``optimizer`` with [fresh, transferred] parameter groups once weights were transferred (in place)."""
        if self.transferred_parameter_names:
            regroup_optimizer(optimizer, parameter_groups(self.plain_network.named_parameters(),
                                                          self.transferred_parameter_names))
        return optimizer

    def genesis_resume_groups(self, optimizer_state) -> None:
        """A resumed training (``-c`` / ``--c``): rebuild the groups recorded in the checkpoint's optimizer state
        before nnU-Net loads that state into them."""
        names = transferred_names_from_optimizer_state(optimizer_state)
        if names:
            self.transferred_parameter_names = names
            self.genesis_rebuild_optimizer()

    def genesis_apply_warmup(self, epoch: int) -> None:
        """After nnU-Net set the epoch's rate (poly) in group 0: every fresh group at that rate, the transferred
        one at :func:`warmup_lr_scale` x it (logged)."""
        base_lr = self.optimizer.param_groups[0]["lr"]
        for group in self.optimizer.param_groups:
            if group.get("genesis_role") != TRANSFERRED:
                group["lr"] = base_lr
                continue
            group["lr"] = base_lr * warmup_lr_scale(epoch, self.genesis_warmup_epochs, self.genesis_warmup_lr_scale,
                                                    self.genesis_warmup_shape, self.genesis_transferred_lr_scale)
            self.print_to_log_file("transferred parameters: learning rate %g" % group["lr"])

    def genesis_warn_if_scratch(self) -> None:
        """When training starts at epoch 0 without transferred weights: say so, once."""
        if self.genesis_epoch() == 0 and not self.transferred_parameter_names:
            self.print_to_log_file("WARNING: %s got no -pretrained_weights: this run trains from scratch."
                                   % type(self).__name__)
