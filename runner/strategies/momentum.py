"""ts_momentum: time-series momentum, or its mirror image, short-term reversal.

The target follows the sign of the return over the last `lookback` bars (`direction` = +1,
momentum) or fades it (`direction` = -1, reversal). Moves smaller than `threshold` keep the
position as it is. With a short lookback it trades often, which is what an A/B test on the
return per trade needs to decide in days rather than years.
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
        1,
        1,
        48,
        log=True,
        description="Bars over which the return is measured.",
    ),
    Param(
        "direction",
        "int",
        1,
        -1,
        1,
        description="+1 follows the move (momentum), -1 fades it (reversal).",
    ),
    Param(
        "threshold",
        "float",
        0.0,
        0.0,
        0.01,
        description="Smallest |return| over the lookback that changes the position.",
    ),
    *EXIT_PARAMETERS,
)


class TimeSeriesMomentum:
    """Target = direction × sign(close[t] / close[t − lookback] − 1) where the move is at least
    `threshold`, NaN (hold) otherwise; the first `lookback` bars are NaN."""

    name: str = "ts_momentum"

    def parameters(self) -> Sequence[Param]:
        return PARAMETERS

    def problems(self, params: Mapping[str, Any]) -> list[str]:
        return [] if params["direction"] != 0 else ["direction must be +1 or -1, not 0"]

    def signals(self, bars: Bars, params: Mapping[str, Any]) -> NDArray[np.float64]:
        lookback = int(params["lookback"])
        close = bars.close
        out = np.full(len(close), np.nan)
        if len(close) <= lookback:
            return out
        move = close[lookback:] / close[:-lookback] - 1.0
        decided = np.abs(move) >= params["threshold"]
        target = np.where(decided, params["direction"] * np.sign(move), np.nan)
        target[decided & (move == 0)] = np.nan  # no move, no view
        out[lookback:] = target
        return out
