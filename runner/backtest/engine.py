"""Backtests: targets in, fills, trades, per-bar returns and metrics out.

The fill rules are in docs/backtesting.md; the bar loop itself is runner.backtest.kernel (numba,
imported lazily here). This module validates inputs, wraps the arrays in typed results and
computes the summary metrics. It does not search parameters or read files.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from runner.errors import ConfigError
from runner.strategies.base import Bars, Strategy, resolve_params

EXIT_REASONS = ("signal", "stop_loss", "take_profit", "end_of_data")
PERIODS_PER_YEAR = 252  # daily Sharpe annualisation, as the marts (docs/metrics.md)


@dataclass(frozen=True)
class Costs:
    """Per-fill costs in basis points: fees on the fill's notional, slippage against the price."""

    fees_bps: float = 0.0
    slippage_bps: float = 0.0

    def __post_init__(self) -> None:
        for name in ("fees_bps", "slippage_bps"):
            value = getattr(self, name)
            if not (
                isinstance(value, int | float) and math.isfinite(value) and 0 <= value < 10_000
            ):
                raise ConfigError(
                    f"{name} must be a number in [0, 10000) basis points, got {value!r}."
                )


@dataclass(frozen=True, eq=False)
class Trades:
    """Closed trades in entry order, as parallel arrays (one element per trade).

    Prices are the actual fills (slippage included); `ret` is the trade's return net of fees:
    side * (exit / entry - 1) - fee * (1 + exit / entry), fee = fees_bps / 1e4 (backtesting.py's
    relative commission, charged on the entry and exit notional).
    """

    entry_index: NDArray[np.int64]
    exit_index: NDArray[np.int64]
    entry_price: NDArray[np.float64]
    exit_price: NDArray[np.float64]
    side: NDArray[np.int8]
    ret: NDArray[np.float64]
    exit_reason: NDArray[np.int8]

    def __len__(self) -> int:
        return len(self.entry_index)

    def to_records(self, bars: Bars) -> list[dict[str, Any]]:
        """One dict per trade, JSON-ready: times as ISO strings (UTC), side and reason as text."""
        entry_times = np.datetime_as_string(bars.time[self.entry_index], unit="s")
        exit_times = np.datetime_as_string(bars.time[self.exit_index], unit="s")
        return [
            {
                "entry_time": str(entry_times[i]),
                "exit_time": str(exit_times[i]),
                "side": "long" if self.side[i] > 0 else "short",
                "entry_price": float(self.entry_price[i]),
                "exit_price": float(self.exit_price[i]),
                "return": float(self.ret[i]),
                "exit_reason": EXIT_REASONS[int(self.exit_reason[i])],
                "bars_held": int(self.exit_index[i] - self.entry_index[i]),
            }
            for i in range(len(self))
        ]


@dataclass(frozen=True, eq=False)
class BacktestResult:
    """The trades and the per-bar return of equity marked to market at each close.

    Equity is fully invested while a position is open, so prod(1 + bar_returns) equals
    prod(1 + trades.ret) (to rounding).
    """

    trades: Trades
    bar_returns: NDArray[np.float64] = field(repr=False)

    def metrics(self, bars: Bars) -> dict[str, float | int | None]:
        """Summary metrics; None where undefined (docs/backtesting.md "Metrics").

        win_rate and expectancy follow docs/metrics.md (break-even trades left out); sharpe is on
        daily returns (UTC calendar days that have bars) annualised with sqrt(252); max_drawdown
        (<= 0) and total_return are on the bar-by-bar equity; exposure is the share of bars in
        which a position was held for at least part of the bar.
        """
        if len(bars) != len(self.bar_returns):
            raise ConfigError(
                f"metrics() needs the bars the backtest ran on ({len(self.bar_returns)}), "
                f"got {len(bars)}."
            )
        ret = self.trades.ret
        wins = ret[ret > 0]
        losses = ret[ret < 0]
        decided = len(wins) + len(losses)
        win_rate = len(wins) / decided if decided else None
        expectancy = None
        if win_rate is not None:
            avg_win = float(wins.mean()) if len(wins) else 0.0
            avg_loss = float(losses.mean()) if len(losses) else 0.0
            expectancy = win_rate * avg_win - (1 - win_rate) * abs(avg_loss)
        n = len(self.bar_returns)
        equity = np.cumprod(1.0 + self.bar_returns, dtype=np.float64)
        _, daily = daily_returns(bars.time, self.bar_returns)
        return {
            "n_trades": len(ret),
            "win_rate": win_rate,
            "total_return": float(equity[-1] - 1.0) if n else None,
            "sharpe": sharpe(daily),
            "max_drawdown": max_drawdown(equity) if n else None,
            "expectancy": expectancy,
            "exposure": _exposure(self.trades, n) if n else None,
        }


def sharpe(daily: NDArray[np.float64], periods_per_year: int = PERIODS_PER_YEAR) -> float | None:
    """mean / std(ddof=1) * sqrt(periods), risk-free 0 (empyrical `sharpe_ratio`)."""
    if len(daily) < 2 or bool(np.all(daily == daily[0])):
        return None
    return float(daily.mean() / daily.std(ddof=1) * math.sqrt(periods_per_year))


def max_drawdown(equity: NDArray[np.float64]) -> float:
    """min_t W_t / max(1, W_0..W_t) - 1 with the starting equity 1 as the first peak (empyrical)."""
    peak = np.maximum.accumulate(np.maximum(equity, 1.0))
    return float(min(0.0, (equity / peak - 1.0).min()))


def _exposure(trades: Trades, n: int) -> float:
    held = np.zeros(n + 1, dtype=np.int64)
    np.add.at(held, trades.entry_index, 1)
    np.add.at(held, trades.exit_index + 1, -1)
    return float(np.count_nonzero(np.cumsum(held[:n])) / n)


def daily_returns(
    time: NDArray[np.datetime64], bar_returns: NDArray[np.float64]
) -> tuple[NDArray[np.datetime64], NDArray[np.float64]]:
    """Per UTC calendar day that has bars: the day's date and its compounded return.

    A day with bars but no position has return 0; days without bars do not appear.
    """
    if len(time) != len(bar_returns):
        raise ConfigError(f"time has {len(time)} values but bar_returns {len(bar_returns)}.")
    if len(time) == 0:
        return np.empty(0, dtype="datetime64[D]"), np.empty(0, dtype=np.float64)
    days = np.asarray(time).astype("datetime64[D]")
    starts = np.flatnonzero(np.r_[True, days[1:] != days[:-1]])
    growth = np.multiply.reduceat(1.0 + np.asarray(bar_returns, dtype=np.float64), starts)
    return days[starts], growth - 1.0


def simulate(
    bars: Bars,
    target: NDArray[np.float64],
    *,
    stop_loss: float = 0.0,
    take_profit: float = 0.0,
    costs: Costs = Costs(),  # noqa: B008 - frozen, so a shared default is safe
    active_from: int = 0,
) -> BacktestResult:
    """Fill `target` (decided on each bar's close) on `bars` under the rules of docs/backtesting.md.

    stop_loss and take_profit are fractions of the entry fill price (0 = off). Targets on bars
    before `active_from` are treated as NaN (warm-up): the first possible fill is at the open of
    bar active_from + 1.
    """
    from runner.backtest.kernel import simulate_bars

    n = len(bars)
    target = np.ascontiguousarray(target, dtype=np.float64)
    if target.shape != (n,):
        raise ConfigError(f"target has shape {target.shape}; expected ({n},), one per bar.")
    if not (isinstance(stop_loss, int | float) and 0.0 <= stop_loss < 1.0):
        raise ConfigError(f"stop_loss must be a fraction in [0, 1), got {stop_loss!r}.")
    if not (isinstance(take_profit, int | float) and 0.0 <= take_profit < math.inf):
        raise ConfigError(f"take_profit must be a fraction >= 0, got {take_profit!r}.")
    if not (isinstance(active_from, int | np.integer) and 0 <= active_from <= n):
        raise ConfigError(f"active_from must be a bar index in [0, {n}], got {active_from!r}.")
    bad, *arrays, bar_returns = simulate_bars(
        bars.open,
        bars.high,
        bars.low,
        bars.close,
        target,
        float(stop_loss),
        float(take_profit),
        costs.fees_bps / 1e4,
        costs.slippage_bps / 1e4,
        int(active_from),
        np.empty(n, dtype=np.float64),
    )
    if bad >= 0:
        raise ConfigError(
            f"target at bar {bad} ({bars.time[bad].astype('datetime64[s]')}) is "
            f"{float(target[bad])!r}; a target must be +1, -1, 0 or NaN."
        )
    return BacktestResult(Trades(*arrays), bar_returns)


def backtest(
    strategy: Strategy,
    bars: Bars,
    params: Mapping[str, Any],
    *,
    costs: Costs = Costs(),  # noqa: B008 - frozen, so a shared default is safe
    active_from: int = 0,
) -> BacktestResult:
    """Resolve `params`, compute the strategy's signals and simulate them.

    The strategy's `stop_loss` and `take_profit` parameters, when it declares them, become the
    simulation's stop-loss and take-profit.
    """
    resolved = resolve_params(strategy, params)
    target = strategy.signals(bars, resolved)
    return simulate(
        bars,
        target,
        stop_loss=float(resolved.get("stop_loss", 0.0)),
        take_profit=float(resolved.get("take_profit", 0.0)),
        costs=costs,
        active_from=active_from,
    )
