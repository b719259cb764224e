"""sma_cross: long when the fast simple moving average crosses above the slow one.

An event strategy: it emits a target only on crossover bars and NaN elsewhere, so a stop-loss or
take-profit exit stays flat until the next crossover. Crossovers and SMAs are those of
backtesting.py (`backtesting.lib.crossover` over pandas rolling means), bit for bit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from runner.strategies.base import EXIT_PARAMETERS, Bars, Param

# Windows are searched on a log scale: 5 vs 10 bars differ as much as 100 vs 200.
PARAMETERS = (
    Param("fast", "int", 10, 2, 100, log=True, description="Bars in the fast SMA of the close."),
    Param("slow", "int", 30, 5, 400, log=True, description="Bars in the slow SMA of the close."),
    *EXIT_PARAMETERS,
    Param(
        "allow_short",
        "bool",
        False,
        description="Go short on a downward cross (otherwise go flat).",
    ),
)


class SmaCross:
    """+1 where SMA(fast) crosses above SMA(slow); -1 (allow_short) or 0 where it crosses below.

    A cross needs strict inequalities on both bars (fast[t-1] < slow[t-1] and fast[t] > slow[t]),
    so a touch without a cross emits nothing. The first possible signal is on bar `slow`.
    """

    name: str = "sma_cross"

    def parameters(self) -> Sequence[Param]:
        return PARAMETERS

    def problems(self, params: Mapping[str, Any]) -> list[str]:
        if params["fast"] >= params["slow"]:
            return [f"fast must be < slow (got fast={params['fast']}, slow={params['slow']})"]
        return []

    def signals(self, bars: Bars, params: Mapping[str, Any]) -> NDArray[np.float64]:
        from runner.backtest.kernel import sma_cross_targets

        down = -1.0 if params["allow_short"] else 0.0
        out = np.empty(len(bars), dtype=np.float64)
        sma_cross_targets(bars.close, int(params["fast"]), int(params["slow"]), 1.0, down, out)
        return out
