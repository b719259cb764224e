"""Backtesting: fill a strategy's targets bar by bar and measure the result.

Public API: Costs, Trades, BacktestResult, simulate, backtest, daily_returns. The compiled loop
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

__all__ = [
    "EXIT_REASONS",
    "PERIODS_PER_YEAR",
    "BacktestResult",
    "Costs",
    "Trades",
    "backtest",
    "daily_returns",
    "simulate",
]
