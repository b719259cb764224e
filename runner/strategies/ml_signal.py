"""ml_signal: trade a classifier's probability that the price rises.

Long while the probability is at or above `long_threshold`, short (or flat) while it is at or
below `short_threshold`, flat in between and wherever the bar has no probability. The
probabilities come with the bars (Bars.probability): the optimizer and the backtest attach the
out-of-sample predictions of the model version named by `model_version`
(runner.optimize.probabilities), so the version of the model is part of the strategy version.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from runner.strategies.base import EXIT_PARAMETERS, Bars, Param, StrategyError

PARAMETERS = (
    Param(
        "long_threshold",
        "float",
        0.55,
        0.5,
        0.8,
        description="Go long while P(up) is at or above this.",
    ),
    Param(
        "short_threshold",
        "float",
        0.45,
        0.2,
        0.5,
        description="Go short (allow_short) or flat while P(up) is at or below this.",
    ),
    *EXIT_PARAMETERS,
    Param("allow_short", "bool", True, description="Go short below short_threshold."),
    Param(
        "model_version",
        "int",
        1,
        1,
        None,
        searchable=False,
        description="Version of the component's model (model_versions) whose probabilities it "
        "trades.",
    ),
)


class MlSignal:
    """A level strategy on Bars.probability: the target follows the probability bar by bar, so a
    stop-loss exit re-enters on the next bar whose probability still clears a threshold."""

    name: str = "ml_signal"
    # The engine attaches Bars.probability for strategies that say they need it.
    needs_probability: bool = True

    def parameters(self) -> Sequence[Param]:
        return PARAMETERS

    def problems(self, params: Mapping[str, Any]) -> list[str]:
        if params["short_threshold"] >= params["long_threshold"]:
            return [
                "short_threshold must be < long_threshold (got "
                f"{params['short_threshold']:g} and {params['long_threshold']:g})"
            ]
        return []

    def signals(self, bars: Bars, params: Mapping[str, Any]) -> NDArray[np.float64]:
        p = bars.probability
        if p is None:
            raise StrategyError(
                f"ml_signal needs model probabilities on the bars of {bars.symbol or 'the data'}: "
                "a `probability` column in a bars file, or a component whose model has a "
                "version in model_versions (runner optimize --task retrain)."
            )
        short = -1.0 if params["allow_short"] else 0.0
        out = np.zeros(len(bars), dtype=np.float64)
        known = ~np.isnan(p)
        out[known & (p >= params["long_threshold"])] = 1.0
        out[known & (p <= params["short_threshold"])] = short
        return out
