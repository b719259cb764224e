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

from runner.backtest.risk import VOL_WINDOW, bars_per_year_of, check_risk, risk_kwargs
from runner.errors import ConfigError
from runner.strategies.base import Bars, Strategy, resolve_params

EXIT_REASONS = ("signal", "stop_loss", "take_profit", "end_of_data", "daily_loss_limit")
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

    Prices are the actual fills (slippage included); `ret` is the trade's return per unit of
    price, net of fees: side * (exit / entry - 1) - fee * (1 + exit / entry), fee = fees_bps / 1e4
    (backtesting.py's relative commission, charged on the entry and exit notional). `size` is the
    position as a fraction of the equity at entry (1 unless sized), so the trade moves equity by
    a factor 1 + size * ret.
    """

    entry_index: NDArray[np.int64]
    exit_index: NDArray[np.int64]
    entry_price: NDArray[np.float64]
    exit_price: NDArray[np.float64]
    side: NDArray[np.int8]
    ret: NDArray[np.float64]
    exit_reason: NDArray[np.int8]
    size: NDArray[np.float64]

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

    A position holds `size` times the equity at entry, so prod(1 + bar_returns) equals
    prod(1 + trades.size * trades.ret) (to rounding).
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
    vol_target: float = 0.0,
    kelly_cap: float = 1.0,
    max_position: float = 1.0,
    daily_loss_limit: float = 0.0,
    vol_window: int = VOL_WINDOW,
    bars_per_year: float | None = None,
) -> BacktestResult:
    """Fill `target` (decided on each bar's close) on `bars` under the rules of docs/backtesting.md.

    stop_loss and take_profit are fractions of the entry fill price (0 = off). Targets on bars
    before `active_from` are treated as NaN (warm-up): the first possible fill is at the open of
    bar active_from + 1. The risk arguments (runner.backtest.risk.RISK_PARAMETERS; their defaults
    change nothing) size each entry at min(kelly_cap, max_position, vol_target / annualised
    trailing volatility over `vol_window` bars) and stop a day at `daily_loss_limit`;
    `bars_per_year` annualises the volatility (None: 252 × bars per UTC day of `bars`).
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
    if bars_per_year is None:
        # Counting days costs ~2 ms on a year of minutes: only when the volatility is used.
        sized = isinstance(vol_target, int | float) and vol_target > 0
        bars_per_year = (bars_per_year_of(bars) if sized else 0.0) or float(PERIODS_PER_YEAR)
    issues = check_risk(
        vol_target, kelly_cap, max_position, daily_loss_limit, vol_window, bars_per_year
    )
    if issues:
        raise ConfigError("; ".join(issues) + ".")
    use_days = daily_loss_limit > 0
    day = (
        bars.time.astype("datetime64[D]").view(np.int64)
        if use_days
        else np.empty(0, dtype=np.int64)
    )
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
        float(min(kelly_cap, max_position)),
        float(vol_target),
        int(vol_window),
        float(bars_per_year),
        day,
        float(daily_loss_limit) if use_days else None,
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
    vol_window: int = VOL_WINDOW,
    bars_per_year: float | None = None,
) -> BacktestResult:
    """Resolve `params`, compute the strategy's signals and simulate them.

    The strategy's `stop_loss` and `take_profit` parameters, when it declares them, become the
    simulation's stop-loss and take-profit; the risk parameters in `params` (vol_target,
    kelly_cap, max_position, daily_loss_limit) its sizing and daily loss limit.
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
        vol_window=vol_window,
        bars_per_year=bars_per_year,
        **risk_kwargs(resolved),
    )
