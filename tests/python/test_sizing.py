"""Position sizing and the daily loss limit of runner.backtest (docs/backtesting.md "Sizing and
limits"): hand-checkable cases, the look-ahead guarantee, and the equity invariant with sizes."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from runner.backtest import (
    RISK_PARAMETERS,
    Costs,
    backtest,
    bars_per_year_of,
    risk_kwargs,
    simulate,
)
from runner.errors import ConfigError
from runner.strategies import Bars, Param, StrategyError, load_strategy, resolve_params

NAN = np.nan
DAILY_LOSS_LIMIT = 4  # exit reason


def bars_from_closes(closes: Sequence[float], step: Literal["h", "D"] = "D") -> Bars:
    """Each bar opens at the previous close (the first at its own close); no wicks."""
    close = np.asarray(closes, dtype=float)
    open_ = np.r_[close[0], close[:-1]]
    time = np.datetime64("2024-01-01T00:00", "ns") + np.arange(len(close)) * np.timedelta64(1, step)
    return Bars(
        "SIZE",
        time,
        open_,
        np.maximum(open_, close),
        np.minimum(open_, close),
        close,
        np.ones(len(close)),
    )


def alternating(n: int, amplitude: float, tail: Sequence[float] = ()) -> list[float]:
    """Closes from 100 whose 1-bar returns alternate +a, -a (n of them), then `tail` returns."""
    closes = [100.0]
    for i in range(n):
        closes.append(closes[-1] * (1 + (amplitude if i % 2 == 0 else -amplitude)))
    for r in tail:
        closes.append(closes[-1] * (1 + r))
    return closes


def long_from(n: int, at: int) -> NDArray[np.float64]:
    out = np.full(n, NAN)
    out[at] = 1.0
    return out


def random_walk(n: int, seed: int, step: Literal["h", "D"] = "h") -> Bars:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.r_[100.0, close[:-1]] * np.exp(rng.normal(0, 0.003, n))
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.004, n)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.004, n)))
    time = np.datetime64("2024-01-01T00:00", "ns") + np.arange(n) * np.timedelta64(1, step)
    return Bars("RW", time, open_, high, low, close, np.ones(n))


# --- fixed sizes ----------------------------------------------------------------------------------


def test_half_size_halves_the_equity_change_and_keeps_the_trade_return() -> None:
    bars = bars_from_closes([100, 100, 104, 98, 103, 103])
    target = long_from(6, 0)
    target[3] = 0.0  # long from the open of bar 1 to the open of bar 4
    costs = Costs(fees_bps=10, slippage_bps=5)
    full = simulate(bars, target, costs=costs)
    half = simulate(bars, target, costs=costs, max_position=0.5)
    assert half.trades.size.tolist() == [0.5] and full.trades.size.tolist() == [1.0]
    assert half.trades.ret.tolist() == full.trades.ret.tolist()  # per unit of price
    # On the entry bar the bar return halves exactly; after it, the gain measured from the
    # equity at entry (1) halves: half the units, same prices, half the fees.
    assert half.bar_returns[1] == pytest.approx(0.5 * full.bar_returns[1], rel=1e-13)
    equity_full = np.cumprod(1 + full.bar_returns)
    equity_half = np.cumprod(1 + half.bar_returns)
    assert equity_half - 1 == pytest.approx(0.5 * (equity_full - 1), abs=1e-14)
    assert equity_half[-1] - 1 == pytest.approx(0.5 * full.trades.ret[0], abs=1e-14)


def test_the_size_is_the_smaller_of_kelly_cap_and_max_position() -> None:
    bars = bars_from_closes([100, 101, 102, 103])
    target = long_from(4, 0)
    assert simulate(bars, target, kelly_cap=0.3, max_position=0.5).trades.size.tolist() == [0.3]
    assert simulate(bars, target, kelly_cap=0.8, max_position=0.5).trades.size.tolist() == [0.5]


# --- volatility targeting -------------------------------------------------------------------------


def test_vol_target_sizes_inversely_to_the_trailing_volatility() -> None:
    # 20 returns alternating ±1% (calm) or ±3% (wild): sample std a * sqrt(20 / 19).
    sizes = {}
    for amplitude in (0.01, 0.03):
        bars = bars_from_closes(alternating(20, amplitude, tail=[0.01, 0.0]))
        result = simulate(bars, long_from(len(bars), 20), vol_target=0.1, bars_per_year=252)
        assert result.trades.entry_index.tolist() == [21]
        sizes[amplitude] = float(result.trades.size[0])
        expected = 0.1 / (amplitude * math.sqrt(20 / 19) * math.sqrt(252))
        assert sizes[amplitude] == pytest.approx(expected, rel=1e-12)
    assert sizes[0.01] / sizes[0.03] == pytest.approx(3.0, rel=1e-12)


def test_max_position_caps_a_vol_target_that_asks_for_more() -> None:
    bars = bars_from_closes(alternating(20, 0.001, tail=[0.0]))  # 1.6 % a year: size 6 wanted
    result = simulate(bars, long_from(len(bars), 20), vol_target=0.1, max_position=0.8)
    assert result.trades.size.tolist() == [0.8]
    flat = bars_from_closes([100.0] * 22)  # zero volatility: the caps alone decide
    assert simulate(flat, long_from(22, 20), vol_target=0.1).trades.size.tolist() == [1.0]


def test_vol_target_sizes_only_on_closes_up_to_the_signal_bar() -> None:
    closes = alternating(20, 0.02, tail=[0.0, 0.0, 0.0])
    bars = bars_from_closes(closes)
    size = simulate(bars, long_from(len(bars), 20), vol_target=0.2).trades.size
    later = closes[:21] + [closes[20] * 1.5, closes[20] * 0.7, closes[20] * 2.0]
    changed = simulate(
        bars_from_closes(later), long_from(len(later), 20), vol_target=0.2, bars_per_year=252
    )
    assert changed.trades.size.tolist() == size.tolist()


def test_no_entry_before_the_volatility_window_is_full() -> None:
    bars = bars_from_closes(alternating(30, 0.01))
    too_early = simulate(bars, long_from(31, 19), vol_target=0.1)  # 19 returns known at bar 19
    assert len(too_early.trades) == 0 and not too_early.bar_returns.any()
    assert len(simulate(bars, long_from(31, 20), vol_target=0.1).trades) == 1
    assert len(simulate(bars, long_from(31, 10), vol_target=0.1, vol_window=10).trades) == 1


def test_bars_per_year_scales_with_bars_per_day() -> None:
    assert bars_per_year_of(bars_from_closes([100.0] * 10)) == 252
    assert bars_per_year_of(bars_from_closes([100.0] * 48, step="h")) == 252 * 24
    assert bars_per_year_of(bars_from_closes([100.0] * 10), periods_per_year=365) == 365


# --- daily loss limit -----------------------------------------------------------------------------


def two_days_hourly(day1: Sequence[float], day2: Sequence[float]) -> Bars:
    """Hourly bars from 2024-01-01 00:00, day 2 starting at 2024-01-02 00:00."""
    closes = np.r_[day1, day2].astype(float)
    hours = np.r_[np.arange(len(day1)), 24 + np.arange(len(day2))]
    time = np.datetime64("2024-01-01T00:00", "ns") + hours * np.timedelta64(1, "h")
    open_ = np.r_[closes[0], closes[:-1]]
    return Bars(
        "DLL",
        time,
        open_,
        np.maximum(open_, closes),
        np.minimum(open_, closes),
        closes,
        np.ones(len(closes)),
    )


def test_daily_loss_limit_closes_at_the_next_open_and_stops_the_day() -> None:
    # Long from the open of bar 1 (100); the close of bar 3 is 3 % down on the day: the position
    # closes at the open of bar 4 (97 less slippage). A +1 on bar 5 (same day) is ignored; the
    # +1 on bar 8 (the next day's first bar) fills at the open of bar 9.
    bars = two_days_hourly([100, 100, 99, 97, 98, 99, 100, 101], [101, 102, 103, 104])
    target = np.full(len(bars), NAN)
    target[0], target[5], target[8] = 1.0, 1.0, 1.0
    costs = Costs(slippage_bps=10)
    result = simulate(bars, target, daily_loss_limit=0.02, costs=costs)
    t = result.trades
    assert t.entry_index.tolist() == [1, 9]
    assert t.exit_index.tolist() == [4, 11]
    assert t.exit_reason.tolist() == [DAILY_LOSS_LIMIT, 3]
    assert t.exit_price[0] == pytest.approx(97 * (1 - 0.001), rel=1e-15)
    assert not result.bar_returns[5:9].any()  # flat for the rest of day 1 and bar 8
    unlimited = simulate(bars, target, costs=costs)
    assert unlimited.trades.exit_reason.tolist() == [3]  # held to the end without the limit


def test_a_daily_loss_limit_exit_reads_as_such_in_the_records() -> None:
    bars = two_days_hourly([100, 100, 97, 97], [97, 98])
    records = simulate(bars, long_from(6, 0), daily_loss_limit=0.02).trades.to_records(bars)
    assert [r["exit_reason"] for r in records] == ["daily_loss_limit"]
    assert records[0]["exit_time"] == "2024-01-01T03:00:00"


def test_a_loss_under_the_limit_changes_nothing() -> None:
    bars = two_days_hourly([100, 100, 99, 98.5, 99, 100], [101, 102])
    target = long_from(len(bars), 0)
    limited = simulate(bars, target, daily_loss_limit=0.02)
    plain = simulate(bars, target)
    assert np.array_equal(limited.bar_returns, plain.bar_returns)


def test_the_days_loss_counts_from_the_days_starting_equity() -> None:
    # Day 1 ends 5 % up (equity 1.05); day 2 drops to 102.9: 2 % off the day's start, 2.9 %
    # above the entry. A 1.5 % limit fires on day 2 although the trade is still in profit.
    bars = two_days_hourly([100, 100, 102, 105], [104, 102.9, 104, 105])
    result = simulate(bars, long_from(8, 0), daily_loss_limit=0.015)
    assert result.trades.exit_index.tolist() == [6]
    assert result.trades.exit_reason.tolist() == [DAILY_LOSS_LIMIT]
    assert result.trades.ret[0] > 0


def test_a_stop_loss_that_reaches_the_limit_blocks_the_days_entries() -> None:
    bars = two_days_hourly([100, 100, 96, 97, 98, 99], [99, 100, 101])
    target = np.full(len(bars), NAN)
    target[0], target[3] = 1.0, 1.0
    result = simulate(bars, target, stop_loss=0.03, daily_loss_limit=0.02)
    assert result.trades.exit_reason.tolist() == [1]  # the stop; no re-entry on day 1
    assert len(simulate(bars, target, stop_loss=0.03).trades) == 2


def test_on_daily_bars_the_limit_exits_at_the_next_days_open() -> None:
    bars = bars_from_closes([100, 100, 95, 96, 97])
    target = np.full(5, 1.0)  # a strategy that repeats +1 every bar
    result = simulate(bars, target, daily_loss_limit=0.04)
    t = result.trades
    # Long at the open of bar 1; bar 2 closes 5 % down; out at the open of bar 3 (95), the
    # target of bar 2 dropped; bar 3's +1 re-enters at the open of bar 4.
    assert t.entry_index.tolist() == [1, 4] and t.exit_index.tolist() == [3, 4]
    assert t.exit_reason.tolist() == [DAILY_LOSS_LIMIT, 3]
    assert t.exit_price[0] == 95


# --- the equity invariant ---------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    density=st.sampled_from([0.05, 0.3, 1.0]),
    stop_loss=st.sampled_from([0.0, 0.005]),
    max_position=st.sampled_from([1.0, 0.7, 0.25]),
    vol_target=st.sampled_from([0.0, 0.05, 0.3]),
    daily_loss_limit=st.sampled_from([0.0, 0.004, 0.02]),
    fees_bps=st.sampled_from([0.0, 3.0]),
    slippage_bps=st.sampled_from([0.0, 2.0]),
)
def test_compounded_bar_returns_equal_compounded_sized_trade_returns(
    seed: int,
    density: float,
    stop_loss: float,
    max_position: float,
    vol_target: float,
    daily_loss_limit: float,
    fees_bps: float,
    slippage_bps: float,
) -> None:
    """prod(1 + bar returns) = prod over trades of (1 + size · trade return), costs included."""
    bars = random_walk(400, seed)
    rng = np.random.default_rng(seed + 1)
    target = rng.choice([-1.0, 0.0, 1.0], 400)
    target[rng.random(400) > density] = NAN
    result = simulate(
        bars,
        target,
        stop_loss=stop_loss,
        costs=Costs(fees_bps, slippage_bps),
        max_position=max_position,
        vol_target=vol_target,
        daily_loss_limit=daily_loss_limit,
    )
    t = result.trades
    assert np.prod(1 + result.bar_returns) == pytest.approx(np.prod(1 + t.size * t.ret), rel=1e-11)
    assert np.all((t.size > 0) & (t.size <= max_position))
    assert np.all(t.entry_index[1:] >= t.exit_index[:-1])
    held = np.zeros(len(bars), dtype=bool)
    for entry, exit_ in zip(t.entry_index, t.exit_index, strict=True):
        held[entry : exit_ + 1] = True
    assert np.all(result.bar_returns[~held] == 0.0)


def test_trade_by_trade_equity_is_the_product_of_sized_trade_returns() -> None:
    bars = random_walk(600, seed=7)
    target = np.tile([1.0, NAN, NAN, 0.0, NAN, -1.0, NAN, NAN, NAN, 0.0], 60)
    result = simulate(bars, target, costs=Costs(5, 2), vol_target=0.08, max_position=0.9)
    t = result.trades
    equity = np.cumprod(1 + result.bar_returns)
    assert len(t) > 50 and len(np.unique(t.size)) > 10
    for k in range(len(t)):  # non-overlapping: each trade moves equity by 1 + size * ret
        before = equity[t.entry_index[k] - 1]
        assert equity[t.exit_index[k]] / before == pytest.approx(1 + t.size[k] * t.ret[k], 1e-12)


# --- parameters ---------------------------------------------------------------------------------


def test_defaults_reproduce_the_unsized_backtest_bit_for_bit() -> None:
    bars = random_walk(1500, seed=3, step="D")
    strategy = load_strategy("sma_cross")
    params = {"fast": 5, "slow": 20, "stop_loss": 0.01, "allow_short": True}
    explicit = {p.name: p.default for p in RISK_PARAMETERS}
    plain = backtest(strategy, bars, params, costs=Costs(2, 1))
    defaults = backtest(strategy, bars, {**params, **explicit}, costs=Costs(2, 1))
    assert np.array_equal(plain.bar_returns, defaults.bar_returns)
    assert np.array_equal(plain.trades.ret, defaults.trades.ret)
    assert np.all(plain.trades.size == 1.0)


def test_backtest_passes_the_risk_parameters_through() -> None:
    bars = random_walk(1500, seed=4, step="D")
    strategy = load_strategy("sma_cross")
    params = {"fast": 5, "slow": 20, "max_position": 0.4, "vol_target": 0.1}
    result = backtest(strategy, bars, params)
    resolved = resolve_params(strategy, params)
    direct = simulate(bars, strategy.signals(bars, resolved), **risk_kwargs(resolved))
    assert np.array_equal(result.bar_returns, direct.bar_returns)
    assert len(result.trades) > 10 and result.trades.size.max() <= 0.4


def test_resolve_params_accepts_risk_parameters_for_every_strategy() -> None:
    for name in ("sma_cross", "donchian_breakout"):
        strategy = load_strategy(name)
        resolved = resolve_params(strategy, {"max_position": "0.5", "daily_loss_limit": 0})
        assert list(resolved)[-2:] == ["max_position", "daily_loss_limit"]
        assert resolved["max_position"] == 0.5 and type(resolved["daily_loss_limit"]) is float
        assert "vol_target" not in resolved  # absent: the default, which changes nothing
        assert risk_kwargs(resolved) == {
            "vol_target": 0.0,
            "kelly_cap": 1.0,
            "max_position": 0.5,
            "daily_loss_limit": 0.0,
        }


def test_resolve_params_reports_bad_risk_parameters_with_the_rest() -> None:
    strategy = load_strategy("sma_cross")
    with pytest.raises(StrategyError) as caught:
        resolve_params(
            strategy,
            {"fast": 50, "slow": 20, "max_position": 0, "vol_target": 2.0, "kelly_cap": "x"},
        )
    assert caught.value.problems == [
        "vol_target = 2.0 is above its maximum 1",
        "kelly_cap = 'x' is not a number",
        "max_position = 0.0 must be above 0 (a fraction of equity in (0, 1])",
    ]


class DeclaresMaxPosition:
    name = "declares_max_position"

    def parameters(self) -> Sequence[Param]:
        return (Param("max_position", "float", 1.0, 0.0, 5.0),)

    def problems(self, params: Mapping[str, Any]) -> list[str]:
        return []

    def signals(self, bars: Bars, params: Mapping[str, Any]) -> NDArray[np.float64]:
        return np.full(len(bars), 1.0)


def test_a_strategy_may_not_declare_a_risk_parameter() -> None:
    with pytest.raises(StrategyError, match="'max_position' is a risk parameter common"):
        load_strategy(f"{__name__}:DeclaresMaxPosition")


@pytest.mark.parametrize(
    ("kwargs", "fault"),
    [
        ({"max_position": 0.0}, "max_position must be a fraction in (0, 1]"),
        ({"max_position": 1.5}, "max_position must be a fraction in (0, 1]"),
        ({"kelly_cap": -0.1}, "kelly_cap must be a fraction in (0, 1]"),
        ({"vol_target": math.nan}, "vol_target must be a number >= 0"),
        ({"daily_loss_limit": 1.0}, "daily_loss_limit must be a fraction in [0, 1)"),
        ({"vol_window": 1}, "vol_window must be a whole number of bars >= 2"),
        ({"bars_per_year": 0.0}, "bars_per_year must be a number > 0"),
    ],
)
def test_simulate_rejects_risk_arguments_out_of_range(kwargs: dict[str, Any], fault: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(fault)):
        simulate(bars_from_closes([100, 101]), np.zeros(2), **kwargs)
