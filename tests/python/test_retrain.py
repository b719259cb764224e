"""Retraining a classifier without leakage, judged by the gate: a planted signal becomes a
candidate, noise and real near-efficient markets are rejected in words, unresolved labels and
test blocks never reach a model, a look-ahead feature is refused, and the metrics agree with the
published vector."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from runner.optimize import retrain as retrain_module
from runner.optimize.features import FeatureFrame
from runner.optimize.retrain import (
    Incumbent,
    RetrainConfig,
    RetrainResult,
    block_length,
    bootstrap_auc,
    calibration_error,
    classifier_metrics,
    evaluate_gate,
    retrain,
    tune,
)

# Small data on a shared 2-core machine: one LightGBM thread is faster than two here (and the
# trees are the same; deterministic=True, force_row_wise).
FAST = RetrainConfig(num_threads=1, window=None)


# -- scenarios ----------------------------------------------------------------------------------
def planted_frame(
    n: int = 6000,
    *,
    signal: bool = True,
    seed: int = 1,
    noise_features: int = 6,
    horizon: int = 1,
) -> FeatureFrame:
    """Hourly samples; label = 1{1.0·f_a − 0.8·f_b + N(0, 1) > 0} (or a coin when signal is
    False) with `noise_features` standard normals beside them; spans of `horizon` bars."""
    rng = np.random.default_rng(seed)
    t0 = np.datetime64("2015-01-01T00:00", "us") + np.arange(n) * np.timedelta64(1, "h")
    X = rng.normal(size=(n, 2 + noise_features))
    latent = 1.0 * X[:, 0] - 0.8 * X[:, 1] + rng.normal(size=n)
    y = (latent > 0 if signal else rng.random(n) < 0.5).astype(float)
    return FeatureFrame.build(
        symbol="PLANTED" if signal else "NOISE",
        t0=t0,
        t1=t0 + horizon * np.timedelta64(1, "h"),
        X=X,
        feature_names=["f_a", "f_b", *(f"f_noise_{i}" for i in range(noise_features))],
        y=y,
        horizon_bars=horizon,
    )


def bar_features(close: pd.Series, symbol: str, horizon: int = 5) -> FeatureFrame:
    """Point-in-time features of a close series (each uses closes up to its bar only) and the
    forward label over `horizon` bars, resolving at the bar `horizon` later."""
    close = close.astype(float)
    ret = close.pct_change()
    features = pd.DataFrame(
        {
            "f_ret_1": ret,
            "f_ret_5": close.pct_change(5),
            "f_ret_20": close.pct_change(20),
            "f_vol_10": ret.rolling(10).std(),
            "f_vol_20": ret.rolling(20).std(),
            "f_dist_sma_20": close / close.rolling(20).mean() - 1.0,
            "f_dist_sma_50": close / close.rolling(50).mean() - 1.0,
        }
    )
    forward = close.shift(-horizon) / close - 1.0
    times = pd.Series(pd.to_datetime(close.index), index=close.index)
    resolved = times.shift(-horizon)
    label = np.where(forward.isna(), np.nan, (forward > 0).astype(float))
    return FeatureFrame.build(
        symbol=symbol,
        t0=times.to_numpy(dtype="datetime64[us]"),
        t1=resolved.to_numpy(dtype="datetime64[us]"),
        X=features.to_numpy(dtype=float),
        feature_names=list(features.columns),
        y=label,
        forward_return=forward.to_numpy(dtype=float),
        horizon_bars=horizon,
    )


def real_series(name: str) -> pd.Series:
    if name == "GOOG":
        from backtesting.test import GOOG

        return GOOG["Close"]
    if name == "EURUSD":
        from backtesting.test import EURUSD

        return EURUSD["Close"]
    from arch.data import sp500

    return sp500.load()["Adj Close"]


# -- metrics ------------------------------------------------------------------------------------
def test_classifier_metrics_match_the_published_vector() -> None:
    y = np.array([1, 0, 1, 1, 0, 0, 1, 0, 1, 0], dtype=float)
    p = np.array([0.9, 0.8, 0.7, 0.7, 0.6, 0.4, 0.4, 0.3, 0.2, 0.1])
    m = classifier_metrics(y, p)
    assert m.accuracy == pytest.approx(0.6)
    assert m.brier == pytest.approx(0.245)
    assert m.log_loss == pytest.approx(0.6843029, abs=1e-7)
    assert m.auc == pytest.approx(0.66)


def test_calibration_error_uses_ten_equal_width_bins() -> None:
    # bins [0.1, 0.2) and [0.9, 1.0]: |0.15 − 0.5|·0.5 + |0.95 − 1|·0.5 = 0.2
    y = np.array([0, 1, 1, 1], dtype=float)
    p = np.array([0.1, 0.2 - 1e-9, 0.9, 1.0])
    assert calibration_error(y, p) == pytest.approx((0.35 + 0.05) / 2, abs=1e-6)


def test_weighted_bootstrap_auc_agrees_with_resampling_rows() -> None:
    """Each replicate's AUC, computed from block weights in one pass, equals the AUC of the
    rows it resampled (ties included)."""
    rng = np.random.default_rng(0)
    y = (rng.random(300) < 0.4).astype(float)
    p = np.round(rng.random(300), 1)  # many ties
    length = 7
    draws = bootstrap_auc(y, p, length, 5, np.random.default_rng(42))
    starts = np.random.default_rng(42).integers(0, 300 - length + 1, size=(5, 43))
    for k in range(5):
        rows = np.concatenate([np.arange(s, s + length) for s in starts[k]])
        assert draws[k] == pytest.approx(retrain_module.auc(y[rows], p[rows]))


def test_block_length_covers_the_label_overlap() -> None:
    assert block_length(10_000, 5) == 100
    assert block_length(100, 20) == 20


# -- planted signal and noise -------------------------------------------------------------------
@pytest.fixture(scope="module")
def planted() -> tuple[FeatureFrame, RetrainResult]:
    frame = planted_frame()
    return frame, retrain(frame, config=FAST)


def test_planted_signal_becomes_a_candidate(planted: tuple[FeatureFrame, RetrainResult]) -> None:
    frame, result = planted
    assert result.metrics.auc is not None and result.metrics.auc > 0.8
    assert result.gate.passed, result.gate.reasons
    assert result.verdict == "candidate"
    assert result.gate.baseline == "base rate of each training window"
    values = result.gate.values
    assert values["log_loss_diff_upper"] is not None and float(values["log_loss_diff_upper"]) < 0
    assert float(values["auc_lower"] or 0) > 0.8
    assert result.metrics.calibration_error <= 0.03
    # out-of-sample rows are the five test blocks, in time order, and nothing else
    assert (
        len(result.oos) == sum(len(f.test) for f in result.folds) == 5 * (len(result.window) // 6)
    )
    assert np.all(np.diff(frame.t0[result.oos]) > np.timedelta64(0))
    # the final model is the whole window, and predicts like the folds did
    assert result.model is not None and result.model_text is not None
    assert result.num_boost_round >= 1
    assert result.features == tuple(frame.feature_names)


def test_no_signal_is_rejected_with_reasons() -> None:
    result = retrain(planted_frame(signal=False), config=FAST)
    assert result.metrics.auc is not None and abs(result.metrics.auc - 0.5) < 0.06
    assert not result.gate.passed and result.verdict == "rejected"
    words = " ".join(result.gate.reasons)
    assert "no reliable ranking skill" in words
    assert "log loss" in words or "Calibration" in words


def test_a_look_ahead_feature_gives_an_absurd_auc_and_is_refused() -> None:
    """A feature equal to the (future) label plus noise: the trainer cannot know a feature
    looks ahead, but the gate refuses the implausible score it produces."""
    frame = planted_frame(signal=False, n=3000)
    rng = np.random.default_rng(5)
    leaky = frame.y + rng.normal(0, 0.3, len(frame))
    leaked = FeatureFrame.build(
        symbol="LEAK",
        t0=frame.t0,
        t1=frame.t1,
        X=np.column_stack([frame.X, leaky]),
        feature_names=[*frame.feature_names, "f_leak"],
        y=frame.y,
        horizon_bars=frame.horizon_bars,
    )
    result = retrain(leaked, config=FAST)
    assert result.metrics.auc is not None and result.metrics.auc > 0.95
    assert not result.gate.passed
    assert any("implausibly high" in reason for reason in result.gate.reasons)


# -- leakage ------------------------------------------------------------------------------------
def test_labels_unresolved_at_retrain_time_are_never_used() -> None:
    """τ in the middle of the data, labels of 24 bars: the samples decided before τ whose
    label resolves at or after τ, and everything after τ, reach no model."""
    frame = planted_frame(n=4000, horizon=24)
    tau = frame.t0[3000]
    result = retrain(frame, config=FAST, as_of=tau)
    used = np.unique(
        np.concatenate(
            [result.window, *(np.r_[f.train, f.fit, f.valid, f.test] for f in result.folds)]
        )
    )
    assert np.all(frame.t1[used] < tau)
    assert used.max() == 3000 - 24 - 1  # the last sample whose label resolved before τ
    assert result.excluded_unresolved == 24
    assert result.training_end < tau
    assert result.as_of == tau


def test_no_training_label_overlaps_its_test_block_or_validation_tail() -> None:
    frame = planted_frame(n=3000, horizon=12)
    result = retrain(frame, config=FAST)
    assert result.embargo == 30  # max(0.01 · 3000, 12)
    for fold in result.folds:
        first_test = frame.t0[fold.test].min()
        assert frame.t1[fold.train].max() < first_test  # purged: resolved before the block
        assert len(fold.purged) == 12  # the 12 spans reaching into the block
        assert frame.t1[fold.fit].max() < frame.t0[fold.valid].min()
        assert np.intersect1d(fold.train, fold.test).size == 0
        assert set(fold.fit) | set(fold.valid) <= set(fold.train)


def test_tuning_sees_only_the_training_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nested: every model Optuna's objective fits is grown and scored inside `train`."""
    frame = planted_frame(n=1500)
    train = np.arange(800)
    seen: list[np.ndarray] = []
    original = retrain_module.fit_early_stopped

    def recording(frame_: FeatureFrame, rows: np.ndarray, *args: object) -> object:
        seen.append(rows)
        return original(frame_, rows, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(retrain_module, "fit_early_stopped", recording)
    config = RetrainConfig(num_threads=1, tune_trials=3, inner_folds=3)
    params = tune(frame, train, tuple(frame.feature_names), config, embargo=5)
    assert len(seen) == 3 * 3
    assert all(set(rows.tolist()) <= set(train.tolist()) for rows in seen)
    assert set(params) >= {"num_leaves", "learning_rate", "min_data_in_leaf", "seed"}


def test_nested_tuning_runs_end_to_end() -> None:
    frame = planted_frame(n=2400)
    result = retrain(
        frame, config=RetrainConfig(num_threads=1, window=None, tune_trials=2, folds=3)
    )
    assert result.metrics.auc is not None and result.metrics.auc > 0.8
    assert all(fold.params["deterministic"] is True for fold in result.folds)


def test_retraining_is_deterministic() -> None:
    frame = planted_frame(n=2000)
    first = retrain(frame, config=FAST)
    second = retrain(frame, config=FAST)
    assert first.model_text == second.model_text
    np.testing.assert_array_equal(first.oos_proba, second.oos_proba)
    assert first.gate.values == second.gate.values


# -- the incumbent ------------------------------------------------------------------------------
def test_same_recipe_as_the_incumbent_is_no_regression(
    planted: tuple[FeatureFrame, RetrainResult],
) -> None:
    frame, candidate = planted
    incumbent = Incumbent(
        label="production v1", features=candidate.features, params=candidate.params
    )
    result = retrain(frame, config=FAST, incumbent=incumbent)
    assert result.gate.baseline == "production v1 recipe refit on the same folds"
    assert result.gate.values["log_loss_diff"] == pytest.approx(0.0)
    assert result.gate.passed, result.gate.reasons


def test_a_weaker_incumbent_model_is_compared_as_deployed_on_fresh_rows() -> None:
    """The production model saw f_b only, up to τ1; the candidate (both features, τ2) is
    compared with that model as deployed on the rows decided after its training end."""
    frame = planted_frame(n=6000)
    weak = FeatureFrame.build(
        symbol=frame.symbol,
        t0=frame.t0,
        t1=frame.t1,
        X=frame.X[:, [1]],
        feature_names=["f_b"],
        y=frame.y,
        horizon_bars=1,
    )
    old = retrain(weak, config=FAST, as_of=frame.t0[2500])
    incumbent = Incumbent(
        label="production v1",
        features=old.features,
        params=old.params,
        model_text=old.model_text,
        trained_until=old.training_end,
    )
    result = retrain(frame, config=FAST, incumbent=incumbent)
    assert result.gate.baseline == "production v1 model as deployed"
    compared = ~np.isnan(result.oos_baseline_proba)
    assert np.all(frame.t0[result.oos[compared]] > old.training_end)
    assert int(result.gate.values["n_compared"] or 0) == int(compared.sum()) > 2000
    assert float(result.gate.values["log_loss_diff"] or 0) < -0.05
    assert result.gate.passed, result.gate.reasons


def test_too_few_compared_rows_is_insufficient_evidence() -> None:
    y = np.array([0.0, 1.0] * 50)
    p = np.full(100, 0.5)
    report = evaluate_gate(y, p, p, baseline="base rate", config=FAST, horizon=1)
    assert not report.passed
    assert "insufficient evidence" in report.reasons[0]


# -- real markets -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["GOOG", "SP500", "EURUSD"])
def test_real_markets_have_no_edge_at_a_five_bar_horizon(name: str) -> None:
    frame = bar_features(real_series(name), name)
    result = retrain(frame, config=RetrainConfig(num_threads=1))
    m = result.metrics
    assert m.n > 1000
    assert all(np.isfinite([m.log_loss, m.brier, m.accuracy, m.calibration_error]))
    assert m.auc is not None and 0.4 <= m.auc <= 0.65
    assert 0.3 < m.base_rate < 0.7
    assert not result.gate.passed, f"{name} passed: {result.gate.values}"
    assert result.gate.reasons
    # the last five bars have no label yet: they are excluded, not guessed
    assert result.excluded_unresolved == 5


# -- from the warehouse -------------------------------------------------------------------------
@pytest.mark.integration
def test_retrain_from_the_feature_mart_on_duckdb(tmp_path: Path) -> None:
    """GOOG's bars ingested, fct_bar_features built by dbt, features loaded with parameters,
    retrained and registered: the whole path the coordinator runs, on DuckDB."""
    from backtesting.test import GOOG

    from runner.dbt import run_dbt
    from runner.ingest import ingest_file
    from runner.optimize.features import load_features
    from runner.optimize.models import list_versions, load_model, register_version
    from tests.python.markets import write_bars_csv
    from tests.python.scenarios import PROJECT_DIR, copy_dbt_project, fresh_settings, open_warehouse

    if not (PROJECT_DIR / "models" / "marts" / "optimize" / "fct_bar_features.sql").is_file():
        pytest.skip("the feature mart is not in this checkout")
    project = copy_dbt_project(tmp_path / "project")
    bars = GOOG.reset_index(names="ts").rename(columns=str.lower)
    with fresh_settings("duckdb", tmp_path, project) as settings:
        with open_warehouse(settings) as wh:
            path = write_bars_csv(bars, "GOOG", tmp_path / "GOOG.csv")
            assert ingest_file(wh, settings, "bars", path).rejected == 0
        run_dbt(settings, "run", select="+fct_bar_features")
        with open_warehouse(settings) as wh:
            frame = load_features(wh, "GOOG")
            assert len(frame) == len(GOOG)
            assert all(name.startswith("f_") for name in frame.feature_names)
            result = retrain(frame, config=RetrainConfig(num_threads=1))
            assert result.excluded_unresolved == frame.horizon_bars
            assert np.all(frame.t1[result.window] < result.as_of)
            m = result.metrics
            assert m.auc is not None and 0.4 <= m.auc <= 0.65
            with wh.transaction():
                version = register_version(
                    wh,
                    settings.artifacts,
                    model_id="goog_direction",
                    result=result,
                    component_id=None,
                    code_version="test",
                )
            assert [v.version for v in list_versions(wh, "goog_direction")] == [1]
            assert version.status == result.verdict
            if result.model is not None:
                assert load_model(version).num_trees() == result.model.num_trees()
