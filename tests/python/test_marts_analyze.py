"""The ANALYZE marts against empyrical-reloaded, pandas and numpy, on DuckDB and PostgreSQL.

One dataset holds every scenario as its own component (or model); dbt builds it once per
warehouse, and each test reads the marts it needs from that build.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import duckdb
import empyrical
import numpy as np
import pandas as pd
import pytest
from scipy.stats import rankdata

from runner.config import Settings
from runner.dbt import run_dbt
from runner.errors import DbtFailed
from runner.warehouse import connect
from tests.python.scenarios import (
    Bar,
    Dataset,
    Prediction,
    Trade,
    close_to_close_returns,
    consecutive_days,
    copy_dbt_project,
    fresh_settings,
    goog_closes,
    open_warehouse,
    sp500_closes,
    window_returns,
)

pytestmark = pytest.mark.integration

AS_OF = date(2024, 6, 30)
WINDOWS = [1, 7, 30, 36500]
DBT_VARS = {"as_of_date": AS_OF.isoformat(), "performance_windows": WINDOWS}
TOL = 1e-9
RELATIONS = (
    "fct_trades",
    "fct_strategy_daily",
    "mart_performance",
    "mart_model_accuracy",
    "mart_regime_performance",
    "int_market_regimes",
    "int_bars_aggregated_to_daily",
)
# metrics.md test vector
VECTOR_Y = [1, 0, 1, 1, 0, 0, 1, 0, 1, 0]
VECTOR_P = [0.9, 0.8, 0.7, 0.7, 0.6, 0.4, 0.4, 0.3, 0.2, 0.1]


def days_before(n: int) -> date:
    return AS_OF - timedelta(days=n)


def build_dataset() -> Dataset:
    ds = Dataset()
    # Real series on consecutive calendar days; S&P 500 also provides the SPX daily bars.
    spx = sp500_closes()
    ds.add_daily_return_trades(
        "sp500_daily", consecutive_days(close_to_close_returns(spx), AS_OF), 100_000.0, "SPX"
    )
    first_bar = AS_OF - timedelta(days=len(spx) - 1)
    for i, close in enumerate(spx):
        at = datetime.combine(first_bar + timedelta(days=i), time(0, 0))
        ds.bars.append(Bar("SPX", at, close, close, close, close, 1e6))
    goog = close_to_close_returns(goog_closes())
    ds.add_daily_return_trades(
        "goog_crypto", consecutive_days(goog, days_before(3)), 10_000.0, "GOOG", 365
    )
    # Edge cases.
    ds.add_daily_return_trades("one_day", {AS_OF: 0.02}, 1_000.0)
    ds.add_daily_return_trades("zero_variance", {days_before(i): 0.25 for i in range(5)}, 4_096.0)
    ds.add_daily_return_trades("flat", {days_before(i): 0.0 for i in range(10)}, 1_000.0)
    losses = [-0.01, -0.02, -0.005, -0.03, -0.011, -0.002, -0.04, -0.015, -0.007, -0.021]
    ds.add_daily_return_trades(
        "all_losses", {days_before(i): r for i, r in enumerate(losses)}, 1_000.0
    )
    ds.add_daily_return_trades(
        "no_losses", {days_before(i): abs(r) for i, r in enumerate(losses)}, 1_000.0
    )
    gaps = {40: 0.01, 33: -0.02, 20: 0.015, 19: 0.0, 6: -0.01, 2: 0.03}
    ds.add_daily_return_trades("gaps", {days_before(k): r for k, r in gaps.items()}, 5_000.0)
    first_loss = [-0.05, 0.01, 0.02, -0.01, 0.03, 0.004]
    ds.add_daily_return_trades(
        "first_day_loss",
        {days_before(len(first_loss) - 1 - i): r for i, r in enumerate(first_loss)},
        2_000.0,
        periods_per_year=None,
    )
    ds.add_daily_return_trades("future_only", {AS_OF + timedelta(days=3): 0.01}, 1_000.0)
    ds.add_component("no_trades", 1_000.0)
    add_trade_mix(ds)
    add_intraday_bars(ds)
    add_predictions(ds)
    return ds


def add_trade_mix(ds: Dataset) -> None:
    """Many trades a day: longs and shorts, fees, wins, losses and exact break-evens."""
    rng = np.random.default_rng(7)
    ds.add_component("trade_mix", 50_000.0)
    for i in range(400):
        exit_day = days_before(int(rng.integers(1, 46)))
        entry_at = datetime.combine(exit_day, time(10, 0)) - timedelta(
            hours=int(rng.integers(0, 72))
        )
        side = "long" if rng.random() < 0.6 else "short"
        entry = float(np.round(rng.uniform(50, 150), 2))
        kind = rng.random()
        if kind < 0.1:  # break-even: no move, no fees
            exit_, fees = entry, 0.0
        else:
            exit_, fees = float(np.round(entry * (1 + rng.normal(0, 0.02)), 2)), 0.5
        ds.trades.append(
            Trade(
                trade_id=f"mix-{i:04d}",
                component_id="trade_mix",
                symbol="SPX",
                side=side,
                quantity=float(rng.integers(1, 20)),
                entry_ts=entry_at,
                exit_ts=datetime.combine(exit_day, time(15, 0)),
                entry_price=entry,
                exit_price=exit_,
                fees=fees,
            )
        )


def add_intraday_bars(ds: Dataset) -> None:
    for d in range(3):
        for h in range(4):
            at = datetime.combine(days_before(d), time(10 + h, 0))
            px = 100.0 + 10 * d + h
            ds.bars.append(Bar("INTRA", at, px, px + 0.5, px - 0.5, px + 0.25, 10.0 * (h + 1)))


def add_predictions(ds: Dataset) -> None:
    add = ds.predictions.append
    for i, (y, p) in enumerate(zip(VECTOR_Y, VECTOR_P, strict=True)):
        at = datetime.combine(days_before(1), time(12, i))
        add(Prediction(f"vec-{i}", "vector", "v1", "SPX", at, int(p >= 0.5), p, y))
    at = datetime.combine(AS_OF, time(9))
    add(Prediction("vec-unlabelled", "vector", "v1", "SPX", at, 1, 0.9, None))
    at = datetime.combine(days_before(100), time(9))
    add(Prediction("vec-old", "vector", "v1", "SPX", at, 1, 0.9, 0))
    add(Prediction("v0-unlabelled", "vector", "v0", "SPX", at, 1, 0.9, None))
    rng = np.random.default_rng(11)
    for i in range(300):
        y = int(rng.random() < 0.4)
        p = float(np.clip(np.round(rng.normal(0.35 + 0.3 * y, 0.25) / 0.05) * 0.05, 0.0, 1.0))
        proba = None if i % 37 == 0 else p
        label = int(p >= 0.5) if rng.random() < 0.8 else 1 - int(p >= 0.5)
        at = datetime.combine(days_before(int(rng.integers(0, 60))), time(8))
        add(Prediction(f"rnd-{i}", "random", "v2", "GOOG", at, label, proba, y))
    for i in range(5):
        at = datetime.combine(days_before(i), time(8))
        add(Prediction(f"one-{i}", "oneclass", "v1", "GOOG", at, i % 2, 0.2 * i, 1))


@dataclass
class Built:
    dialect: str
    dataset: Dataset
    frames: dict[str, pd.DataFrame]
    duckdb_file: Path | None = None

    def __getitem__(self, name: str) -> pd.DataFrame:
        return self.frames[name]


@pytest.fixture(
    scope="module", params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def built(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Built]:
    ds = build_dataset()
    workdir = tmp_path_factory.mktemp(f"marts_{request.param}")
    project = copy_dbt_project(workdir / "project", ds.components)
    pg_url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    with fresh_settings(request.param, workdir, project, pg_url) as settings:
        with open_warehouse(settings) as wh:
            ds.load(wh)
        run_dbt(settings, "build", dbt_vars=DBT_VARS)
        with connect(settings) as wh:
            frames = {name: wh.fetch_df(f"select * from {name}") for name in RELATIONS}
        duckdb_file = settings.duckdb_file if request.param == "duckdb" else None
        yield Built(request.param, ds, frames, duckdb_file)


# -- helpers ------------------------------------------------------------------------------------
def is_null(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def check(actual: Any, expected: Any, what: str) -> None:
    """Equal to 1e-9 (relative above 1), or NULL where the reference is undefined/non-finite."""
    if expected is None or not np.isfinite(expected):
        assert is_null(actual), f"{what}: expected NULL, got {actual}"
        return
    assert not is_null(actual), f"{what}: expected {expected}, got NULL"
    assert abs(actual - expected) <= TOL * max(1.0, abs(expected)), (
        f"{what}: {actual} != {expected}"
    )


def perf_row(built: Built, component: str, window: int) -> pd.Series:
    df = built["mart_performance"]
    rows = df[(df.component_id == component) & (df.window_days == window)]
    assert len(rows) == 1, f"{component}/{window}: {len(rows)} rows"
    return rows.iloc[0]


def empyrical_metrics(r: np.ndarray, ann: float) -> dict[str, float | None]:
    if len(r) == 0:
        return dict.fromkeys(("sharpe", "sortino", "max_drawdown", "annual_return", "calmar"))
    with np.errstate(all="ignore"):
        return {
            "sharpe": empyrical.sharpe_ratio(r, annualization=ann),
            "sortino": empyrical.sortino_ratio(r, annualization=ann),
            "max_drawdown": empyrical.max_drawdown(r),
            "annual_return": empyrical.annual_return(r, annualization=ann),
            "calmar": empyrical.calmar_ratio(r, annualization=ann),
        }


def trades_frame(ds: Dataset) -> pd.DataFrame:
    df = pd.DataFrame([t.__dict__ for t in ds.trades])
    move = np.where(
        df.side == "long", df.exit_price - df.entry_price, df.entry_price - df.exit_price
    )
    df["net_pnl"] = move * df.quantity - df.fees
    df["trade_return"] = df.net_pnl / (df.entry_price * df.quantity)
    df["exit_date"] = df.exit_ts.dt.date
    return df


RETURN_COMPONENTS = [
    "sp500_daily",
    "goog_crypto",
    "one_day",
    "zero_variance",
    "flat",
    "all_losses",
    "no_losses",
    "gaps",
    "first_day_loss",
    "future_only",
]


# -- risk metrics -------------------------------------------------------------------------------
@pytest.mark.parametrize("component", RETURN_COMPONENTS)
def test_risk_metrics_match_empyrical_on_each_window(built: Built, component: str) -> None:
    """Sharpe, Sortino, max drawdown, CAGR and Calmar equal empyrical's on the window's daily
    returns (zero-filled calendar days from the first trade on), NULL where empyrical is not finite."""
    seed = next(c for c in built.dataset.components if c["component_id"] == component)
    ann = float(seed["periods_per_year"] or 252)
    daily = {d: r for d, r in built.dataset.daily_returns[component].items() if d <= AS_OF}
    for window in WINDOWS:
        row = perf_row(built, component, window)
        r = window_returns(daily, AS_OF, window)
        assert row.n_days == len(r), f"{component}/{window}: n_days"
        assert row.periods_per_year == ann
        for metric, expected in empyrical_metrics(r, ann).items():
            check(row[metric], expected, f"{component}/{window} {metric}")


def test_sp500_full_history_window_has_real_values(built: Built) -> None:
    """The long window covers the whole S&P 500 series: every risk metric is defined."""
    row = perf_row(built, "sp500_daily", 36500)
    assert row.n_days == len(sp500_closes()) - 1
    assert row[["sharpe", "sortino", "max_drawdown", "annual_return", "calmar"]].notna().all()
    assert row.max_drawdown < -0.3


def test_edge_cases_are_null_not_zero(built: Built) -> None:
    """One day, zero variance and no losses give NULL Sharpe/Sortino/Calmar, never 0."""
    one = perf_row(built, "one_day", 30)
    assert one.n_days == 1 and is_null(one.sharpe) and is_null(one.sortino)
    assert one.max_drawdown == 0 and is_null(one.calmar)
    const = perf_row(built, "zero_variance", 30)
    assert is_null(const.sharpe) and is_null(const.sortino) and const.max_drawdown == 0
    first = perf_row(built, "first_day_loss", 30)
    assert first.max_drawdown == pytest.approx(-0.05, abs=TOL)
    nothing = perf_row(built, "no_trades", 30)
    assert nothing.n_days == 0 and nothing.n_trades == 0 and is_null(nothing.sharpe)
    future = perf_row(built, "future_only", 30)
    assert future.n_days == 0 and is_null(future.max_drawdown)


def test_days_after_the_last_trade_are_zero_return_days(built: Built) -> None:
    """goog_crypto stopped trading 3 days before as_of: the 1-day window is one zero return."""
    row = perf_row(built, "goog_crypto", 1)
    assert row.n_days == 1 and row.n_trades == 0
    assert row.max_drawdown == 0 and row.annual_return == 0 and is_null(row.sharpe)


def test_every_component_and_window_has_one_row(built: Built) -> None:
    df = built["mart_performance"]
    assert len(df) == len(built.dataset.components) * len(WINDOWS)
    assert set(df.as_of_date) == {AS_OF}


# -- trade metrics ------------------------------------------------------------------------------
def test_trade_metrics_match_pandas(built: Built) -> None:
    """Win rate (break-evens excluded), profit factor, expectancy and mean trade return equal a
    pandas computation on the trades that exited in each window."""
    trades = trades_frame(built.dataset)
    for component in trades.component_id.unique():
        for window in WINDOWS:
            start = AS_OF - timedelta(days=window - 1)
            t = trades[
                (trades.component_id == component)
                & (trades.exit_date >= start)
                & (trades.exit_date <= AS_OF)
            ]
            row = perf_row(built, component, window)
            what = f"{component}/{window}"
            ret = t.trade_return
            wins, losses = ret[t.net_pnl > 0], ret[t.net_pnl < 0]
            decided = len(wins) + len(losses)
            assert row.n_trades == len(t), what
            assert (row.n_wins, row.n_losses) == (len(wins), len(losses)), what
            assert row.n_break_even == int((t.net_pnl == 0).sum()), what
            check(row.pnl, float(t.net_pnl.sum()), f"{what} pnl")
            p = len(wins) / decided if decided else None
            check(row.win_rate, p, f"{what} win_rate")
            check(row.avg_trade_return, float(ret.mean()) if len(t) else None, f"{what} avg")
            pf = float(wins.sum() / abs(losses.sum())) if len(losses) else None
            check(row.profit_factor, pf, f"{what} profit_factor")
            assert bool(row.has_no_losses) == (len(losses) == 0), what
            expectancy = None
            if decided:
                avg_win = float(wins.mean()) if len(wins) else 0.0
                avg_loss = float(losses.mean()) if len(losses) else 0.0
                expectancy = p * avg_win - (1 - p) * abs(avg_loss)
            check(row.expectancy, expectancy, f"{what} expectancy")


def test_break_evens_separate_expectancy_from_mean_return(built: Built) -> None:
    row = perf_row(built, "trade_mix", 36500)
    assert row.n_break_even > 0
    expected = row.avg_trade_return * row.n_trades / (row.n_trades - row.n_break_even)
    check(row.expectancy, expected, "expectancy vs avg_trade_return")


def test_fct_trades_pnl_return_and_holding_time(built: Built) -> None:
    expected = trades_frame(built.dataset).set_index("trade_id")
    fct = built["fct_trades"].set_index("trade_id").loc[expected.index]
    assert np.allclose(fct.net_pnl, expected.net_pnl, rtol=1e-12, atol=1e-9)
    assert np.allclose(fct.trade_return, expected.trade_return, rtol=1e-12, atol=1e-12)
    held = (expected.exit_ts - expected.entry_ts).dt.total_seconds()
    assert np.allclose(fct.holding_seconds, held)


# -- fct_strategy_daily -------------------------------------------------------------------------
def test_equity_identity_and_unbroken_calendar(built: Built) -> None:
    """equity_end = equity_start + pnl, equity_start = previous equity_end (initial capital on
    day one), every calendar date from first to last exit, and daily_return = pnl / equity_start."""
    daily = built["fct_strategy_daily"].sort_values(["component_id", "date_day"])
    capital = {c["component_id"]: c["initial_capital"] for c in built.dataset.components}
    for component, g in daily.groupby("component_id"):
        assert np.allclose(g.equity_end, g.equity_start + g.pnl, rtol=1e-12)
        assert g.equity_start.iloc[0] == capital[component]
        assert (g.equity_start.iloc[1:].to_numpy() == g.equity_end.iloc[:-1].to_numpy()).all()
        span = (g.date_day.iloc[-1] - g.date_day.iloc[0]).days + 1
        assert len(g) == span and g.date_day.is_unique
        assert np.allclose(g.daily_return, g.pnl / g.equity_start, rtol=1e-15)
        check(g.equity_end.iloc[-1], capital[component] + g.pnl.sum(), f"{component} final")
    gaps = daily[daily.component_id == "gaps"]
    assert len(gaps) == 39 and (gaps.n_trades == 0).sum() == 39 - 6


def test_the_equity_view_reads_in_a_copy_of_the_file_under_another_name(
    built: Built, tmp_path: Path
) -> None:
    """fct_strategy_daily is a view: a backup of the DuckDB file, or the file attached under
    another name by a BI tool, must still read it."""
    if built.duckdb_file is None:
        pytest.skip("a PostgreSQL view is bound to its tables when created")
    copy = tmp_path / "backup.duckdb"
    shutil.copy(built.duckdb_file, copy)
    con = duckdb.connect()
    try:
        con.execute(f"attach '{copy}' as snapshot (read_only)")
        (rows,) = con.execute("select count(*) from snapshot.main.fct_strategy_daily").fetchone()
    finally:
        con.close()
    assert rows == len(built["fct_strategy_daily"]) > 0


def test_daily_returns_are_the_constructed_ones(built: Built) -> None:
    daily = built["fct_strategy_daily"]
    sp = daily[daily.component_id == "sp500_daily"].set_index("date_day").daily_return
    expected = pd.Series(built.dataset.daily_returns["sp500_daily"])
    assert np.allclose(sp.loc[expected.index], expected, rtol=0, atol=1e-13)


# -- model accuracy -----------------------------------------------------------------------------
def accuracy_row(built: Built, model: str, version: str, window: int) -> pd.Series:
    df = built["mart_model_accuracy"]
    rows = df[(df.model_id == model) & (df.model_version == version) & (df.window_days == window)]
    assert len(rows) == 1
    return rows.iloc[0]


def test_model_accuracy_reproduces_the_metrics_md_vector(built: Built) -> None:
    for window in (7, 30):
        row = accuracy_row(built, "vector", "v1", window)
        assert row.n_predictions == 10  # the unlabelled one is ignored, the old one is outside
        check(row.accuracy, 0.6, "accuracy")
        check(row.precision, 0.6, "precision")
        check(row.recall, 0.6, "recall")
        check(row.brier_score, 0.245, "brier")
        assert row.log_loss == pytest.approx(0.6843029, abs=1e-7)
        check(row.auc, 0.66, "auc")
    assert accuracy_row(built, "vector", "v1", 36500).n_predictions == 11
    empty = accuracy_row(built, "vector", "v1", 1)
    assert empty.n_predictions == 0 and is_null(empty.accuracy) and is_null(empty.auc)
    unlabelled = accuracy_row(built, "vector", "v0", 36500)
    assert unlabelled.n_predictions == 0 and is_null(unlabelled.brier_score)


def test_model_accuracy_matches_numpy_with_ties_clipping_and_missing_proba(built: Built) -> None:
    preds = pd.DataFrame([p.__dict__ for p in built.dataset.predictions])
    preds = preds[(preds.model_id == "random") & preds.actual_label.notna()]
    for window in WINDOWS:
        start = datetime.combine(AS_OF - timedelta(days=window - 1), time(0))
        w = preds[
            (preds.ts >= start) & (preds.ts < datetime.combine(AS_OF + timedelta(1), time(0)))
        ]
        row = accuracy_row(built, "random", "v2", window)
        y, label = w.actual_label.to_numpy(int), w.predicted_label.to_numpy(int)
        assert row.n_predictions == len(w)
        check(row.accuracy, float(np.mean(label == y)), "accuracy")
        tp = np.sum((label == 1) & (y == 1))
        check(row.precision, tp / np.sum(label == 1) if np.sum(label == 1) else None, "precision")
        check(row.recall, tp / np.sum(y == 1) if np.sum(y == 1) else None, "recall")
        scored = w[w.predicted_proba.notna()]
        ys, ps = scored.actual_label.to_numpy(int), scored.predicted_proba.to_numpy(float)
        check(row.brier_score, float(np.mean((ps - ys) ** 2)), "brier")
        pc = np.clip(ps, 1e-15, 1 - 1e-15)
        check(row.log_loss, float(-np.mean(ys * np.log(pc) + (1 - ys) * np.log(1 - pc))), "ll")
        n_pos, n_neg = int(ys.sum()), int((1 - ys).sum())
        auc = None
        if n_pos and n_neg:
            ranks = rankdata(ps, method="average")
            auc = (ranks[ys == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
        check(row.auc, auc, f"auc/{window}")


def test_auc_is_null_when_one_class_is_absent(built: Built) -> None:
    row = accuracy_row(built, "oneclass", "v1", 7)
    assert row.n_predictions == 5 and is_null(row.auc) and is_null(row.precision) is False


# -- regimes ------------------------------------------------------------------------------------
def pandas_regimes(closes: pd.Series) -> pd.DataFrame:
    """metrics.md regimes with pandas rolling windows (the reference for the SQL)."""
    log_ret = np.log(closes / closes.shift(1))
    rv20 = log_ret.rolling(20, min_periods=20).std(ddof=1) * np.sqrt(252)
    prev = rv20.shift(1).rolling(252, min_periods=252)
    z = (rv20 - prev.mean()) / prev.std(ddof=1)
    sma = closes.rolling(200, min_periods=200).mean()
    trend = pd.Series(np.where(closes > sma, "up", "down"), index=closes.index).where(sma.notna())
    vol = pd.Series(
        np.select([z > 0.5, z < -0.5], ["high", "low"], "mid"), index=closes.index
    ).where(z.notna())
    regime = (trend + "_" + vol).where(trend.notna() & vol.notna())
    return pd.DataFrame({"rv20": rv20, "rv20_zscore": z, "regime": regime})


def test_market_regimes_match_pandas(built: Built) -> None:
    sql = built["int_market_regimes"]
    sql = sql[sql.symbol == "SPX"].set_index("bar_date").sort_index()
    bars = pd.Series(
        [b.close for b in built.dataset.bars if b.symbol == "SPX"],
        index=[b.ts.date() for b in built.dataset.bars if b.symbol == "SPX"],
    )
    ref = pandas_regimes(bars)
    assert np.allclose(sql.rv20.astype(float), ref.rv20, rtol=1e-9, equal_nan=True)
    assert np.allclose(sql.rv20_zscore.astype(float), ref.rv20_zscore, rtol=1e-7, equal_nan=True)
    assert (sql.regime.fillna("-") == ref.regime.fillna("-")).all()
    assert sql.regime.iloc[:272].isna().all() and sql.regime.iloc[272:].notna().all()


def test_trades_take_the_regime_of_the_bar_before_entry(built: Built) -> None:
    """No look-ahead: a trade entering on day d reads the bar of day d - 1 (bars are daily)."""
    regimes = built["int_market_regimes"]
    regimes = regimes[regimes.symbol == "SPX"].set_index("bar_date").regime
    fct = built["fct_trades"]
    sp = fct[fct.component_id == "sp500_daily"]
    expected = sp.entry_date.map(lambda d: regimes.get(d - timedelta(days=1)))
    assert (sp.regime_at_entry.fillna("-") == expected.fillna("-")).all()
    assert sp.regime_at_entry.notna().sum() > 4000
    assert (sp.regime_bar_date.dropna() < sp.entry_date[sp.regime_bar_date.notna()]).all()
    goog = fct[fct.component_id == "goog_crypto"]
    assert goog.regime_at_entry.isna().all()  # no GOOG bars: unknown


def test_intraday_bars_roll_up_to_daily(built: Built) -> None:
    daily = built["int_bars_aggregated_to_daily"]
    day = daily[(daily.symbol == "INTRA") & (daily.bar_date == AS_OF)].iloc[0]
    assert (day.open_price, day.close_price) == (100.0, 103.25)
    assert (day.high_price, day.low_price, day.volume, day.n_bars) == (103.5, 99.5, 100.0, 4)


def test_regime_performance_keeps_every_trade(built: Built) -> None:
    """Cell counts add up to mart_performance's trades; unknown regimes are a cell of their own;
    the per-trade Sharpe (not annualised) matches pandas; small cells are flagged."""
    cells = built["mart_regime_performance"]
    perf = built["mart_performance"].set_index(["component_id", "window_days"]).n_trades
    totals = cells.groupby(["component_id", "window_days"]).n_trades.sum()
    for key, n in totals.items():
        assert perf.loc[key] == n
    assert perf[perf > 0].index.isin(totals.index).all()
    goog = cells[(cells.component_id == "goog_crypto") & (cells.window_days == 36500)]
    assert list(goog.regime) == ["unknown"]
    assert (cells.is_insufficient_data == (cells.n_trades < 30)).all()
    fct = built["fct_trades"]
    sp = fct[fct.component_id == "sp500_daily"].assign(
        regime=lambda d: d.regime_at_entry.fillna("unknown")
    )
    for regime, g in sp.groupby("regime"):
        row = cells[
            (cells.component_id == "sp500_daily")
            & (cells.window_days == 36500)
            & (cells.regime == regime)
        ].iloc[0]
        assert row.n_trades == len(g)
        check(row.avg_trade_return, float(g.trade_return.mean()), f"{regime} avg")
        check(
            row.sharpe_per_trade,
            float(g.trade_return.mean() / g.trade_return.std(ddof=1)),
            f"{regime} sharpe",
        )


# -- failures stop the pipeline -----------------------------------------------------------------
def test_a_failing_dbt_test_raises_dbt_failed_naming_the_model(
    settings: Settings, tmp_path: Path
) -> None:
    """A raw trade with side 'sideways' fails accepted_values on stg_raw__trades: dbt build
    stops, downstream marts are skipped, and DbtFailed names the model."""
    ds = Dataset()
    ds.add_daily_return_trades("bad", {AS_OF: 0.01}, 1_000.0)
    ds.trades[0].side = "sideways"
    project = copy_dbt_project(tmp_path / "project", ds.components)
    copy = Settings(
        duckdb_path=settings.duckdb_path,
        database_url=settings.database_url,
        schema_name=settings.schema_name,
        project_dir=project,
    )
    with open_warehouse(copy) as wh:
        ds.load(wh)
    with pytest.raises(DbtFailed, match="stg_raw__trades"):
        run_dbt(copy, "build", dbt_vars=DBT_VARS)
    with connect(copy) as wh:
        assert not wh.table_exists("mart_performance")
