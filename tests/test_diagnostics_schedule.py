"""The per-distortion diagnostics take a bounded share of the wall time (issue #18): the rule of
nnunet_genesis/pretraining/schedule.py, with the clock injected (no wall-clock assertion)."""
import pytest

from nnunet_genesis.pretraining.schedule import DiagnosticsSchedule, diagnostics_due


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def simulate(epochs, epoch_seconds, diagnostic_seconds, share=0.1, every=1):
    """Run the schedule over ``epochs`` epochs; returns (scored epochs, diagnostics seconds, total seconds)."""
    clock = FakeClock()
    schedule = DiagnosticsSchedule(every=every, share=share, clock=clock)
    scored = []
    for epoch in range(epochs):
        clock.now += epoch_seconds
        if schedule.due(epoch, last=epoch == epochs - 1):
            with schedule.timed():
                clock.now += diagnostic_seconds
            scored.append(epoch)
    return scored, schedule.spent, clock.now


def test_first_and_last_always_scored():
    scored, _, _ = simulate(40, epoch_seconds=1.0, diagnostic_seconds=50.0)
    assert scored[0] == 0 and scored[-1] == 39


@pytest.mark.parametrize("epoch_seconds,diagnostic_seconds", [(57.0, 6.0), (20.0, 6.0), (5.0, 6.0), (2.0, 6.0)])
def test_share_stays_bounded_whatever_the_epoch_length(epoch_seconds, diagnostic_seconds):
    epochs = 200
    scored, spent, total = simulate(epochs, epoch_seconds, diagnostic_seconds)
    # apart from the last check (always made), the diagnostics stay within 10 % of the time
    assert (spent - diagnostic_seconds) / (total - diagnostic_seconds) <= 0.1 + 1e-9
    assert len(scored) >= 3


def test_long_epochs_are_scored_every_epoch():
    scored, _, _ = simulate(30, epoch_seconds=100.0, diagnostic_seconds=2.0)
    assert scored == list(range(30))


def test_short_epochs_are_spaced():
    # issue #18 measured 6 s of diagnostics against 51 s of training (over 10 %): some epochs are skipped
    scored, _, _ = simulate(40, epoch_seconds=51.0, diagnostic_seconds=6.0)
    assert 20 <= len(scored) < 40
    # diagnostics costing a third of an epoch: scored about every third epoch or less often
    scored, _, _ = simulate(40, epoch_seconds=18.0, diagnostic_seconds=6.0)
    gaps = [b - a for a, b in zip(scored[1:-2], scored[2:-1])]
    assert gaps and min(gaps) >= 3


def test_every_still_limits():
    scored, _, _ = simulate(20, epoch_seconds=100.0, diagnostic_seconds=1.0, every=5)
    assert scored == [0, 5, 10, 15, 19]


def test_rule_itself():
    assert diagnostics_due(3, False, 1, 0.1, elapsed=100.0, spent=5.0, cost=5.0)        # 10 <= 10.5
    assert not diagnostics_due(3, False, 1, 0.1, elapsed=50.0, spent=5.0, cost=5.0)     # 10 > 5.5
    assert diagnostics_due(3, False, 1, 0.1, elapsed=1.0, spent=0.0, cost=None)         # never measured
    assert diagnostics_due(0, False, 1, 0.1, elapsed=0.0, spent=99.0, cost=99.0)        # first
    assert diagnostics_due(7, True, 5, 0.1, elapsed=1.0, spent=99.0, cost=99.0)         # last


def test_skipped_epochs_are_counted():
    clock = FakeClock()
    schedule = DiagnosticsSchedule(clock=clock)
    assert schedule.due(0)
    with schedule.timed():
        clock.now += 10.0
    clock.now += 1.0
    assert not schedule.due(1)
    assert schedule.skipped == 1
    assert schedule.share_so_far() == pytest.approx(10.0 / 11.0)


def test_begin_starts_the_clock_before_the_first_check():
    clock = FakeClock()
    schedule = DiagnosticsSchedule(clock=clock)
    schedule.begin()
    clock.now += 90.0                      # the first epoch trains
    assert schedule.due(0)
    with schedule.timed():
        clock.now += 10.0
    assert schedule.share_so_far() == pytest.approx(0.1)


def test_trainer_mixin_scores_first_last_and_previews_on_schedule():
    from nnunet_genesis.pretraining.schedule import ScheduledDiagnostics
    clock = FakeClock()

    class Trainer(ScheduledDiagnostics):
        genesis_diagnostics_every, genesis_diagnostics_share, genesis_preview_every = 1, 0.1, 5

        def __init__(self):
            self.scored, self.previews, self.lines = [], [], []
            self._diagnostics_schedule = DiagnosticsSchedule(clock=clock)   # the trainer's, clock injected
            self._diagnostics_schedule.begin()

        def score_restoration_now(self):
            self.scored.append(epoch)
            clock.now += 30.0                       # diagnostics as slow as issue #18 saw them under load

        def write_restoration_preview(self):
            self.previews.append(epoch)

        def print_to_log_file(self, *args):
            self.lines.append(" ".join(map(str, args)))

    trainer = Trainer()
    for epoch in range(20):
        clock.now += 100.0                          # one epoch of training
        trainer.run_epoch_diagnostics(epoch, epoch == 19)
    assert trainer.scored[0] == 0 and trainer.scored[-1] == 19 and len(trainer.scored) < 20
    assert trainer.previews == [4, 9, 14, 19]
    assert all("diagnostics:" in line for line in trainer.lines) and len(trainer.lines) == len(trainer.scored)
    spent = 30.0 * len(trainer.scored)
    assert (spent - 30.0) / (clock.now - 30.0) <= 0.1 + 1e-9
