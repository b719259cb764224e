"""Strategies as the engine loads and runs them: Bars validation, loading by name or import path
(with errors that name the reference and the fault), parameter resolution, the built-ins' rules
and their causality (no signal changes when later bars are removed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from backtesting.lib import crossover
from backtesting.test import EURUSD, GOOG
from numpy.typing import NDArray

from runner.backtest import backtest
from runner.backtest.kernel import rolling_max, rolling_mean, rolling_min, sma_cross_targets
from runner.errors import ConfigError
from runner.strategies import (
    BUILTINS,
    Bars,
    DonchianBreakout,
    Param,
    SmaCross,
    Strategy,
    StrategyError,
    load_strategy,
    resolve_params,
)
from runner.strategies.ml_signal import MlSignal
from runner.strategies.momentum import TimeSeriesMomentum

HERE = "tests.python.test_strategies"


# --- strategies a user might write, loaded below by import path --------------------------------


class CloseAboveOpen:
    """Long while the bar closes above its open, flat otherwise (a state strategy)."""

    name = "close_above_open"

    def parameters(self) -> Sequence[Param]:
        return (Param("min_move", "float", 0.0, 0.0, 0.1),)

    def problems(self, params: Mapping[str, Any]) -> list[str]:
        return []

    def signals(self, bars: Bars, params: Mapping[str, Any]) -> NDArray[np.float64]:
        move = bars.close / bars.open - 1
        return np.where(move > params["min_move"], 1.0, 0.0)


class NoSignals:
    name = "no_signals"

    def parameters(self) -> Sequence[Param]:
        return ()

    def problems(self, params: Mapping[str, Any]) -> list[str]:
        return []


class MalformedParameters(CloseAboveOpen):
    def parameters(self) -> Sequence[Param]:
        return [Param("window", "int", 500, 2, 100), "fast"]  # type: ignore[list-item]


class NeedsArguments(CloseAboveOpen):
    def __init__(self, window: int) -> None:
        self.window = window


NOT_A_CLASS = CloseAboveOpen()


# --- Bars ---------------------------------------------------------------------------------------


def test_bars_from_backtesting_frames_keep_every_value() -> None:
    bars = Bars.from_frame(GOOG, "GOOG")
    assert len(bars) == 2148 and bars.symbol == "GOOG"
    assert bars.time.dtype == np.dtype("datetime64[ns]")
    assert np.array_equal(bars.close, GOOG["Close"].to_numpy())
    assert np.array_equal(bars.time, GOOG.index.to_numpy(dtype="datetime64[ns]"))
    with pytest.raises(ValueError):
        bars.close[0] = 1.0  # frozen: the arrays are read-only


def test_bars_convert_tz_aware_times_to_utc() -> None:
    frame = pd.DataFrame(
        {
            "ts": pd.to_datetime(["2024-01-02 09:30", "2024-01-02 10:30"]).tz_localize(
                "America/New_York"
            ),
            "open": [1.0, 1.0],
            "high": [1.0, 1.0],
            "low": [1.0, 1.0],
            "close": [1.0, 1.0],
        }
    )
    bars = Bars.from_frame(frame)
    assert (
        bars.time.tolist()
        == np.array(["2024-01-02T14:30", "2024-01-02T15:30"], dtype="datetime64[ns]").tolist()
    )
    assert np.isnan(bars.volume).all()  # volume is optional


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop(columns=["Low"]), "missing column.*low"),
        (lambda f: f.reset_index(drop=True), "no time"),
        (lambda f: f.iloc[[0, 2, 1, 3]], "strictly increasing; bar 2 .* earlier"),
        (lambda f: f.iloc[[0, 1, 1, 2]], "strictly increasing; bar 2 .* duplicate"),
        (
            lambda f: f.assign(Close=[1.0, 0.0, 1.0, 1.0]),
            r"close must be finite and positive; bar 1",
        ),
        (
            lambda f: f.assign(Open=[1.0, np.nan, 1.0, 1.0]),
            r"open must be finite and positive; bar 1",
        ),
        (
            lambda f: f.assign(High=[1.0, 1.0, 0.9, 1.0]),
            r"bar 2 .*high is below max\(open, close\)",
        ),
        (lambda f: f.assign(Low=[1.0, 1.0, 1.0, 1.1]), r"bar 3 .*low is above min\(open, close\)"),
        (lambda f: f.assign(Close=["1", "x", "1", "1"]), "column Close is not numeric"),
    ],
)
def test_bars_reject_unusable_data_naming_the_problem(change: Any, message: str) -> None:
    frame = pd.DataFrame(
        {"Open": 1.0, "High": 1.0, "Low": 1.0, "Close": 1.0, "Volume": 1.0},
        index=pd.date_range("2024-01-01", periods=4, freq="D"),
    )
    with pytest.raises(ConfigError, match=message):
        Bars.from_frame(change(frame), "X")


def test_bars_read_csv_and_parquet_and_pick_a_symbol(tmp_path: Path) -> None:
    frame = GOOG.head(50).reset_index(names="ts")
    frame.to_csv(tmp_path / "goog.csv", index=False)
    frame.to_parquet(tmp_path / "goog.parquet")
    from_csv = Bars.read(tmp_path / "goog.csv")
    from_parquet = Bars.read(tmp_path / "goog.parquet")
    assert np.array_equal(from_csv.time, from_parquet.time)
    assert np.array_equal(from_csv.close, GOOG["Close"].to_numpy()[:50])
    two = pd.concat([frame.assign(symbol="GOOG"), frame.assign(symbol="ALT")])
    two.to_csv(tmp_path / "two.csv", index=False)
    assert Bars.read(tmp_path / "two.csv", "ALT").symbol == "ALT"
    with pytest.raises(ConfigError, match="several symbols"):
        Bars.read(tmp_path / "two.csv")
    with pytest.raises(ConfigError, match="does not exist"):
        Bars.read(tmp_path / "missing.csv")


def test_bars_slice_like_a_python_slice() -> None:
    bars = Bars.from_frame(GOOG)
    part = bars.slice(10, 20)
    assert len(part) == 10 and part.time[0] == bars.time[10]
    assert len(bars.slice(None, -5)) == len(bars) - 5


# --- loading ------------------------------------------------------------------------------------


def test_builtins_load_by_short_name_and_satisfy_the_protocol() -> None:
    assert set(BUILTINS) == {"sma_cross", "donchian_breakout", "ml_signal", "ts_momentum"}
    for name, cls in (
        ("sma_cross", SmaCross),
        ("donchian_breakout", DonchianBreakout),
        ("ml_signal", MlSignal),
        ("ts_momentum", TimeSeriesMomentum),
    ):
        strategy = load_strategy(name)
        assert isinstance(strategy, cls) and isinstance(strategy, Strategy)
        assert strategy.name == name
        assert load_strategy(BUILTINS[name]).name == name


def test_a_user_strategy_loads_by_import_path_and_backtests() -> None:
    strategy = load_strategy(f"{HERE}:CloseAboveOpen")
    bars = Bars.from_frame(GOOG)
    result = backtest(strategy, bars, {"min_move": 0.01})
    assert len(result.trades) > 10


@pytest.mark.parametrize(
    ("ref", "fault"),
    [
        ("no_such_strategy", "neither a built-in"),
        ("tests.python.no_such_module:Thing", "module 'tests.python.no_such_module' not found"),
        (f"{HERE}:Missing", "has no attribute 'Missing'"),
        (f"{HERE}:NOT_A_CLASS", "is not a class"),
        (f"{HERE}:NoSignals", r"method\(s\) signals missing"),
        (
            f"{HERE}:MalformedParameters",
            "parameters\\(\\) is malformed: 'window' default: 500 is above",
        ),
        (f"{HERE}:NeedsArguments", "cannot be created with no arguments"),
    ],
)
def test_load_errors_name_the_reference_and_the_fault(ref: str, fault: str) -> None:
    with pytest.raises(StrategyError, match=fault) as caught:
        load_strategy(ref)
    assert repr(ref) in str(caught.value)
    assert isinstance(caught.value, ConfigError)


def test_a_user_module_missing_a_dependency_names_the_dependency(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "user_strategy_needs_dep.py").write_text("import tradebase_missing_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(StrategyError, match="No module named 'tradebase_missing_dependency'") as e:
        load_strategy("user_strategy_needs_dep:Thing")
    assert "importing 'user_strategy_needs_dep' failed" in str(e.value)


def test_malformed_parameters_list_every_fault() -> None:
    with pytest.raises(StrategyError, match="item 1 is a str, not a Param"):
        load_strategy(f"{HERE}:MalformedParameters")


# --- parameters ---------------------------------------------------------------------------------


def test_resolve_params_fills_defaults_and_coerces_kinds() -> None:
    strategy = load_strategy("sma_cross")
    assert resolve_params(strategy, None) == {
        "fast": 10,
        "slow": 30,
        "stop_loss": 0.0,
        "take_profit": 0.0,
        "allow_short": False,
    }
    resolved = resolve_params(
        strategy, {"fast": 12.0, "slow": "40", "stop_loss": 0, "allow_short": "true"}
    )
    assert resolved["fast"] == 12 and type(resolved["fast"]) is int
    assert resolved["slow"] == 40 and type(resolved["stop_loss"]) is float
    assert resolved["allow_short"] is True


def test_resolve_params_reports_every_problem_at_once() -> None:
    strategy = load_strategy("sma_cross")
    with pytest.raises(StrategyError) as caught:
        resolve_params(strategy, {"fast": 50, "slow": 20, "take_profit": 2.0, "fats": 3})
    assert caught.value.problems == [
        "unknown parameter 'fats' (known: fast, slow, stop_loss, take_profit, allow_short)",
        "take_profit = 2.0 is above its maximum 1",
        "fast must be < slow (got fast=50, slow=20)",
    ]
    assert "'sma_cross'" in str(caught.value)


@pytest.mark.parametrize(
    ("params", "fault"),
    [
        ({"fast": 10.5}, "fast = 10.5 is not a whole number"),
        ({"allow_short": "maybe"}, "allow_short = 'maybe' is not a boolean"),
        ({"stop_loss": True}, "stop_loss = True is a boolean, not a number"),
        ({"slow": float("nan")}, "slow = nan is not finite"),
        ({"fast": 1}, "fast = 1 is below its minimum 2"),
    ],
)
def test_resolve_params_rejects_values_of_the_wrong_kind(
    params: dict[str, Any], fault: str
) -> None:
    with pytest.raises(StrategyError, match=fault):
        resolve_params(load_strategy("sma_cross"), params)


# --- the built-ins' rules -----------------------------------------------------------------------


def adversarial_closes() -> list[np.ndarray]:
    """Series on which a rolling mean that is not pandas' differs in the last bits."""
    rng = np.random.default_rng(1)
    return [
        GOOG["Close"].to_numpy(),
        EURUSD["Close"].to_numpy(),
        np.round(rng.uniform(1, 1e6, 5000), 2),
        np.r_[
            np.full(40, 3.3), rng.lognormal(0, 2, 500), np.full(30, 7.1), rng.lognormal(8, 4, 200)
        ],
    ]


@pytest.mark.parametrize("window", [2, 3, 10, 17, 30, 200])
def test_rolling_mean_equals_pandas_bit_for_bit(window: int) -> None:
    for values in adversarial_closes():
        ours = rolling_mean(np.ascontiguousarray(values), window)
        pandas = pd.Series(values).rolling(window).mean().to_numpy()
        assert np.array_equal(ours, pandas, equal_nan=True)
        assert np.array_equal(
            rolling_max(values, window), pd.Series(values).rolling(window).max(), equal_nan=True
        )
        assert np.array_equal(
            rolling_min(values, window), pd.Series(values).rolling(window).min(), equal_nan=True
        )


def test_sma_cross_fires_exactly_where_backtesting_lib_crossover_does() -> None:
    # Ties, touches and crosses through equality, on integers so the SMAs tie exactly.
    close = np.array([5, 5, 5, 6, 7, 6, 5, 5, 5, 4, 5, 6, 6, 6, 4, 3, 6, 6, 5, 5, 5, 5], float)
    fast_sma = pd.Series(close).rolling(2).mean().to_numpy()
    slow_sma = pd.Series(close).rolling(4).mean().to_numpy()
    expected = np.full(len(close), np.nan)
    for t in range(1, len(close)):
        if crossover(fast_sma[: t + 1], slow_sma[: t + 1]):
            expected[t] = 1.0
        elif crossover(slow_sma[: t + 1], fast_sma[: t + 1]):
            expected[t] = -1.0
    fired = sma_cross_targets(close, 2, 4, 1.0, -1.0, np.empty(len(close)))
    assert np.array_equal(fired, expected, equal_nan=True)
    assert np.nansum(np.abs(expected)) >= 3  # the series does cross
    bars = Bars(
        "X",
        np.datetime64("2024-01-01", "ns") + np.arange(len(close)) * np.timedelta64(1, "D"),
        close,
        close,
        close,
        close,
        close,
    )
    long_only = SmaCross().signals(bars, {"fast": 2, "slow": 4, "allow_short": False})
    assert np.array_equal(long_only, np.where(expected == -1.0, 0.0, expected), equal_nan=True)


def test_donchian_breaks_out_above_the_previous_highs_and_exits_below_the_previous_lows() -> None:
    high = np.array([10, 11, 10, 10, 12, 11, 11, 10, 9, 9], float)
    low = high - 1
    close = np.array([9.5, 10.5, 9.5, 9.5, 11.5, 10.5, 10.5, 9.5, 8.5, 8.7])
    open_ = close.copy()
    bars = Bars(
        "X",
        np.datetime64("2024-01-01", "ns") + np.arange(10) * np.timedelta64(1, "D"),
        open_,
        high,
        low,
        close,
        np.ones(10),
    )
    params = {"lookback": 3, "exit_lookback": 2, "allow_short": True}
    signals = DonchianBreakout().signals(bars, params)
    # Bar 4 closes at 11.5 > max(high[1:4]) = 11; bars 7 and 8 close below min(low[5:7]) = 10
    # and min(low[6:8]) = 9; bar 9 closes at 8.7, above min(low[7:9]) = 8.
    expected = np.full(10, np.nan)
    expected[4] = 1.0
    expected[7:9] = -1.0
    assert np.array_equal(signals, expected, equal_nan=True)


# --- causality ----------------------------------------------------------------------------------

CAUSALITY_CASES = [
    ("sma_cross", {"fast": 5, "slow": 20, "allow_short": True}),
    ("sma_cross", {"fast": 10, "slow": 30}),
    ("donchian_breakout", {"lookback": 20, "exit_lookback": 10, "allow_short": True}),
    ("donchian_breakout", {"lookback": 5, "exit_lookback": 15}),
]


@pytest.mark.parametrize(("name", "params"), CAUSALITY_CASES)
def test_signals_up_to_t_do_not_change_when_later_bars_are_removed(
    name: str, params: dict[str, Any]
) -> None:
    strategy = load_strategy(name)
    resolved = resolve_params(strategy, params)
    for frame in (GOOG, EURUSD):
        bars = Bars.from_frame(frame)
        full = strategy.signals(bars, resolved)
        assert np.isfinite(full).sum() > 5  # the strategy does trade here
        cuts = np.random.default_rng(0).integers(1, len(bars), 40)
        for t in (*cuts.tolist(), 1, 60, len(bars) - 1):
            head = strategy.signals(bars.slice(0, t + 1), resolved)
            assert np.array_equal(head, full[: t + 1], equal_nan=True), (name, t)


def test_ts_momentum_follows_or_fades_the_move_and_holds_on_small_ones() -> None:
    strategy = load_strategy("ts_momentum")
    close = np.array([100.0, 101.0, 100.5, 100.5, 103.0, 102.9])
    time = np.datetime64("2024-01-01T00", "ns") + np.arange(6) * np.timedelta64(1, "h")
    bars = Bars("X", time, close, close, close, close, np.ones(6))
    follow = strategy.signals(bars, resolve_params(strategy, {"lookback": 1}))
    np.testing.assert_array_equal(follow, [np.nan, 1, -1, np.nan, 1, -1])
    fade = strategy.signals(bars, resolve_params(strategy, {"lookback": 1, "direction": -1}))
    np.testing.assert_array_equal(fade, [np.nan, -1, 1, np.nan, -1, 1])
    # Moves under 0.6% keep the position: only +1% and +2.5% decide.
    held = strategy.signals(bars, resolve_params(strategy, {"lookback": 1, "threshold": 0.006}))
    np.testing.assert_array_equal(held, [np.nan, 1, np.nan, np.nan, 1, np.nan])
    two = strategy.signals(bars, resolve_params(strategy, {"lookback": 2}))
    np.testing.assert_array_equal(two, [np.nan, np.nan, 1, -1, 1, 1])
    with pytest.raises(StrategyError, match="direction must be"):
        resolve_params(strategy, {"direction": 0})
