"""Strategies: the Bars container, the Strategy protocol, the built-ins and parameter handling.

Built-ins: sma_cross (SmaCross), donchian_breakout (DonchianBreakout), ml_signal (MlSignal) and
ts_momentum (TimeSeriesMomentum). A user strategy is any
class satisfying Strategy, loaded by its import path `package.module:Class`.
"""

from __future__ import annotations

from runner.strategies.base import (
    BUILTINS,
    Bars,
    Param,
    ParamKind,
    Strategy,
    StrategyError,
    load_strategy,
    resolve_params,
)
from runner.strategies.donchian import DonchianBreakout
from runner.strategies.ml_signal import MlSignal
from runner.strategies.momentum import TimeSeriesMomentum
from runner.strategies.sma_cross import SmaCross

__all__ = [
    "BUILTINS",
    "Bars",
    "DonchianBreakout",
    "MlSignal",
    "Param",
    "ParamKind",
    "SmaCross",
    "Strategy",
    "StrategyError",
    "TimeSeriesMomentum",
    "load_strategy",
    "resolve_params",
]
