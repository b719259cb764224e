"""ml_signal and the probabilities it trades: thresholds, exits and sizing as for any strategy,
flat where the model has no out-of-sample opinion, and no in-sample prediction ever reaching a
backtest (each value's model was trained on labels resolved before its bar, and truncating the
data at t leaves every value at or before t unchanged)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from runner.backtest import backtest
from runner.errors import ConfigError
from runner.optimize.features import FeatureFrame
from runner.optimize.probabilities import (
    Recipe,
    period_starts,
    walk_forward_probabilities,
)
from runner.optimize.retrain import RetrainConfig, fit_rounds, lightgbm_params
from runner.optimize.space import searched_params
from runner.strategies import Bars, StrategyError, load_strategy, resolve_params

ML = load_strategy("ml_signal")


def bars_with(probability: list[float] | np.ndarray, close: np.ndarray | None = None) -> Bars:
    p = np.asarray(probability, dtype=float)
    n = len(p)
    c = 100.0 * np.cumprod(1.0 + np.full(n, 0.001)) if close is None else close
    time = np.datetime64("2020-01-01", "ns") + np.arange(n) * np.timedelta64(1, "D")
    return Bars("ML", time, c, c * 1.01, c * 0.99, c, np.ones(n), p)


# -- the strategy -------------------------------------------------------------------------------
def test_long_above_short_below_flat_between_and_where_the_model_is_silent() -> None:
    params = resolve_params(ML, {"long_threshold": 0.6, "short_threshold": 0.4})
    p = [0.7, 0.6, 0.59, 0.5, 0.41, 0.4, 0.1, np.nan, 0.9]
    assert ML.signals(bars_with(p), params).tolist() == [1, 1, 0, 0, 0, -1, -1, 0, 1]
    long_only = resolve_params(ML, {"allow_short": False})
    assert ML.signals(bars_with([0.1, 0.9]), long_only).tolist() == [0, 1]


def test_thresholds_must_be_ordered_and_probabilities_are_required() -> None:
    with pytest.raises(StrategyError, match="short_threshold must be < long_threshold"):
        resolve_params(ML, {"long_threshold": 0.5, "short_threshold": 0.5})
    plain = bars_with([0.5, 0.5]).with_probability(None)
    with pytest.raises(StrategyError, match="needs model probabilities"):
        ML.signals(plain, resolve_params(ML, {}))


def test_the_model_version_is_part_of_the_parameters_but_never_searched() -> None:
    assert "model_version" in resolve_params(ML, {"model_version": 3})
    assert "model_version" not in {p.name for p in searched_params(ML, None)}
    with pytest.raises(ConfigError, match="no bounds to search"):
        searched_params(ML, ["model_version"])
    with pytest.raises(StrategyError, match="below its minimum"):
        resolve_params(ML, {"model_version": 0})


def test_a_backtest_applies_stops_and_sizing_to_the_model_positions() -> None:
    # Rising prices, the model says up throughout: one long trade until the stop is hit by a drop.
    close = np.r_[np.linspace(100, 110, 20), np.linspace(100, 90, 10)]
    bars = bars_with(np.full(30, 0.8), close)
    result = backtest(ML, bars, {"stop_loss": 0.05, "max_position": 0.5})
    records = result.trades.to_records(bars)
    assert records and records[0]["side"] == "long"
    assert set(np.round(result.trades.size, 6)) == {0.5}
    assert "stop_loss" in {r["exit_reason"] for r in records}


def test_bars_validate_and_slice_the_probability_column() -> None:
    with pytest.raises(ConfigError, match=r"probability is outside \[0, 1\]"):
        bars_with([0.5, 1.2])
    bars = bars_with([0.1, 0.2, 0.3])
    assert bars.slice(1, None).probability is not None
    assert bars.slice(1, None).probability.tolist() == [0.2, 0.3]  # type: ignore[union-attr]
    frame = pd.DataFrame(
        {
            "ts": pd.date_range("2020-01-01", periods=2),
            "open": [1.0, 1.0],
            "high": [1.0, 1.0],
            "low": [1.0, 1.0],
            "close": [1.0, 1.0],
            "probability": [0.3, None],
        }
    )
    read = Bars.from_frame(frame)
    assert read.probability is not None and np.isnan(read.probability[1])


# -- out-of-sample probabilities ----------------------------------------------------------------
def planted_daily(n: int = 1500, seed: int = 3, horizon: int = 5) -> FeatureFrame:
    """Daily samples whose label depends on f_a; labels resolve `horizon` days after the bar."""
    rng = np.random.default_rng(seed)
    t0 = np.datetime64("2015-01-01", "us") + np.arange(n) * np.timedelta64(1, "D")
    X = rng.normal(size=(n, 3))
    y = (X[:, 0] + rng.normal(size=n) > 0).astype(float)
    return FeatureFrame.build(
        symbol="P",
        t0=t0,
        t1=t0 + horizon * np.timedelta64(1, "D"),
        X=X,
        feature_names=["f_a", "f_b", "f_c"],
        y=y,
        horizon_bars=horizon,
    )


RECIPE = Recipe(("f_a", "f_b", "f_c"), {"num_leaves": 7, "num_threads": 1}, 40)


def truncated(frame: FeatureFrame, at: np.datetime64) -> FeatureFrame:
    """The frame as it was at time `at`: later bars absent, later labels not yet resolved."""
    keep = frame.t0 <= at
    t1 = frame.t1[keep].copy()
    y = frame.y[keep].copy()
    unresolved = t1 > at
    t1[unresolved] = np.datetime64("NaT")
    y[unresolved] = np.nan
    return FeatureFrame.build(
        symbol=frame.symbol,
        t0=frame.t0[keep],
        t1=t1,
        X=frame.X[keep],
        feature_names=frame.feature_names,
        y=y,
        horizon_bars=frame.horizon_bars,
    )


def test_every_probability_comes_from_a_model_trained_before_its_bar() -> None:
    frame = planted_daily()
    result = walk_forward_probabilities(frame, RECIPE)
    known = ~np.isnan(result.value)
    assert known.mean() > 0.8  # all but the first periods, which have too little history
    assert np.all(result.trained_until[known] < frame.t0[known])
    assert np.all(np.isnat(result.trained_until[~known]))
    # Models refit each quarter: the values carry real out-of-sample skill on the planted signal.
    y, p = frame.y[known], result.value[known]
    assert np.mean((p > 0.5) == (y == 1)) > 0.6


@pytest.mark.parametrize("cut", ["2016-02-10", "2016-04-01", "2017-09-30T12:00"])
def test_truncating_the_data_at_t_leaves_every_probability_up_to_t_unchanged(cut: str) -> None:
    frame = planted_daily()
    at = np.datetime64(cut, "us")
    full = walk_forward_probabilities(frame, RECIPE)
    part = walk_forward_probabilities(truncated(frame, at), RECIPE)
    upto = frame.t0 <= at
    np.testing.assert_array_equal(part.value, full.value[upto])
    np.testing.assert_array_equal(part.trained_until, full.trained_until[upto])


def test_the_deployed_model_predicts_only_after_its_training_data_ends() -> None:
    frame = planted_daily()
    end = np.datetime64("2018-06-30", "us")
    train = np.flatnonzero(frame.t1 <= end).astype(np.intp)
    params = lightgbm_params(RetrainConfig(num_threads=1), RECIPE.params)
    deployed = fit_rounds(frame, train, RECIPE.features, params, RECIPE.rounds)
    result = walk_forward_probabilities(frame, RECIPE, deployed=deployed, deployed_until=end)
    after = frame.t0 > end
    assert np.all(result.trained_until[after] == end)
    np.testing.assert_allclose(result.value[after], deployed.predict(frame.X[after]))
    # Before it, the deployed model (which saw those labels) is never the source.
    before = ~after & ~np.isnan(result.value)
    assert np.all(result.trained_until[before] < frame.t0[before])
    assert np.all(result.trained_until[before] < end)


def test_refit_periods_are_calendar_quarters() -> None:
    times = np.array(
        ["2020-01-01", "2020-03-31T23:59", "2020-04-01", "2020-12-15"], "datetime64[us]"
    )
    starts = period_starts(times, 3).astype("datetime64[D]").astype(str).tolist()
    assert starts == ["2020-01-01", "2020-01-01", "2020-04-01", "2020-10-01"]


def test_aligning_to_bars_leaves_bars_without_a_sample_flat() -> None:
    frame = planted_daily(n=400)
    result = walk_forward_probabilities(frame, RECIPE, min_train=50)
    n = 10
    time = frame.t0[-n:].astype("datetime64[ns]") + np.timedelta64(0, "ns")
    time = np.r_[time, time[-1] + np.timedelta64(1, "D")]
    c = np.full(n + 1, 100.0)
    bars = Bars("P", time, c, c, c, c, np.ones(n + 1))
    aligned = result.on(bars)
    np.testing.assert_array_equal(aligned[:n], result.value[-n:])
    assert np.isnan(aligned[-1])
    assert ML.signals(bars.with_probability(aligned), resolve_params(ML, {}))[-1] == 0.0
