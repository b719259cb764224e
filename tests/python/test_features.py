"""The point-in-time feature mart fct_bar_features on DuckDB and PostgreSQL (docs/features.md):
its values against pandas on real daily (GOOG) and hourly (EURUSD) bars, no look-ahead on bars
cut at five times, the look-ahead checker catching a planted leak, and the contract and tests."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from runner.config import Settings
from runner.dbt import NodeResult, run_dbt
from runner.errors import DbtFailed
from runner.ingest import ingest_file
from runner.warehouse import connect
from tests.python.lookahead import check_lookahead
from tests.python.scenarios import PROJECT_DIR, copy_dbt_project, fresh_settings, open_warehouse

pytestmark = pytest.mark.integration

MART = "fct_bar_features"
HORIZON = 5  # dbt_project.yml var feature_label_horizon_bars
TOL = 1e-9
FEATURES = (
    "f_ret_1",
    "f_ret_5",
    "f_ret_10",
    "f_ret_20",
    "f_vol_10",
    "f_vol_20",
    "f_dist_sma_10",
    "f_dist_sma_50",
    "f_dist_sma_200",
    "f_rsi_14",
    "f_volume_z_20",
    "f_range_1",
    "f_regime_trend_up",
    "f_regime_vol_high",
    "f_regime_vol_low",
    "f_hour",
    "f_dow",
)
CONTRACT = {
    "symbol": "text",
    "bar_at": "timestamp",
    "bar_date": "date",
    "close_price": "double precision",
    **dict.fromkeys(FEATURES, "double precision"),
    "label_horizon_bars": "integer",
    "forward_return": "double precision",
    "label": "integer",
    "label_resolved_at": "timestamp",
    "loaded_at": "timestamp",
}
# Cut times for the look-ahead checks, besides the trend-flip cut (trend_flip_cut). Daily (GOOG,
# with regimes known): the planted-leak test uses both, the no-look-ahead test the second. Hourly
# (EURUSD): a time between two bars, a 10:00 bar mid-day in the stretch where its trend regime is
# known, and the bar two before the last (labels pending).
DAILY_CUTS = (datetime(2006, 3, 22), datetime(2010, 8, 4))
HOURLY_CUTS = (
    datetime(2017, 9, 12, 13, 30),
    datetime(2018, 2, 1, 10, 0),
    datetime(2018, 2, 7, 13, 0),
)


# -- data -----------------------------------------------------------------------------------------
def markets() -> dict[str, pd.DataFrame]:
    """backtesting.py's sample data: GOOG daily 2004-2013, EURUSD hourly 2017-2018, and GOOG_2H,
    GOOG's days as two intraday bars (regimes that flip, on intraday bars)."""
    from backtesting.test import EURUSD, GOOG

    frames = {
        symbol: frame.rename(columns=str.lower).rename_axis("ts").reset_index()
        for symbol, frame in (("GOOG", GOOG), ("EURUSD", EURUSD))
    }
    frames["GOOG_2H"] = two_bars_a_day(frames["GOOG"])
    return frames


def two_bars_a_day(daily: pd.DataFrame) -> pd.DataFrame:
    """Each daily bar as a 10:00 bar (open to the midpoint of open and close) and a 16:00 bar
    (midpoint to close, the day's high and low): the daily roll-up is the daily bar again."""
    mid = (daily["open"] + daily["close"]) / 2
    morning = pd.DataFrame(
        {
            "ts": daily["ts"] + pd.Timedelta(hours=10),
            "open": daily["open"],
            "high": np.maximum(daily["open"], mid),
            "low": np.minimum(daily["open"], mid),
            "close": mid,
            "volume": daily["volume"] / 2,
        }
    )
    afternoon = daily.assign(
        ts=daily["ts"] + pd.Timedelta(hours=16), open=mid, volume=daily["volume"] / 2
    )
    return pd.concat([morning, afternoon]).sort_values("ts").reset_index(drop=True)


def trend_flip_cut(daily: pd.DataFrame, after: int = 300) -> datetime:
    """The 10:00 bar of the first day (past `after` days) whose trend regime (close vs its 200-day
    SMA) is not the same on the 10:00 close as on the day's close: at that cut a regime read from
    the same day would change when the afternoon bar arrives."""
    close, mid = daily["close"], (daily["open"] + daily["close"]) / 2
    sma = close.rolling(200).mean()
    partial_sma = sma + (mid - close) / 200
    flips = (close > sma) != (mid > partial_sma)
    day = daily["ts"][flips & sma.notna() & (daily.index >= after)].iloc[0]
    return (day + pd.Timedelta(hours=10)).to_pydatetime()


def ingest_markets(settings: Settings, workdir: Path, frames: Mapping[str, pd.DataFrame]) -> None:
    with open_warehouse(settings) as wh:
        for symbol, frame in frames.items():
            out = frame.assign(symbol=symbol, ts=frame["ts"].dt.strftime("%Y-%m-%d %H:%M:%S"))
            path = workdir / f"{symbol}.csv"
            out[["symbol", "ts", "open", "high", "low", "close", "volume"]].to_csv(
                path, index=False
            )
            assert ingest_file(wh, settings, "bars", path).rejected == 0


def read_mart(settings: Settings) -> pd.DataFrame:
    with connect(settings) as wh:
        frame = wh.fetch_df(f"select * from {MART} order by symbol, bar_at")
    for column in ("bar_at", "label_resolved_at"):
        frame[column] = pd.to_datetime(frame[column])
    return frame


# -- the definitions, in pandas -------------------------------------------------------------------
def expected_regimes(bars: pd.DataFrame) -> pd.DataFrame:
    """int_market_regimes (metrics.md "Market regimes") on the daily bars (last close of each UTC
    date), shifted to the next daily bar: the regime a bar of that date may use."""
    daily = bars.groupby(bars["ts"].dt.normalize())["close"].last()
    log_return = np.log(daily / daily.shift(1))
    rv20 = log_return.rolling(20).std() * np.sqrt(252.0)
    history = rv20.shift(1).rolling(252)
    spread = history.std()
    z = ((rv20 - history.mean()) / spread).where(spread > 0)
    sma200 = daily.rolling(200).mean()
    trend_up = (daily > sma200).astype(float).where(sma200.notna())
    vol_high = (z > 0.5).astype(float).where(z.notna())
    vol_low = (z < -0.5).astype(float).where(z.notna())
    regimes = pd.DataFrame(
        {"f_regime_trend_up": trend_up, "f_regime_vol_high": vol_high, "f_regime_vol_low": vol_low}
    )
    return regimes.shift(1)


def expected_features(bars: pd.DataFrame, horizon: int = HORIZON) -> pd.DataFrame:
    """Every column of the mart from its definition in docs/features.md, for one symbol."""
    close, volume = bars["close"], bars["volume"]
    out = pd.DataFrame({"bar_at": bars["ts"], "close_price": close})
    for k in (1, 5, 10, 20):
        out[f"f_ret_{k}"] = close / close.shift(k) - 1
    log_return = np.log(close / close.shift(1))
    for k in (10, 20):
        out[f"f_vol_{k}"] = log_return.rolling(k).std(ddof=1)
    for k in (10, 50, 200):
        out[f"f_dist_sma_{k}"] = close / close.rolling(k).mean() - 1
    # Cutler's RSI: simple means of the last 14 gains and losses; 100 with no loss, 50 if flat.
    change = close.diff()
    mean_gain = change.clip(lower=0).rolling(14).mean()
    mean_loss = (-change).clip(lower=0).rolling(14).mean()
    with np.errstate(divide="ignore", invalid="ignore"):
        rsi = 100 - 100 / (1 + mean_gain / mean_loss)
    rsi = rsi.mask(mean_loss.eq(0) & mean_gain.gt(0), 100.0)
    out["f_rsi_14"] = rsi.mask(mean_loss.eq(0) & mean_gain.eq(0), 50.0)
    previous = volume.shift(1).rolling(20)
    spread = previous.std()
    out["f_volume_z_20"] = ((volume - previous.mean()) / spread).where(spread > 0)
    out["f_range_1"] = (bars["high"] - bars["low"]) / close
    regimes = expected_regimes(bars).reindex(bars["ts"].dt.normalize().to_numpy())
    for column in regimes:
        out[column] = regimes[column].to_numpy()
    out["f_hour"] = bars["ts"].dt.hour.astype(float)
    out["f_dow"] = (bars["ts"].dt.dayofweek + 1).astype(float)
    out["label_horizon_bars"] = horizon
    out["forward_return"] = close.shift(-horizon) / close - 1
    out["label"] = (out["forward_return"] > 0).astype(float).where(out["forward_return"].notna())
    out["label_resolved_at"] = bars["ts"].shift(-horizon)
    return out


# -- a build per warehouse --------------------------------------------------------------------------
@dataclass
class Built:
    dialect: str
    settings: Settings
    results: list[NodeResult]
    mart: pd.DataFrame
    seconds: float


@pytest.fixture(
    scope="module", params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def built(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Built]:
    """GOOG and EURUSD ingested and `dbt build --select +fct_bar_features` run (models and tests)."""
    workdir = tmp_path_factory.mktemp(f"features_{request.param}")
    pg_url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    with fresh_settings(request.param, workdir, PROJECT_DIR, pg_url) as settings:
        ingest_markets(settings, workdir, markets())
        started = time.perf_counter()
        results = run_dbt(settings, "build", select=f"+{MART}")
        seconds = time.perf_counter() - started
        yield Built(request.param, settings, results, read_mart(settings), seconds)


def assert_column_matches(actual: pd.Series, expected: pd.Series, where: str) -> None:
    a = pd.to_numeric(actual, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    e = pd.to_numeric(expected, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    null_a, null_e = np.isnan(a), np.isnan(e)
    mismatched = np.flatnonzero(null_a != null_e)
    assert not mismatched.size, f"{where}: NULL at different rows, first at row {mismatched[0]}"
    np.testing.assert_allclose(a[~null_a], e[~null_e], rtol=TOL, atol=1e-12, err_msg=where)


@pytest.mark.parametrize("symbol", ["GOOG", "EURUSD", "GOOG_2H"])
def test_features_and_labels_equal_pandas_definitions(built: Built, symbol: str) -> None:
    """Real daily and hourly bars (and GOOG as two bars a day, whose regimes come from the daily
    roll-up): every feature, its NULL warm-up, the label and its t1 equal a pandas computation
    of the documented definitions to 1e-9."""
    bars = markets()[symbol]
    expected = expected_features(bars)
    actual = built.mart[built.mart["symbol"] == symbol].reset_index(drop=True)
    assert len(actual) == len(bars)
    assert (actual["bar_at"].to_numpy() == expected["bar_at"].to_numpy()).all()
    assert (actual["bar_date"].astype(str).to_numpy() == bars["ts"].dt.strftime("%Y-%m-%d")).all()
    for column in ("close_price", *FEATURES, "label_horizon_bars", "forward_return", "label"):
        assert_column_matches(
            actual[column], expected[column], f"{built.dialect} {symbol} {column}"
        )
    resolved, t1 = actual["label_resolved_at"], expected["label_resolved_at"]
    assert (resolved.isna() == t1.isna()).all()
    assert (resolved.dropna().to_numpy() == t1.dropna().to_numpy()).all()


def test_warm_up_is_null_and_not_zero(built: Built) -> None:
    """The first rows of a symbol hold NULL, never 0, in every window feature; each feature is
    set from the bar where its history is complete (20 returns = 21 bars, SMA200 = 200 bars)."""
    goog = built.mart[built.mart["symbol"] == "GOOG"].reset_index(drop=True)
    first_set = {
        "f_ret_1": 1,
        "f_ret_20": 20,
        "f_vol_10": 10,
        "f_vol_20": 20,
        "f_dist_sma_200": 199,
        "f_rsi_14": 14,
        "f_volume_z_20": 20,
        "f_regime_trend_up": 200,
        "f_regime_vol_high": 273,
    }
    for column, row in first_set.items():
        assert goog[column].iloc[:row].isna().all(), column
        assert goog[column].notna().iloc[row], column
    daily = built.mart["f_hour"][built.mart["symbol"] == "GOOG"]
    assert set(daily) == {0.0}  # daily bars: constant, the trainer drops it


def test_unresolved_labels_are_null_at_the_end(built: Built) -> None:
    """The last h bars of each symbol have no bar t+h yet: label, forward return and t1 NULL."""
    for _, rows in built.mart.groupby("symbol"):
        tail, head = rows.iloc[-HORIZON:], rows.iloc[:-HORIZON]
        assert tail[["label", "forward_return", "label_resolved_at"]].isna().all().all()
        assert head[["label", "forward_return", "label_resolved_at"]].notna().all().all()
        assert (
            head["label_resolved_at"].to_numpy() == rows["bar_at"].iloc[HORIZON:].to_numpy()
        ).all()


def test_contract_and_yaml_tests_pass_in_dbt_build(built: Built) -> None:
    """dbt build enforced the contract (names and types) and every YAML test of the mart ran and
    passed; every mart column is documented and has at least one test or a not-null constraint
    of the contract (enforced by the warehouse when the table is written)."""
    mart = [r for r in built.results if r.resource_type == "model" and r.name == MART]
    assert [r.status for r in mart] == ["success"]
    manifest = json.loads((built.settings.dbt_target_dir / "manifest.json").read_text())
    node = manifest["nodes"][f"model.tradebase.{MART}"]
    assert node["contract"]["enforced"] is True
    assert {c: v["data_type"] for c, v in node["columns"].items()} == CONTRACT
    assert all(v["description"] for v in node["columns"].values())
    tests = [
        n
        for n in manifest["nodes"].values()
        if n["resource_type"] == "test" and f"model.tradebase.{MART}" in n["depends_on"]["nodes"]
    ]
    tested = {n.get("column_name") or n["test_metadata"]["name"] for n in tests}
    constrained = {c for c, v in node["columns"].items() if v["constraints"]}
    assert set(CONTRACT) <= tested | constrained
    by_name = {r.name: r.status for r in built.results if r.resource_type == "test"}
    statuses = {by_name[n["name"]] for n in tests}
    assert statuses == {"pass"}, statuses
    assert list(read_mart(built.settings).columns) == list(CONTRACT)


def test_label_horizon_is_the_dbt_var(tmp_path: Path) -> None:
    """feature_label_horizon_bars = 3 labels each bar by the close 3 bars ahead and resolves it at
    that bar; a horizon that is not a whole number >= 1 fails the build with the var's name."""
    with fresh_settings("duckdb", tmp_path, PROJECT_DIR) as settings:
        bars = markets()["GOOG"].iloc[:300].reset_index(drop=True)
        ingest_markets(settings, tmp_path, {"GOOG": bars})
        run_dbt(settings, "run", select=f"+{MART}", dbt_vars={"feature_label_horizon_bars": 3})
        actual = read_mart(settings)
        with pytest.raises(DbtFailed, match="feature_label_horizon_bars"):
            run_dbt(settings, "run", select=f"+{MART}", dbt_vars={"feature_label_horizon_bars": 0})
    expected = expected_features(bars, horizon=3)
    assert set(actual["label_horizon_bars"]) == {3}
    for column in ("forward_return", "label"):
        assert_column_matches(actual[column], expected[column], f"h=3 {column}")
    assert (actual["label_resolved_at"].isna() == expected["label_resolved_at"].isna()).all()
    assert actual["label_resolved_at"].iloc[:-3].tolist() == bars["ts"].iloc[3:].tolist()


# -- no look-ahead -----------------------------------------------------------------------------------
@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def scratch(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    """A new warehouse holding GOOG and EURUSD bars, for the checker to cut."""
    pg_url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    with fresh_settings(request.param, tmp_path, PROJECT_DIR, pg_url) as settings:
        ingest_markets(settings, tmp_path, markets())
        yield settings


def test_features_never_change_when_later_bars_arrive(scratch: Settings) -> None:
    """The mart rebuilt on bars cut at five times (daily, mid-day hourly, and 10:00 on a day whose
    trend regime flips with its afternoon bar) keeps every f_ value of every row up to the cut,
    and shows no label that resolves after the cut."""
    cuts = (trend_flip_cut(markets()["GOOG"]), DAILY_CUTS[1], *HOURLY_CUTS)
    report = check_lookahead(scratch, cuts)
    assert report.rows_compared > 10_000
    assert not report.leaks, report.describe()


def plant(project: Path, path: str, old: str, new: str) -> None:
    file = project / path
    text = file.read_text()
    assert old in text, f"{old!r} not in {path}"
    file.write_text(text.replace(old, new))


def add_peeking_feature(project: Path) -> None:
    """Plant a leak in the project copy: f_peek, the next bar's return, in the mart and its YAML."""
    anchor = "        labels.label_horizon_bars,\n"
    peek = (
        "        lead(rolling_features.close_price) over (\n"
        "            partition by rolling_features.symbol order by rolling_features.bar_at\n"
        "        ) / rolling_features.close_price - 1 as f_peek,\n"
    )
    plant(project, f"models/marts/optimize/{MART}.sql", anchor, peek + anchor)
    spec_path = project / "models" / "marts" / "optimize" / "_optimize__models.yml"
    spec = yaml.safe_load(spec_path.read_text())
    [model] = [m for m in spec["models"] if m["name"] == MART]
    model["columns"].append(
        {"name": "f_peek", "data_type": "double precision", "description": "A planted leak."}
    )
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))


def test_checker_names_a_feature_that_peeks_one_bar_ahead(tmp_path: Path) -> None:
    """A copy of the project whose mart has f_peek = lead(close) / close - 1: the checker reports
    f_peek, by name, at every cut, and no other feature."""
    project = copy_dbt_project(tmp_path / "project")
    add_peeking_feature(project)
    with fresh_settings("duckdb", tmp_path, project) as settings:
        ingest_markets(settings, tmp_path, {"GOOG": markets()["GOOG"]})
        report = check_lookahead(settings, DAILY_CUTS)
    assert report.leaking_columns == {"f_peek"}, report.describe()
    assert {leak.cut_at for leak in report.leaks} == set(DAILY_CUTS)


def test_checker_catches_a_same_day_regime_on_intraday_bars(tmp_path: Path) -> None:
    """A copy of the project that joins each bar to its own day's regime (not the previous
    day's): on two bars a day, cut at 10:00 on a day whose trend flips with the 16:00 close, the
    checker reports f_regime_trend_up. The reason the mart reads the previous daily bar."""
    project = copy_dbt_project(tmp_path / "project")
    path = "models/intermediate/features/int_market_regimes_lagged.sql"
    for column in ("trend", "volatility"):
        plant(project, path, f"lag({column}) over (partition by symbol order by bar_date)", column)
    frames = markets()
    with fresh_settings("duckdb", tmp_path, project) as settings:
        ingest_markets(settings, tmp_path, {"GOOG_2H": frames["GOOG_2H"]})
        report = check_lookahead(settings, [trend_flip_cut(frames["GOOG"])])
    assert "f_regime_trend_up" in report.leaking_columns, report.describe()
    assert report.leaking_columns <= {"f_regime_trend_up", "f_regime_vol_high", "f_regime_vol_low"}
