"""Risk adjustment (runner.optimize.risk): sizing chosen on walk-forward search blocks so that the
bootstrapped one-year max drawdown stays under its threshold, inside hard bounds."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from runner.backtest import RISK_PARAMETERS, Costs, risk_kwargs
from runner.errors import ConfigError
from runner.optimize.risk import (
    RiskAdjustment,
    RiskConfig,
    adjust_risk,
    bootstrap_max_drawdowns,
    search_returns,
    stationary_bootstrap_indices,
)
from runner.optimize.walkforward import WalkForwardPlan, evaluate
from runner.strategies import Bars, Param, Strategy, load_strategy, resolve_params
from tests.python.markets import bars_from_returns, trending_market

COSTS = Costs(fees_bps=1.0, slippage_bps=1.0)
NAMES = tuple(p.name for p in RISK_PARAMETERS)


class AlwaysLong:
    """Long on every bar: its risk is the market's, so sizing is all that changes it."""

    name = "always_long"

    def parameters(self) -> Sequence[Param]:
        return ()

    def problems(self, params: Mapping[str, Any]) -> list[str]:
        return []

    def signals(self, bars: Bars, params: Mapping[str, Any]) -> NDArray[np.float64]:
        return np.ones(len(bars))


class NeverTrades(AlwaysLong):
    name = "never_trades"

    def signals(self, bars: Bars, params: Mapping[str, Any]) -> NDArray[np.float64]:
        return np.zeros(len(bars))


def regime_market(wild: float, days: int = 1300, seed: int = 3) -> Bars:
    """+0.08 % a day under 0.8 % noise; from the middle on the noise is `wild` times larger
    (the same draw, scaled, so the two markets differ by their volatility only)."""
    noise = np.random.default_rng(seed).normal(0.0, 0.008, days)
    noise[days // 2 :] *= wild
    return Bars.from_frame(bars_from_returns(0.0008 + noise, seed), symbol=f"REGIME{wild:g}")


def run(
    bars: Bars,
    config: RiskConfig = RiskConfig(),  # noqa: B008 - frozen
    strategy: Strategy | None = None,
    params: Mapping[str, Any] | None = None,
) -> RiskAdjustment:
    plan = WalkForwardPlan.build(bars, folds=5, holdout_fraction=0.2)
    return adjust_risk(strategy or AlwaysLong(), bars, params or {}, plan, COSTS, config=config)


def assert_within_bounds(result: RiskAdjustment, config: RiskConfig) -> None:
    for name in NAMES:
        low, high = config.bounds(name)
        assert low <= result.risk_params[name] <= high, (name, result.risk_params)


# --- the pieces ---------------------------------------------------------------------------------


def test_search_returns_at_default_risk_equal_the_walk_forward_evaluation() -> None:
    bars = Bars.from_frame(trending_market(days=700), symbol="T")
    plan = WalkForwardPlan.build(bars, folds=4, holdout_fraction=0.2)
    strategy = load_strategy("sma_cross")
    params = resolve_params(strategy, {"fast": 5, "slow": 20, "allow_short": True})
    expected = evaluate(strategy, bars, params, plan, COSTS, "sharpe", 252)
    target = strategy.signals(bars.slice(0, plan.search_stop), params)
    got = search_returns(bars, target, params, plan, COSTS, risk_kwargs({}), bars_per_year=252)
    assert np.array_equal(got.returns, expected.returns)
    assert np.array_equal(got.days, expected.days)
    assert got.n_trades == expected.n_trades and got.mean_size == 1.0


def test_stationary_bootstrap_keeps_blocks_of_the_mean_length() -> None:
    rng = np.random.default_rng(0)
    paths = stationary_bootstrap_indices(500, 252, 400, 8.0, rng)
    assert paths.shape == (400, 252) and paths.min() >= 0 and paths.max() < 500
    continues = paths[:, 1:] == (paths[:, :-1] + 1) % 500
    # A block continues with probability 1 - 1/8 (a fresh draw lands on the next day 1/500 of
    # the time as well).
    assert continues.mean() == pytest.approx(1 - 1 / 8 + 1 / 8 / 500, abs=0.005)
    again = stationary_bootstrap_indices(500, 252, 400, 8.0, np.random.default_rng(0))
    assert np.array_equal(paths, again)


def test_bootstrap_max_drawdowns_follow_empyrical() -> None:
    import empyrical

    rng = np.random.default_rng(1)
    returns = rng.normal(0.0, 0.02, 300)
    paths = stationary_bootstrap_indices(300, 120, 50, 5.0, rng)
    got = bootstrap_max_drawdowns(returns, paths)
    for i in range(50):
        assert got[i] == pytest.approx(-empyrical.max_drawdown(returns[paths[i]]), abs=1e-12)
    down = bootstrap_max_drawdowns(np.full(10, -0.01), np.zeros((1, 252), dtype=np.int64))
    assert down[0] == pytest.approx(1 - 0.99**252, rel=1e-12)  # a first-day loss counts
    assert bootstrap_max_drawdowns(np.full(10, 0.01), np.zeros((3, 9), dtype=np.int64)).max() == 0


# --- choosing the risk parameters ---------------------------------------------------------------


def test_a_volatile_regime_gets_a_smaller_position_under_the_threshold() -> None:
    calm = run(regime_market(wild=1.0))
    volatile = run(regime_market(wild=3.0))
    for result in (calm, volatile):
        assert result.verdict == "adjusted"
        assert result.after.drawdown_quantile is not None
        assert result.after.drawdown_quantile < 0.10 < (result.before.drawdown_quantile or 0)
        assert_within_bounds(result, RiskConfig())
    assert calm.after.mean_size is not None and volatile.after.mean_size is not None
    assert volatile.after.mean_size < 0.7 * calm.after.mean_size
    assert volatile.before.drawdown_quantile > calm.before.drawdown_quantile  # type: ignore[operator]
    assert calm.after.cagr > 0 and volatile.after.cagr > 0  # sized down, not switched off
    assert resolve_params(AlwaysLong(), calm.params) == calm.params  # a valid version


def test_sp500_in_2008_gets_a_smaller_position_than_in_2004_2006() -> None:
    from arch.data import sp500

    frame = sp500.load()[["Open", "High", "Low", "Close"]]

    def adjusted(start: str, stop: str) -> RiskAdjustment:
        return run(Bars.from_frame(frame.loc[start:stop], symbol="SPX"))

    calm = adjusted("2004-01-01", "2006-12-31")  # realised volatility about 10 % a year
    crisis = adjusted("2007-01-01", "2009-12-31")  # the search blocks include late 2008
    assert crisis.before.drawdown_quantile > 2 * calm.before.drawdown_quantile  # type: ignore[operator]
    for result in (calm, crisis):
        assert result.verdict == "adjusted"
        assert result.after.drawdown_quantile is not None and result.after.drawdown_quantile < 0.1
    assert calm.after.mean_size is not None and crisis.after.mean_size is not None
    assert crisis.after.mean_size < calm.after.mean_size < 1.0


def test_the_hard_bounds_hold_when_the_optimum_lies_outside_them() -> None:
    # A loose threshold: unconstrained, the best setting is the largest position (size 1, a
    # Kelly estimate far above 1). The bounds stop every parameter short of it.
    bars = regime_market(wild=1.0)
    config = RiskConfig(
        max_drawdown=0.9,
        vol_target_bounds=(0.3, 0.35),
        kelly_cap_bounds=(0.2, 0.3),
        max_position_bounds=(0.1, 0.25),
        daily_loss_limit_bounds=(0.04, 0.05),
        max_position_steps=3,
        vol_target_steps=1,
        daily_loss_limit_steps=1,
        bootstrap_samples=500,
    )
    result = run(bars, config)
    assert result.verdict == "adjusted"
    assert_within_bounds(result, config)
    assert result.kelly_estimate is not None and result.kelly_estimate > 1
    assert result.risk_params["kelly_cap"] == 0.3 and result.risk_params["max_position"] == 0.25
    assert result.after.mean_size is not None and result.after.mean_size <= 0.25


@pytest.mark.parametrize("seed", range(4))
def test_chosen_values_never_leave_random_bounds(seed: int) -> None:
    rng = np.random.default_rng(seed)
    bars = regime_market(wild=2.0, days=700)

    def bounds(floor: float, ceiling: float) -> tuple[float, float]:
        low, high = sorted(rng.uniform(floor, ceiling, 2).round(3))
        return float(low), float(high)

    config = RiskConfig(
        max_drawdown=float(rng.uniform(0.05, 0.3)),
        vol_target_bounds=bounds(0.0, 0.5),
        kelly_cap_bounds=bounds(0.01, 1.0),
        max_position_bounds=bounds(0.01, 1.0),
        daily_loss_limit_bounds=bounds(0.0, 0.1),
        max_position_steps=4,
        vol_target_steps=2,
        daily_loss_limit_steps=1,
        bootstrap_samples=200,
    )
    result = run(bars, config)
    if result.verdict == "rejected":
        assert result.risk_params == dict.fromkeys(NAMES, 0.0) | {
            "kelly_cap": 1.0,
            "max_position": 1.0,
        }
    else:
        assert_within_bounds(result, config)


def test_no_setting_under_the_threshold_is_rejected_and_changes_nothing() -> None:
    bars = regime_market(wild=3.0)
    config = RiskConfig(
        vol_target_bounds=(0.0, 0.0),  # off
        kelly_cap_bounds=(1.0, 1.0),
        max_position_bounds=(0.8, 1.0),  # too large for this market at a 10 % drawdown
        daily_loss_limit_bounds=(0.0, 0.0),
        bootstrap_samples=500,
    )
    params = {"max_position": 0.9}
    result = run(bars, config, params=params)
    assert result.verdict == "rejected"
    assert result.risk_params["max_position"] == 0.9 and result.params == params
    assert result.after == result.before
    assert result.reasons[0].startswith("No setting within the bounds keeps the 95% quantile")
    assert "under 10.0%" in result.reasons[0]


def test_the_best_setting_already_in_place_is_unchanged() -> None:
    bars = regime_market(wild=2.0, days=800)
    config = RiskConfig(bootstrap_samples=500, max_position_steps=9, vol_target_steps=4)
    first = run(bars, config)
    assert first.verdict == "adjusted"
    second = run(bars, config, params=first.params)
    assert second.verdict == "unchanged" and second.risk_params == first.risk_params
    assert second.before == second.after == first.after
    assert second.params == first.params


def test_a_strategy_that_never_trades_is_rejected() -> None:
    result = run(regime_market(wild=1.0, days=500), strategy=NeverTrades())
    assert result.verdict == "rejected"
    assert result.reasons == (
        "The strategy does not trade on the search blocks: there is no position to size.",
    )


def test_too_few_search_days_are_rejected_without_a_bootstrap() -> None:
    frame = bars_from_returns(np.full(60, 0.001), seed=1)
    result = run(Bars.from_frame(frame), RiskConfig(min_days=60))
    assert result.verdict == "rejected" and result.before.drawdown_quantile is None
    assert "a bootstrapped drawdown needs at least 60" in result.reasons[0]
    json.dumps(result.to_json(), allow_nan=False)  # JSON-ready: plain values, no NaN


@pytest.mark.parametrize(
    ("kwargs", "fault"),
    [
        ({"max_position_bounds": (0.0, 1.0)}, "max_position_bounds must start above 0"),
        ({"max_position_bounds": (0.5, 1.5)}, "max_position_bounds must satisfy"),
        ({"vol_target_bounds": (0.3, 0.2)}, "vol_target_bounds must satisfy"),
        ({"confidence": 1.0}, "confidence must be in (0, 1)"),
        ({"bootstrap_samples": 10}, "bootstrap_samples must be a whole number >= 100"),
    ],
)
def test_risk_config_rejects_bounds_it_could_not_honour(kwargs: dict[str, Any], fault: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(fault)):
        RiskConfig(**kwargs)
