"""Walk-forward evaluation of one parameter set: rolling test blocks, daily P&L on one grid.

The bars a study sees are cut by calendar day (so a day never straddles two blocks) into a search
region and a final holdout. The search region is split into `folds + 1` equal blocks of days:
block 0 is history only; blocks 1..folds are the test blocks. Signals are computed once on all
bars up to the end of the search region (strategies are causal, so each block sees only its past);
each test block is then simulated on its own, starting flat, and scored on its daily returns.
The holdout is never touched by the search: only the final candidate and the incumbent run on it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from runner.backtest import (
    VOL_WINDOW,
    Costs,
    bars_per_year_of,
    daily_returns,
    risk_kwargs,
    simulate,
)
from runner.errors import ConfigError
from runner.strategies import Bars, Strategy

Objective = Literal["sharpe", "sortino", "calmar", "expectancy"]

# Scores are capped so that a block with no losing day cannot reach infinity (the pruner and
# TPE need finite values); a cap this high never decides between two real strategies.
_SCORE_CAP = 10.0


@dataclass(frozen=True)
class Block:
    """Bars [start, stop) covering whole calendar days."""

    start: int
    stop: int


@dataclass(frozen=True)
class WalkForwardPlan:
    folds: tuple[Block, ...]
    holdout: Block

    @property
    def search_stop(self) -> int:
        return self.folds[-1].stop

    @classmethod
    def build(
        cls, bars: Bars, folds: int, holdout_fraction: float, min_days_per_block: int = 5
    ) -> WalkForwardPlan:
        """Cut `bars` into folds + 1 search blocks and a holdout, on day boundaries."""
        days = bars.time.astype("datetime64[D]")
        starts = np.flatnonzero(np.r_[True, days[1:] != days[:-1]])  # first bar of each day
        n_days = len(starts)
        holdout_days = max(min_days_per_block, math.ceil(n_days * holdout_fraction))
        search_days = n_days - holdout_days
        block_days = search_days // (folds + 1)
        if block_days < min_days_per_block:
            raise ConfigError(
                f"{bars.symbol or 'The bars'}: {n_days} days of bars are too few for {folds} "
                f"walk-forward folds and a {holdout_fraction:.0%} holdout (each block needs "
                f"{min_days_per_block} days); load more bars or lower TRADEBASE_OPTIMIZE_FOLDS."
            )
        # The oldest days that do not fill a whole block go to history (block 0 grows).
        first = search_days - folds * block_days
        edges = [first + k * block_days for k in range(folds + 1)]
        bar_edges = [int(starts[d]) for d in edges]
        fold_blocks = tuple(Block(bar_edges[k], bar_edges[k + 1]) for k in range(folds))
        holdout = Block(int(starts[search_days]), len(bars))
        return cls(folds=fold_blocks, holdout=holdout)


@dataclass(frozen=True)
class Evaluation:
    """One parameter set on the test blocks: a score per fold and the daily P&L on the grid."""

    fold_scores: tuple[float, ...]
    days: NDArray[np.datetime64]
    returns: NDArray[np.float64]
    n_trades: int

    @property
    def score(self) -> float:
        return float(np.mean(self.fold_scores)) if self.fold_scores else 0.0


def _max_drawdown(returns: NDArray[np.float64]) -> float:
    if len(returns) == 0:
        return 0.0
    equity = np.cumprod(1.0 + returns)
    peak = np.maximum.accumulate(np.maximum(equity, 1.0))
    return float(np.max(1.0 - equity / peak))


def score(
    returns: NDArray[np.float64],
    trade_returns: NDArray[np.float64],
    objective: Objective,
    periods_per_year: int,
) -> float:
    """The objective on one block's daily returns (annualised); 0 when undefined (no trading)."""
    if len(returns) < 2:
        return 0.0
    mean = float(np.mean(returns))
    if objective == "sharpe":
        sd = float(np.std(returns, ddof=1))
        value = mean / sd * math.sqrt(periods_per_year) if sd > 0 else 0.0
    elif objective == "sortino":
        downside = float(np.sqrt(np.mean(np.minimum(returns, 0.0) ** 2)))
        if downside > 0:
            value = mean / downside * math.sqrt(periods_per_year)
        else:
            value = _SCORE_CAP if mean > 0 else 0.0
    elif objective == "calmar":
        growth = float(np.prod(1.0 + returns))
        annual = growth ** (periods_per_year / len(returns)) - 1.0
        drawdown = _max_drawdown(returns)
        value = annual / drawdown if drawdown > 0 else (_SCORE_CAP if annual > 0 else 0.0)
    else:  # expectancy: mean net return per trade, less the block's drawdown per trade
        if len(trade_returns) == 0:
            return 0.0
        value = (float(np.mean(trade_returns)) - _max_drawdown(returns) / len(trade_returns)) * 100
    return float(np.clip(value, -_SCORE_CAP, _SCORE_CAP))


def run_block(
    strategy: Strategy,
    bars: Bars,
    target: NDArray[np.float64],
    params: Mapping[str, Any],
    block: Block,
    costs: Costs,
    periods_per_year: int = 252,
) -> tuple[NDArray[np.datetime64], NDArray[np.float64], NDArray[np.float64]]:
    """Simulate one block, starting flat: its days, daily returns and per-trade returns.

    The simulation starts VOL_WINDOW bars early with trading off (`active_from`), so that
    volatility targeting sizes the block's first trade from past bars only; those warm-up bars
    are not part of the block's returns. With the risk parameters at their defaults this is
    exactly a simulation of the block alone.
    """
    lead = min(VOL_WINDOW, block.start)
    window = bars.slice(block.start - lead, block.stop)
    result = simulate(
        window,
        target[block.start - lead : block.stop],
        stop_loss=float(params.get("stop_loss", 0.0) or 0.0),
        take_profit=float(params.get("take_profit", 0.0) or 0.0),
        costs=costs,
        active_from=lead,
        bars_per_year=bars_per_year_of(bars, periods_per_year),
        **risk_kwargs(params),
    )
    days, returns = daily_returns(window.time[lead:], result.bar_returns[lead:])
    return days, returns, result.trades.ret * result.trades.size


def evaluate(
    strategy: Strategy,
    bars: Bars,
    params: Mapping[str, Any],
    plan: WalkForwardPlan,
    costs: Costs,
    objective: Objective,
    periods_per_year: int,
    after_fold: Callable[[int, float], None] | None = None,
) -> Evaluation:
    """Score `params` on every test block; `after_fold(k, score)` may raise to stop early (pruning)."""
    target = strategy.signals(bars.slice(0, plan.search_stop), params)
    scores: list[float] = []
    all_days: list[NDArray[np.datetime64]] = []
    all_returns: list[NDArray[np.float64]] = []
    n_trades = 0
    for k, block in enumerate(plan.folds):
        days, returns, trade_returns = run_block(
            strategy, bars, target, params, block, costs, periods_per_year
        )
        value = score(returns, trade_returns, objective, periods_per_year)
        scores.append(value)
        all_days.append(days)
        all_returns.append(returns)
        n_trades += len(trade_returns)
        if after_fold is not None:
            after_fold(k, value)
    return Evaluation(
        fold_scores=tuple(scores),
        days=np.concatenate(all_days),
        returns=np.concatenate(all_returns),
        n_trades=n_trades,
    )


def holdout_returns(
    strategy: Strategy,
    bars: Bars,
    params: Mapping[str, Any],
    plan: WalkForwardPlan,
    costs: Costs,
    periods_per_year: int = 252,
) -> tuple[NDArray[np.datetime64], NDArray[np.float64], NDArray[np.float64]]:
    """Daily and per-trade returns of `params` on the untouched final block."""
    target = strategy.signals(bars, params)
    return run_block(strategy, bars, target, params, plan.holdout, costs, periods_per_year)


def summary(
    returns: NDArray[np.float64],
    trade_returns: Sequence[float] | NDArray[np.float64],
    periods_per_year: int,
) -> dict[str, float | int | None]:
    """The numbers a person reads about a block: Sharpe, total return, drawdown, trades (win rate
    None without trades: unknown, not zero)."""
    trades = np.asarray(trade_returns, dtype=np.float64)
    return {
        "days": len(returns),
        "sharpe": score(returns, trades, "sharpe", periods_per_year),
        "total_return": float(np.prod(1.0 + returns) - 1.0) if len(returns) else 0.0,
        "max_drawdown": _max_drawdown(returns),
        "n_trades": len(trades),
        "win_rate": float(np.mean(trades > 0)) if len(trades) else None,
    }
