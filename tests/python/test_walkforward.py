"""The walk-forward plan and the objectives, on bars with known shapes (no warehouse)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from runner.backtest import Costs
from runner.errors import ConfigError
from runner.optimize.walkforward import WalkForwardPlan, evaluate, holdout_returns, score
from runner.strategies import Bars, load_strategy, resolve_params
from tests.python.markets import trending_market


def hourly_bars(days: int) -> Bars:
    """Seven bars a day on business days: blocks must never split a day."""
    times = pd.bdate_range("2020-01-01", periods=days).repeat(7) + pd.to_timedelta(
        np.tile(np.arange(9, 16), days), unit="h"
    )
    close = 100 * np.cumprod(1 + np.random.default_rng(0).normal(0, 0.002, len(times)))
    frame = pd.DataFrame(
        {"open": close, "high": close * 1.001, "low": close * 0.999, "close": close}, index=times
    )
    return Bars.from_frame(frame, symbol="H")


def test_blocks_cover_whole_days_and_the_holdout_is_last() -> None:
    bars = hourly_bars(300)
    plan = WalkForwardPlan.build(bars, folds=5, holdout_fraction=0.2)
    days = bars.time.astype("datetime64[D]")
    edges = [b.start for b in plan.folds] + [plan.holdout.start]
    for edge in edges:
        assert days[edge] != days[edge - 1]  # a block starts on a new day
    assert [b.stop for b in plan.folds[:-1]] == [b.start for b in plan.folds[1:]]
    assert plan.folds[-1].stop == plan.holdout.start and plan.holdout.stop == len(bars)
    assert len(np.unique(days[plan.holdout.start :])) == 60  # 20 % of 300 days
    sizes = {len(np.unique(days[b.start : b.stop])) for b in plan.folds}
    assert sizes == {40}  # 240 search days / (5 + 1) blocks; block 0 is history


def test_too_few_days_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="too few for 5 walk-forward folds"):
        WalkForwardPlan.build(hourly_bars(30), folds=5, holdout_fraction=0.2)


def test_each_fold_starts_flat_and_the_grid_has_every_search_day() -> None:
    bars = Bars.from_frame(trending_market(days=600), symbol="T")
    plan = WalkForwardPlan.build(bars, folds=4, holdout_fraction=0.2)
    strategy = load_strategy("sma_cross")
    params = resolve_params(strategy, {"fast": 5, "slow": 20, "allow_short": True})
    result = evaluate(strategy, bars, params, plan, Costs(), "sharpe", 252)
    assert len(result.fold_scores) == 4 and result.score == pytest.approx(
        np.mean(result.fold_scores)
    )
    assert len(result.returns) == plan.search_stop - plan.folds[0].start  # daily bars: one per day
    for block in plan.folds:  # flat on each fold's first day: no position carried over
        first = block.start - plan.folds[0].start
        assert result.returns[first] == 0.0
    days, returns, trades = holdout_returns(strategy, bars, params, plan, Costs())
    assert len(days) == len(bars) - plan.holdout.start and len(trades) > 0


def test_a_fold_can_stop_the_evaluation_early() -> None:
    bars = Bars.from_frame(trending_market(days=600), symbol="T")
    plan = WalkForwardPlan.build(bars, folds=4, holdout_fraction=0.2)
    strategy = load_strategy("sma_cross")
    seen: list[int] = []

    class Pruned(Exception):
        pass

    def after_fold(k: int, value: float) -> None:
        seen.append(k)
        if k == 1:
            raise Pruned

    with pytest.raises(Pruned):
        evaluate(
            strategy, bars, resolve_params(strategy, {}), plan, Costs(), "sharpe", 252, after_fold
        )
    assert seen == [0, 1]


def test_objectives_on_known_series() -> None:
    steady = np.full(100, 0.001)
    steady[::10] = -0.0005
    noisy = np.random.default_rng(3).normal(0.0005, 0.01, 250)
    assert score(noisy, np.array([]), "sharpe", 252) == pytest.approx(
        noisy.mean() / noisy.std(ddof=1) * np.sqrt(252)
    )
    assert score(steady, np.array([]), "sharpe", 252) == 10.0  # capped: finite for TPE
    assert score(np.zeros(50), np.array([]), "sharpe", 252) == 0.0  # never traded: no edge
    assert score(np.full(30, 0.01), np.array([]), "sortino", 252) == 10.0  # capped, finite
    losing = -np.abs(np.random.default_rng(1).normal(0, 0.01, 60))
    assert score(losing, np.array([-0.01]), "calmar", 252) < 0
    trades = np.array([0.02, -0.01, 0.03])
    assert score(steady, trades, "expectancy", 252) == pytest.approx(
        (trades.mean() - 0.0005 / 3) * 100
    )
