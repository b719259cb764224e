"""`runner cycle --every`: the period's grid, skipped slots after an overrun, stopping, and one
dbt session for every cycle of the process (the end-to-end runs are in test_cycle.py)."""

from __future__ import annotations

import os
import signal
from datetime import UTC, datetime
from pathlib import Path

import pytest

from runner.cycle import CycleReport
from runner.cycle_loop import StopRequest, parse_period, repeat_cycles, stop_on_signals
from runner.dbt import DbtSession
from runner.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("3600", 3600), ("90s", 90), ("30m", 1800), ("1h", 3600), (" 2H ", 7200), ("1d", 86400)],
)
def test_periods_read_as_seconds(text: str, seconds: float) -> None:
    assert parse_period(text) == seconds


@pytest.mark.parametrize("text", ["", "hourly", "1w", "-5m", "0", "0.5s", "1h30m"])
def test_a_period_that_is_not_one_says_so(text: str) -> None:
    with pytest.raises(ConfigError, match="--every"):
        parse_period(text)


class FakeTime:
    """A clock the cycles and the waits move forward; records when each cycle started."""

    def __init__(self, cycle_seconds: list[float]) -> None:
        self.now = 1000.0
        self.cycle_seconds = cycle_seconds
        self.starts: list[float] = []
        self.sessions: list[DbtSession] = []

    def run(self, session: DbtSession) -> CycleReport:
        self.starts.append(self.now - 1000.0)
        self.sessions.append(session)
        self.now += self.cycle_seconds[len(self.starts) - 1]
        now = datetime.now(UTC)
        return CycleReport(f"c{len(self.starts)}", now, now, False, [], Path("log"))


class FakeStop(StopRequest):
    def __init__(self, clock: FakeTime, stop_after: int | None = None) -> None:
        super().__init__()
        self.clock = clock
        self.stop_after = stop_after

    def wait(self, seconds: float) -> bool:
        assert seconds >= 0
        self.clock.now += seconds
        if self.stop_after is not None and len(self.clock.starts) >= self.stop_after:
            self.request()
        return self.requested


def test_cycles_start_on_the_grid_and_an_overrun_skips_the_slots_it_missed() -> None:
    clock = FakeTime([10, 10, 250, 10, 10])
    reports = repeat_cycles(
        clock.run, every=100, max_cycles=5, stop=FakeStop(clock), clock=lambda: clock.now
    )
    assert [r.cycle_id for r in reports] == ["c1", "c2", "c3", "c4", "c5"]
    # The third cycle ran from 200 to 450: the slots at 300 and 400 are skipped.
    assert clock.starts == [0, 100, 200, 500, 600]
    assert len({id(s) for s in clock.sessions}) == 1  # one dbt session for the process


def test_a_stop_while_waiting_ends_the_loop_before_the_next_cycle() -> None:
    clock = FakeTime([1] * 10)
    reports = repeat_cycles(
        clock.run, every=60, stop=FakeStop(clock, stop_after=3), clock=lambda: clock.now
    )
    assert len(reports) == 3


def test_a_signal_during_a_cycle_lets_it_finish_and_a_second_one_interrupts() -> None:
    stop = StopRequest()
    seen: list[str] = []

    def run(session: DbtSession) -> CycleReport:
        os.kill(os.getpid(), signal.SIGTERM)  # a service manager stopping us mid-cycle
        seen.append("finished")
        now = datetime.now(UTC)
        return CycleReport("c", now, now, False, [], Path("log"))

    before = signal.getsignal(signal.SIGTERM)
    with stop_on_signals(stop):
        reports = repeat_cycles(run, every=3600, stop=stop)
        assert len(reports) == 1 and seen == ["finished"]
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGTERM) is before  # the handlers are put back
