"""When a pretraining trainer scores its per-distortion diagnostics: a bounded share of the wall time.

The diagnostics (``pretraining.record_restoration``: every distortion of a few validation patches through
the network, the history plot, a preview now and then) cost about the same whatever the epoch length;
measured in issue #18, 6 of 57 s of a 25-iteration epoch, up to 20 % under load. Scored every epoch they
tax short epochs most, which are exactly the small budgets users try first. So they are spaced by their
measured cost:

* the first epoch and the last are always scored (the start of the curve and the final state);
* otherwise an epoch (one of every ``every``) is scored when the time spent in diagnostics so far, plus
  the cost of the last one, stays within ``share`` (default 10 %) of the wall time since training
  started (``begin``; else the first check) plus that cost: ``spent + cost <= share * (elapsed + cost)``.

So long epochs are scored every time and short ones every few epochs, and the diagnostics never take more
than ``share`` of the time except for the first and last checks. The clock is injected (``clock``), so the
rule is tested without waiting.
"""
import time
from contextlib import contextmanager
from typing import Callable, Optional

DEFAULT_SHARE = 0.1


def diagnostics_due(epoch: int, last: bool, every: int, share: float, elapsed: float, spent: float,
                    cost: Optional[float]) -> bool:
    """The rule of the module doc. ``elapsed``: seconds since training started; ``spent``: seconds in
    diagnostics since then (included in ``elapsed``); ``cost``: seconds the last diagnostics took (None:
    never measured, so due)."""
    if epoch == 0 or last:
        return True
    if every > 1 and epoch % every:
        return False
    if cost is None:
        return True
    return spent + cost <= share * (elapsed + cost)


class DiagnosticsSchedule:
    """The rule with its bookkeeping: ``due(epoch, last)``, and ``with schedule.timed(): ...`` around the
    diagnostics. One per training run (a resumed run starts a new one)."""

    def __init__(self, every: int = 1, share: float = DEFAULT_SHARE, clock: Callable[[], float] = time.perf_counter):
        self.every, self.share, self.clock = max(int(every), 1), float(share), clock
        self.start = None
        self.spent = 0.0
        self.cost = None
        self.skipped = 0

    def begin(self) -> None:
        """Start the clock (training starts); otherwise it starts at the first check."""
        self.start = self.clock()

    def due(self, epoch: int, last: bool = False) -> bool:
        now = self.clock()
        if self.start is None:
            self.start = now
        due = diagnostics_due(epoch, last, self.every, self.share, now - self.start, self.spent, self.cost)
        self.skipped += 0 if due else 1
        return due

    @contextmanager
    def timed(self):
        begin = self.clock()
        if self.start is None:
            self.start = begin
        try:
            yield
        finally:
            self.cost = self.clock() - begin
            self.spent += self.cost

    def share_so_far(self) -> float:
        """Seconds in diagnostics over seconds since training started (0 before)."""
        if self.start is None:
            return 0.0
        elapsed = self.clock() - self.start
        return self.spent / elapsed if elapsed > 0 else 0.0


class ScheduledDiagnostics:
    """The epoch-end diagnostics of a pretraining trainer (v1 and v2 alike, through
    ``pretraining.GenesisPretrainSettings``, which holds the settings): needs ``genesis_diagnostics_every``,
    ``genesis_diagnostics_share``, ``genesis_preview_every``, ``score_restoration_now``,
    ``write_restoration_preview`` and ``print_to_log_file``."""

    def diagnostics_schedule(self) -> DiagnosticsSchedule:
        """The run's schedule; its clock starts on the first call (the trainers call it when training starts)."""
        if getattr(self, "_diagnostics_schedule", None) is None:
            self._diagnostics_schedule = DiagnosticsSchedule(self.genesis_diagnostics_every,
                                                             self.genesis_diagnostics_share)
            self._diagnostics_schedule.begin()
        return self._diagnostics_schedule

    def run_epoch_diagnostics(self, epoch: int, last: bool) -> None:
        """At an epoch's end (both trainers): the per-distortion scores (``score_restoration_now``) when
        ``nnunet_genesis.pretraining.schedule`` says they are due, the preview every
        ``genesis_preview_every`` epochs and at the end; both timed against the share."""
        schedule = self.diagnostics_schedule()
        if schedule.due(epoch, last):
            with schedule.timed():
                self.score_restoration_now()
            self.print_to_log_file("diagnostics: %.1f s, %.0f %% of the wall time since training started (%d epochs "
                                   "skipped to stay under %.0f %%)" % (schedule.cost, 100 * schedule.share_so_far(),
                                                                      schedule.skipped, 100 * schedule.share))
        if epoch % self.genesis_preview_every == self.genesis_preview_every - 1 or last:
            with schedule.timed():
                self.write_restoration_preview()
