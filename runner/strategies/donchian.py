"""donchian_breakout: the channel breakout of the Turtle rules.

Long on a close above the highest high of the previous `lookback` bars; out (or short, with
allow_short) on a close below the lowest low of the previous `exit_lookback` bars; with the same
stop-loss and take-profit parameters as sma_cross. The channels exclude the current bar.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from runner.strategies.base import EXIT_PARAMETERS, Bars, Param

PARAMETERS = (
    Param(
        "lookback",
        "int",
        20,
        2,
        400,
        log=True,
        description="Bars in the entry channel (highest high).",
    ),
    Param(
        "exit_lookback",
        "int",
        10,
        2,
        400,
        log=True,
        description="Bars in the exit channel (lowest low).",
    ),
    *EXIT_PARAMETERS,
    Param(
        "allow_short",
        "bool",
        False,
        description="Go short on a break below the exit channel (otherwise go flat).",
    ),
)


class DonchianBreakout:
    """+1 where close[t] > max(high[t-lookback .. t-1]); -1 (allow_short) or 0 where
    close[t] < min(low[t-exit_lookback .. t-1]); NaN elsewhere.

    Every bar that closes outside a channel emits, so after a stop-loss the next close beyond the
    channel (a new breakout) re-enters. The first possible signal is on bar max(lookback,
    exit_lookback).
    """

    name: str = "donchian_breakout"

    def parameters(self) -> Sequence[Param]:
        return PARAMETERS

    def problems(self, params: Mapping[str, Any]) -> list[str]:
        return []

    def signals(self, bars: Bars, params: Mapping[str, Any]) -> NDArray[np.float64]:
        from runner.backtest.kernel import channel_targets, rolling_max, rolling_min

        lookback = int(params["lookback"])
        exit_lookback = int(params["exit_lookback"])
        upper = rolling_max(bars.high, lookback)
        lower = rolling_min(bars.low, exit_lookback)
        if lookback != exit_lookback:
            # Warm-up ends when both channels are full, so short and long entries start together.
            warm = max(lookback, exit_lookback) - 1
            upper[:warm] = np.nan
            lower[:warm] = np.nan
        down = -1.0 if params["allow_short"] else 0.0
        out = np.empty(len(bars), dtype=np.float64)
        channel_targets(bars.close, upper, lower, 1.0, down, out)
        return out
