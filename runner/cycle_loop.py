"""`runner cycle --every`: improvement cycles on a fixed period in one long-lived process.

Cron or a CI schedule start a fresh process every hour, which imports dbt and loads the parsed
project each time (docs/benchmarks.md, "Scale"). Run as a service instead, the process parses the
project once (a DbtSession) and keeps it for every cycle while the project's files are unchanged.

Cycles start on the period's grid (start, start + every, ...): a cycle that overruns its slot
makes the loop skip the slots it missed instead of running cycles back to back. SIGTERM or
Ctrl-C while waiting stops at once; during a cycle, it lets the cycle finish and then stops (a
second signal interrupts the cycle: the next one records it as interrupted).
"""

from __future__ import annotations

import math
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType

from runner.cycle import CycleReport
from runner.dbt import DbtSession
from runner.errors import ConfigError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")


def parse_period(text: str) -> float:
    """Seconds in '3600', '90s', '30m', '1h' or '1d'; at least one second."""
    match = _DURATION.match(text.lower())
    if match is None:
        raise ConfigError(
            f"--every {text!r} is not a period: use seconds or a number with s, m, h or d "
            "(e.g. 1h)."
        )
    seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if seconds < 1:
        raise ConfigError(f"--every {text!r} is shorter than a second.")
    return seconds


@dataclass
class StopRequest:
    """Set by SIGTERM/SIGINT: `requested` stops the loop after the running cycle."""

    requested: bool = False
    _wake: threading.Event = field(default_factory=threading.Event)

    def request(self) -> None:
        self.requested = True
        self._wake.set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True when a stop was requested meanwhile."""
        self._wake.wait(max(0.0, seconds))
        return self.requested


@contextmanager
def stop_on_signals(stop: StopRequest) -> Iterator[None]:
    """The first SIGTERM/SIGINT asks the loop to stop; a second one interrupts (KeyboardInterrupt)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.requested:
            raise KeyboardInterrupt
        stop.request()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def repeat_cycles(
    run: Callable[[DbtSession], CycleReport],
    *,
    every: float,
    max_cycles: int | None = None,
    stop: StopRequest | None = None,
    on_report: Callable[[CycleReport], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> list[CycleReport]:
    """Run `run(session)` now and then at every `every` seconds on the grid from now, with one
    DbtSession for all, until `max_cycles` ran or a stop is requested. Returns the reports."""
    stop = stop or StopRequest()
    session = DbtSession()
    start = clock()
    reports: list[CycleReport] = []
    slot = 0
    while max_cycles is None or len(reports) < max_cycles:
        report = run(session)
        reports.append(report)
        if on_report is not None:
            on_report(report)
        if stop.requested or (max_cycles is not None and len(reports) >= max_cycles):
            break
        # The next slot of the grid still ahead (a long cycle skips the ones it overran).
        slot = max(slot + 1, math.floor((clock() - start) / every) + 1)
        if stop.wait(start + slot * every - clock()):
            break
    return reports
