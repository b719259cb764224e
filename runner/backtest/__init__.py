"""Backtesting: fill a strategy's targets bar by bar and measure the result.

Public API: Costs, Trades, BacktestResult, simulate, backtest, daily_returns, and the risk
parameters every strategy version may carry (RISK_PARAMETERS, risk_kwargs). The compiled loop
(runner.backtest.kernel, numba) is imported on first use, not here, so importing this package
stays cheap.
"""

from __future__ import annotations

from runner.backtest.engine import (
    EXIT_REASONS,
    PERIODS_PER_YEAR,
    BacktestResult,
    Costs,
    Trades,
    backtest,
    daily_returns,
    simulate,
)
from runner.backtest.risk import (
    RISK_PARAMETER_NAMES,
    RISK_PARAMETERS,
    VOL_WINDOW,
    RiskKwargs,
    bars_per_year_of,
    risk_kwargs,
)

__all__ = [
    "EXIT_REASONS",
    "PERIODS_PER_YEAR",
    "RISK_PARAMETERS",
    "RISK_PARAMETER_NAMES",
    "VOL_WINDOW",
    "BacktestResult",
    "Costs",
    "RiskKwargs",
    "Trades",
    "backtest",
    "bars_per_year_of",
    "daily_returns",
    "risk_kwargs",
    "simulate",
]
