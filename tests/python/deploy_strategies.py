"""A strategy and a market with a known, planted per-trade edge, for the DEPLOY tests.

In `momentum_market` each day's return carries `phi` of the previous one (AR(1)), so following
the last bar's direction (`FollowLastBar`, follow = +1) earns on average and fading it
(follow = -1) loses the same: a truly better, worse or equal version is one parameter away.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from runner.strategies import Bars, Param
from runner.strategies.base import EXIT_PARAMETERS
from tests.python.markets import bars_from_returns


def momentum_market(days: int = 900, phi: float = 0.3, seed: int = 21) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    noise = rng.normal(0.0, 0.01, days)
    returns = np.empty(days)
    returns[0] = noise[0]
    for t in range(1, days):
        returns[t] = phi * returns[t - 1] + noise[t]
    return bars_from_returns(returns, seed)


class FollowLastBar:
    """Target = follow × sign(close − previous close): one decision per bar, so many trades."""

    name: str = "follow_last_bar"

    def parameters(self) -> Sequence[Param]:
        return (
            Param("follow", "int", 1, -1, 1, description="+1 follows the last move, -1 fades it."),
            *EXIT_PARAMETERS,
        )

    def problems(self, params: Mapping[str, Any]) -> list[str]:
        return [] if params["follow"] != 0 else ["follow must be +1 or -1"]

    def signals(self, bars: Bars, params: Mapping[str, Any]) -> NDArray[np.float64]:
        move = np.sign(np.diff(bars.close, prepend=np.nan))
        out: NDArray[np.float64] = params["follow"] * move
        out[0] = np.nan
        return out
