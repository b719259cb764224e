"""The fill rules of runner.backtest, each on a hand-built bar sequence with a known answer, plus
the equity invariants (prod of bar returns = prod of trade returns) and the metrics."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.backtest import BacktestResult, Costs, backtest, daily_returns, simulate
from runner.errors import ConfigError
from runner.strategies import Bars, load_strategy

NAN = np.nan
SIGNAL, STOP_LOSS, TAKE_PROFIT, END_OF_DATA = 0, 1, 2, 3


def bars_of(*ohlc: tuple[float, float, float, float], step: Literal["h", "D"] = "D") -> Bars:
    """Bars from (open, high, low, close) rows, one per day (or hour) from 2024-01-01."""
    o, h, low, c = (np.array(col, dtype=float) for col in zip(*ohlc, strict=True))
    time = np.datetime64("2024-01-01T00:00", "ns") + np.arange(len(o)) * np.timedelta64(1, step)
    return Bars("TEST", time, o, h, low, c, np.ones(len(o)))


def targets(n: int, **at: float) -> np.ndarray:
    """NaN everywhere except target[i] for each t<i>=value given."""
    out = np.full(n, NAN)
    for key, value in at.items():
        out[int(key.removeprefix("t"))] = value
    return out


def flat(price: float) -> tuple[float, float, float, float]:
    return (price, price, price, price)


def only_trade(result: BacktestResult) -> dict[str, float]:
    assert len(result.trades) == 1
    t = result.trades
    return {
        "entry_index": int(t.entry_index[0]),
        "exit_index": int(t.exit_index[0]),
        "entry_price": float(t.entry_price[0]),
        "exit_price": float(t.exit_price[0]),
        "side": int(t.side[0]),
        "ret": float(t.ret[0]),
        "exit_reason": int(t.exit_reason[0]),
    }


def test_target_decided_on_a_close_fills_at_the_next_open() -> None:
    bars = bars_of(flat(100), flat(101), (102, 103, 101, 102.5), flat(104), (105, 106, 104, 105))
    result = simulate(bars, targets(5, t1=1, t3=0))
    assert only_trade(result) == {
        "entry_index": 2,
        "exit_index": 4,
        "entry_price": 102.0,
        "exit_price": 105.0,
        "side": 1,
        "ret": 105 / 102 - 1,
        "exit_reason": SIGNAL,
    }


def test_bar_returns_mark_the_position_to_each_close() -> None:
    bars = bars_of(flat(100), (100, 103, 99, 102), (102, 102, 100, 101), flat(101))
    result = simulate(bars, targets(4, t0=1, t2=0))
    assert result.bar_returns == pytest.approx([0.0, 0.02, 101 / 102 - 1, 0.0], abs=1e-15)


def test_a_long_stop_inside_the_bar_fills_at_the_stop_level() -> None:
    bars = bars_of(flat(100), flat(100), (100, 101, 94, 96), flat(96))
    trade = only_trade(simulate(bars, targets(4, t0=1), stop_loss=0.05))
    assert (trade["exit_index"], trade["exit_price"], trade["exit_reason"]) == (2, 95.0, STOP_LOSS)
    assert trade["ret"] == pytest.approx(-0.05, abs=1e-15)


def test_a_gap_through_the_stop_fills_at_the_open() -> None:
    bars = bars_of(flat(100), flat(100), (90, 92, 88, 91), flat(91))
    trade = only_trade(simulate(bars, targets(4, t0=1), stop_loss=0.05))
    assert (trade["exit_index"], trade["exit_price"], trade["exit_reason"]) == (2, 90.0, STOP_LOSS)


def test_stops_are_checked_on_the_entry_bar_itself() -> None:
    bars = bars_of(flat(100), (100, 100.5, 97, 99), flat(99))
    trade = only_trade(simulate(bars, targets(3, t0=1), stop_loss=0.02))
    assert (trade["entry_index"], trade["exit_index"], trade["exit_price"]) == (1, 1, 98.0)


def test_when_stop_and_take_profit_are_both_touched_the_stop_counts() -> None:
    bars = bars_of(flat(100), flat(100), (100, 111, 89, 100), flat(100))
    trade = only_trade(simulate(bars, targets(4, t0=1), stop_loss=0.1, take_profit=0.1))
    assert (trade["exit_price"], trade["exit_reason"]) == (90.0, STOP_LOSS)


def test_take_profit_fills_at_its_level_or_at_a_better_gap_open() -> None:
    inside = bars_of(flat(100), flat(100), (101, 112, 100, 105), flat(105))
    trade = only_trade(simulate(inside, targets(4, t0=1), take_profit=0.1))
    assert (trade["exit_index"], trade["exit_price"], trade["exit_reason"]) == (
        2,
        110.00000000000001,  # 100 * (1 + 0.1) in binary floating point
        TAKE_PROFIT,
    )
    gap = bars_of(flat(100), flat(100), (115, 116, 113, 114), flat(114))
    trade = only_trade(simulate(gap, targets(4, t0=1), take_profit=0.1))
    assert (trade["exit_price"], trade["exit_reason"]) == (115.0, TAKE_PROFIT)


def test_a_short_gains_when_the_price_falls_and_stops_above_the_entry() -> None:
    falling = bars_of(flat(100), flat(100), (99, 99, 94, 95), flat(90))
    trade = only_trade(simulate(falling, targets(4, t0=-1, t2=0)))
    assert (trade["side"], trade["exit_index"], trade["exit_price"]) == (-1, 3, 90.0)
    assert trade["ret"] == pytest.approx(0.1, abs=1e-15)
    rising = bars_of(flat(100), flat(100), (101, 106, 100, 105), (108, 109, 107, 108))
    trade = only_trade(simulate(rising, targets(4, t0=-1), stop_loss=0.05, take_profit=0.05))
    assert (trade["exit_index"], trade["exit_price"], trade["exit_reason"]) == (2, 105.0, STOP_LOSS)
    assert trade["ret"] == pytest.approx(-0.05, abs=1e-15)
    gap = bars_of(flat(100), flat(100), (110, 111, 109, 110), flat(110))
    trade = only_trade(simulate(gap, targets(4, t0=-1), stop_loss=0.05))
    assert (trade["exit_price"], trade["exit_reason"]) == (110.0, STOP_LOSS)
    target_gap = bars_of(flat(100), flat(100), (80, 81, 79, 80), flat(80))
    trade = only_trade(simulate(target_gap, targets(4, t0=-1), take_profit=0.1))
    assert (trade["exit_price"], trade["exit_reason"]) == (80.0, TAKE_PROFIT)


def test_a_reversal_closes_and_opens_at_the_same_open() -> None:
    bars = bars_of(flat(100), flat(100), flat(104), flat(102), flat(101))
    result = simulate(bars, targets(5, t0=1, t1=1, t2=-1))
    t = result.trades
    assert list(t.entry_index) == [1, 3] and list(t.exit_index) == [3, 4]
    assert list(t.side) == [1, -1]
    assert list(t.exit_price) == [102.0, 101.0]
    assert list(t.exit_reason) == [SIGNAL, END_OF_DATA]


def test_a_repeated_target_holds_and_nan_keeps_the_position() -> None:
    bars = bars_of(*(flat(100 + i) for i in range(6)))
    result = simulate(bars, targets(6, t0=1, t1=1, t3=1, t4=0))
    assert only_trade(result)["entry_index"] == 1
    assert only_trade(result)["exit_index"] == 5


def test_after_a_stop_the_position_stays_flat_until_a_new_target() -> None:
    bars = bars_of(flat(100), flat(100), (100, 100, 90, 92), flat(93), flat(94), flat(95))
    nan_after = simulate(bars, targets(6, t0=1), stop_loss=0.05)
    assert only_trade(nan_after)["exit_reason"] == STOP_LOSS
    assert nan_after.bar_returns[3:].tolist() == [0.0, 0.0, 0.0]
    flat_after = simulate(bars, targets(6, t0=1, t3=0), stop_loss=0.05)
    assert len(flat_after.trades) == 1
    again = simulate(bars, targets(6, t0=1, t3=1), stop_loss=0.05)
    assert list(again.trades.entry_index) == [1, 4]


def test_a_position_open_at_the_end_closes_at_the_last_close() -> None:
    bars = bars_of(flat(100), flat(100), (101, 103, 100, 102.5))
    trade = only_trade(simulate(bars, targets(3, t0=1), costs=Costs(slippage_bps=10)))
    assert trade["exit_index"] == 2 and trade["exit_reason"] == END_OF_DATA
    assert trade["exit_price"] == pytest.approx(102.5 * (1 - 0.001), rel=1e-15)


def test_a_target_on_the_last_bar_is_never_filled() -> None:
    bars = bars_of(flat(100), flat(100), flat(101))
    assert len(simulate(bars, targets(3, t2=1)).trades) == 0


def test_fees_are_charged_on_both_notionals_and_slippage_worsens_both_fills() -> None:
    bars = bars_of(flat(100), flat(100), flat(104), flat(110))
    costs = Costs(fees_bps=10, slippage_bps=5)
    long = only_trade(simulate(bars, targets(4, t0=1, t1=0), costs=costs))
    entry, exit_ = 100 * 1.0005, 104 * 0.9995
    assert long["entry_price"] == pytest.approx(entry, rel=1e-15)
    assert long["exit_price"] == pytest.approx(exit_, rel=1e-15)
    x = exit_ / entry
    assert long["ret"] == pytest.approx((x - 1) - 0.001 * (1 + x), rel=1e-12)
    short = only_trade(simulate(bars, targets(4, t0=-1, t1=0), costs=costs))
    entry, exit_ = 100 * 0.9995, 104 * 1.0005
    x = exit_ / entry
    assert (short["entry_price"], short["exit_price"]) == pytest.approx((entry, exit_), rel=1e-15)
    assert short["ret"] == pytest.approx(-(x - 1) - 0.001 * (1 + x), rel=1e-12)


def test_the_stop_level_is_a_fraction_of_the_slipped_entry_fill() -> None:
    bars = bars_of(flat(100), flat(100), (100, 100, 80, 90), flat(90))
    trade = only_trade(
        simulate(bars, targets(4, t0=1), stop_loss=0.1, costs=Costs(slippage_bps=100))
    )
    assert trade["entry_price"] == pytest.approx(101.0, rel=1e-15)
    assert trade["exit_price"] == pytest.approx(101.0 * 0.9 * 0.99, rel=1e-15)


def test_targets_before_active_from_are_ignored() -> None:
    bars = bars_of(*(flat(100 + i) for i in range(6)))
    result = simulate(bars, targets(6, t0=1, t1=0, t2=-1, t3=1), active_from=3)
    assert only_trade(result)["entry_index"] == 4
    assert only_trade(result)["side"] == 1
    assert result.bar_returns[:4].tolist() == [0.0, 0.0, 0.0, 0.0]


def test_bad_targets_and_arguments_are_config_errors() -> None:
    bars = bars_of(flat(100), flat(100), flat(100))
    with pytest.raises(ConfigError, match=r"target at bar 1 .* is 0\.5"):
        simulate(bars, np.array([NAN, 0.5, 1.0]))
    with pytest.raises(ConfigError, match="one per bar"):
        simulate(bars, np.zeros(2))
    with pytest.raises(ConfigError, match="stop_loss"):
        simulate(bars, np.zeros(3), stop_loss=1.5)
    with pytest.raises(ConfigError, match="active_from"):
        simulate(bars, np.zeros(3), active_from=4)
    with pytest.raises(ConfigError, match="fees_bps"):
        Costs(fees_bps=-1)


def test_no_bars_give_no_trades_and_undefined_metrics() -> None:
    nothing = np.empty(0)
    empty = Bars("X", np.array([], dtype="datetime64[ns]"), *[nothing] * 5)
    result = simulate(empty, np.array([]))
    assert len(result.trades) == 0
    assert result.metrics(empty)["total_return"] is None


def random_walk(n: int, seed: int, step: Literal["h", "D"] = "h") -> Bars:
    """A geometric random walk with opens gapping from the previous close (seeded)."""
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.r_[100.0, close[:-1]] * np.exp(rng.normal(0, 0.003, n))
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.004, n)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.004, n)))
    time = np.datetime64("2024-01-01T00:00", "ns") + np.arange(n) * np.timedelta64(1, step)
    return Bars("RW", time, open_, high, low, close, np.ones(n))


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    density=st.sampled_from([0.02, 0.2, 1.0]),
    stop_loss=st.sampled_from([0.0, 0.003, 0.02]),
    take_profit=st.sampled_from([0.0, 0.005, 0.05]),
    fees_bps=st.sampled_from([0.0, 2.0]),
    slippage_bps=st.sampled_from([0.0, 1.0]),
)
def test_compounded_bar_returns_equal_compounded_trade_returns(
    seed: int,
    density: float,
    stop_loss: float,
    take_profit: float,
    fees_bps: float,
    slippage_bps: float,
) -> None:
    """Fully invested: the equity curve and the trade list tell the same story."""
    bars = random_walk(300, seed)
    rng = np.random.default_rng(seed + 1)
    target = rng.choice([-1.0, 0.0, 1.0], 300)
    target[rng.random(300) > density] = NAN
    result = simulate(
        bars,
        target,
        stop_loss=stop_loss,
        take_profit=take_profit,
        costs=Costs(fees_bps, slippage_bps),
    )
    by_bars = np.prod(1 + result.bar_returns)
    by_trades = np.prod(1 + result.trades.ret)
    assert by_bars == pytest.approx(by_trades, rel=1e-11)
    t = result.trades
    assert np.all(t.exit_index >= t.entry_index)
    assert np.all(t.entry_index[1:] >= t.exit_index[:-1])  # one position at a time
    held = np.zeros(len(bars), dtype=bool)
    for entry, exit_ in zip(t.entry_index, t.exit_index, strict=True):
        held[entry : exit_ + 1] = True
    assert np.all(result.bar_returns[~held] == 0.0)


def test_daily_returns_compound_intraday_bars_per_utc_day() -> None:
    time = np.array(
        ["2024-01-01T22:00", "2024-01-01T23:00", "2024-01-02T00:00", "2024-01-03T05:00"],
        dtype="datetime64[ns]",
    )
    days, daily = daily_returns(time, np.array([0.01, 0.02, -0.01, 0.0]))
    assert (
        days.tolist()
        == np.array(["2024-01-01", "2024-01-02", "2024-01-03"], "datetime64[D]").tolist()
    )
    assert daily == pytest.approx([1.01 * 1.02 - 1, -0.01, 0.0], abs=1e-15)


def test_daily_returns_of_a_backtest_on_hourly_bars_compound_to_the_total() -> None:
    bars = random_walk(24 * 10, seed=3)
    result = simulate(bars, np.tile([1.0, NAN, NAN, -1.0, NAN, 0.0], 40), stop_loss=0.01)
    days, daily = daily_returns(bars.time, result.bar_returns)
    assert len(days) == 10
    assert np.prod(1 + daily) == pytest.approx(np.prod(1 + result.bar_returns), rel=1e-12)


def test_metrics_of_a_known_pair_of_trades() -> None:
    # Long 100 -> 110 (+10%), flat, long 110 -> 104.5 (-5%); daily bars.
    bars = bars_of(flat(100), flat(100), flat(110), flat(110), flat(110), flat(104.5), flat(104.5))
    result = simulate(bars, targets(7, t0=1, t1=0, t3=1, t4=0))
    m = result.metrics(bars)
    assert m["n_trades"] == 2
    assert m["win_rate"] == 0.5
    assert m["expectancy"] == pytest.approx(0.5 * 0.1 - 0.5 * 0.05)
    assert m["total_return"] == pytest.approx(1.1 * 0.95 - 1)
    assert m["max_drawdown"] == pytest.approx(-0.05)
    assert m["exposure"] == pytest.approx(4 / 7)  # bars 1-2 and 4-5 hold a position
    daily = np.array([0, 0, 0.1, 0, 0, -0.05, 0])
    expected = daily.mean() / daily.std(ddof=1) * math.sqrt(252)
    assert m["sharpe"] == pytest.approx(expected, rel=1e-12)


def test_metrics_without_trades_are_none_where_undefined() -> None:
    bars = bars_of(flat(100), flat(101), flat(102))
    m = simulate(bars, np.full(3, NAN)).metrics(bars)
    assert m == {
        "n_trades": 0,
        "win_rate": None,
        "total_return": 0.0,
        "sharpe": None,
        "max_drawdown": 0.0,
        "expectancy": None,
        "exposure": 0.0,
    }


def test_backtest_passes_the_strategys_stop_loss_and_take_profit() -> None:
    bars = random_walk(2000, seed=5, step="D")
    strategy = load_strategy("sma_cross")
    params = {"fast": 5, "slow": 20, "stop_loss": 0.01, "take_profit": 0.02}
    result = backtest(strategy, bars, params)
    direct = simulate(
        bars,
        strategy.signals(bars, {**params, "allow_short": False}),
        stop_loss=0.01,
        take_profit=0.02,
    )
    assert np.array_equal(result.trades.exit_price, direct.trades.exit_price)
    assert {STOP_LOSS, TAKE_PROFIT} <= set(result.trades.exit_reason.tolist())


def test_trade_records_are_json_ready() -> None:
    bars = bars_of(flat(100), flat(100), (100, 100, 90, 92), flat(92))
    records = simulate(bars, targets(4, t0=-1), take_profit=0.05).trades.to_records(bars)
    assert records == [
        {
            "entry_time": "2024-01-02T00:00:00",
            "exit_time": "2024-01-03T00:00:00",
            "side": "short",
            "entry_price": 100.0,
            "exit_price": 95.0,
            "return": pytest.approx(0.05),
            "exit_reason": "take_profit",
            "bars_held": 1,
        }
    ]
