"""Incremental builds give the marts a full rebuild gives, on DuckDB and PostgreSQL.

Scenario: three components trade two symbols for 90 days; the warehouse is built. Two hours of
changes then arrive through `runner ingest`, each followed by an incremental `dbt build`: late
trades for dates months back, new trades and a late daily bar of one symbol (a gap 100 days back
filled); then more new trades, yesterday's daily bar of both symbols (which changes the regime at
entry of today's trades), one trade corrected in place (new exit price and exit date, new
loaded_at) and one bar corrected in place. Every mart must equal a `--full-refresh` build of the
same raw rows in a second DuckDB file or PostgreSQL schema, and each build must have rewritten
only the trades and bars those changes touch.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from benchmarks.scale import mart_differences, mart_names
from runner.analyze import bars_changed_since_last_build, build_analytics
from runner.config import Settings
from runner.dbt import NodeResult
from runner.ingest import Kind, ingest_file
from runner.warehouse import Warehouse, connect
from tests.python.scenarios import Bar, Dataset, copy_dbt_project, fresh_settings, open_warehouse

pytestmark = pytest.mark.integration

AS_OF = date(2024, 6, 30)
SYMBOLS = ("AAA", "BBB")
N_BAR_DAYS = 400  # int_market_regimes needs ~272 daily bars before a regime is known
CORRECTED = "beta-00010"
COMPONENTS = {"alpha": "AAA", "beta": "BBB", "gamma": "AAA"}


def day(n: int) -> date:
    return AS_OF - timedelta(days=n)


def bar(symbol: str, on: date, close: float) -> Bar:
    at = datetime.combine(on, time(0, 0))
    return Bar(symbol, at, close, close * 1.01, close * 0.99, close, 1e6)


def closes(symbol: str) -> np.ndarray:
    rng = np.random.default_rng(sum(map(ord, symbol)))
    vol = np.where(np.arange(N_BAR_DAYS) < N_BAR_DAYS - 60, 0.01, 0.03)
    return 100 * np.exp(np.cumsum(rng.normal(0.0005, vol)))


LATE_BAR = ("AAA", 100)  # (symbol, days before AS_OF): missing from the base load, loaded in hour A
CORRECTED_BAR = ("BBB", 2)  # corrected in hour B


def base_bars(symbol: str) -> list[Bar]:
    """A symbol's daily bars up to the day before yesterday (yesterday's arrives in hour B)."""
    series = closes(symbol)[:-1]
    return [bar(symbol, day(len(series) + 1 - i), c) for i, c in enumerate(series)]


def base_dataset() -> Dataset:
    """Bars up to the day before yesterday, but for the late one; trades for the last 90 days,
    today's included."""
    ds = Dataset()
    for symbol in SYMBOLS:
        ds.bars += [
            b for b in base_bars(symbol) if (symbol, (AS_OF - b.ts.date()).days) != LATE_BAR
        ]
    rng = np.random.default_rng(5)
    for component, symbol in COMPONENTS.items():
        ds.add_component(component, 100_000.0)
        pnls = {day(n): list(rng.normal(5, 40, int(rng.integers(1, 4)))) for n in range(90)}
        ds.add_pnl_trades(component, pnls, symbol=symbol)
    return ds


# (component, days before AS_OF, exit hour) of each hour's trades
HOUR_A = [("gamma", 30, 11), ("alpha", 75, 12), ("beta", 120, 13), ("alpha", 0, 10)]
HOUR_T = [("beta", 0, 15), ("gamma", 0, 16)]  # an hour with trades only
HOUR_B = [("alpha", 0, 17), ("alpha", 0, 18), ("beta", 0, 17), ("gamma", 0, 19)]
HOUR_A_AT = datetime(2024, 6, 30, 12, 0)  # ingest times: 6-7 h apart, beyond the 2 h lookback
HOUR_T_AT = datetime(2024, 6, 30, 18, 0)
HOUR_B_AT = datetime(2024, 7, 1, 1, 0)


def trades_file(path: Path, prefix: str, specs: list[tuple[str, int, int]]) -> Path:
    rows = []
    for i, (component, n_days, hour) in enumerate(specs):
        exit_at = datetime.combine(day(n_days), time(hour, 30))
        rows.append(
            {
                "trade_id": f"{prefix}-{i}",
                "component_id": component,
                "symbol": COMPONENTS[component],
                "side": "short" if i % 2 else "long",
                "quantity": 3.0,
                "entry_ts": exit_at - timedelta(minutes=20),
                "exit_ts": exit_at,
                "entry_price": 100.0,
                "exit_price": 100.0 + 7 * (i - 2),
                "fees": 0.25,
            }
        )
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def apply_hour_a(settings: Settings, workdir: Path) -> None:
    path = trades_file(workdir / "hour_a.parquet", "a", HOUR_A)
    symbol, n_days = LATE_BAR
    late = [b.__dict__ for b in base_bars(symbol) if b.ts.date() == day(n_days)]
    bars_path = workdir / "hour_a_bars.parquet"
    pq.write_table(pa.Table.from_pylist(late), bars_path)
    with connect(settings) as wh:
        result = ingest_file(wh, settings, Kind.trades, path, now=HOUR_A_AT)
        assert ingest_file(wh, settings, Kind.bars, bars_path, now=HOUR_A_AT).inserted == 1
    assert result.inserted == len(HOUR_A)


def apply_hour_t(settings: Settings, workdir: Path) -> None:
    path = trades_file(workdir / "hour_t.parquet", "t", HOUR_T)
    with connect(settings) as wh:
        assert ingest_file(wh, settings, Kind.trades, path, now=HOUR_T_AT).inserted == len(HOUR_T)


def apply_hour_b(settings: Settings, workdir: Path) -> None:
    path = trades_file(workdir / "hour_b.parquet", "b", HOUR_B)
    bars = [bar(s, day(1), float(closes(s)[-1])).__dict__ for s in SYMBOLS]
    bars_path = workdir / "hour_b_bars.parquet"
    pq.write_table(pa.Table.from_pylist(bars), bars_path)
    with connect(settings) as wh:
        assert ingest_file(wh, settings, Kind.trades, path, now=HOUR_B_AT).inserted == len(HOUR_B)
        assert ingest_file(wh, settings, Kind.bars, bars_path, now=HOUR_B_AT).inserted == 2
        # A corrected fill: the operator rewrites the raw row and stamps it (macros/incremental.sql).
        wh.execute(
            "update raw_trades set exit_price = exit_price + 9, entry_ts = entry_ts - interval"
            " '1 day', exit_ts = exit_ts - interval '1 day', loaded_at = %(now)s"
            " where trade_id = %(id)s",
            {"id": CORRECTED, "now": HOUR_B_AT},
        )
        # A corrected bar: a new close (and high), stamped with the time of the correction.
        wh.execute(
            "update raw_bars set close = close * 1.005, high = high * 1.005, loaded_at = %(now)s"
            " where symbol = %(symbol)s and ts = %(ts)s",
            {"symbol": CORRECTED_BAR[0], "ts": day(CORRECTED_BAR[1]), "now": HOUR_B_AT},
        )


def copy_raw(source: Settings, target: Settings) -> None:
    """The same raw rows in a second, empty PostgreSQL schema."""
    with open_warehouse(target) as wh:
        for table in ("raw_trades", "raw_bars", "raw_predictions"):
            wh.execute(f'insert into "{table}" select * from "{source.schema}"."{table}"')


Place = tuple[str | None, str]


def compared_places(wh: Warehouse, full: Settings) -> tuple[Place, Place]:
    """(catalog, schema) of the incremental build (wh) and of the full one, readable from wh."""
    if wh.dialect == "duckdb":
        wh.execute(f"attach '{full.duckdb_file}' as full_build (read_only)")
        row = wh.fetchone("select current_database()")
        assert row is not None
        return (str(row[0]), wh.schema), ("full_build", full.schema)
    return (None, wh.schema), (None, full.schema)


@dataclass
class Outcome:
    differences: list[str]
    recomputed: int  # trades the last build rewrote
    trades: int
    bars_rewritten: list[int]  # fct_bar_features rows each hour's build rewrote
    bars_changed: list[bool]  # bars_changed_since_last_build before each hour's build, and after
    bar_nodes: list[int]  # bar models and their data tests each build ran, the first included
    tests_run: list[set[str]]  # the data tests each build ran, the first included
    models_run: list[set[str]]  # the models each build ran, the first included
    invariant_tests: set[str]  # the data tests tagged invariant


def rewritten(settings: Settings, model: str) -> int:
    """Rows the last build's select of an incremental model produced: the rows it rewrote."""
    compiled = next(settings.dbt_target_dir.rglob(f"compiled/**/{model}.sql")).read_text()
    with connect(settings) as wh:
        row = wh.fetchone(f"select count(*) from ({compiled}) as rewritten")
    assert row is not None
    return int(row[0])


def bars_changed(settings: Settings) -> bool:
    with connect(settings) as wh:
        return bars_changed_since_last_build(wh)


BAR_MODELS = (
    "stg_raw__bars",
    "int_bars_aggregated_to_daily",
    "int_market_regimes",
    "int_bar_",
    "fct_bar_features",
)


def invariant_tests(settings: Settings) -> set[str]:
    manifest = json.loads((settings.dbt_target_dir / "manifest.json").read_text())
    return {
        node["name"]
        for node in manifest["nodes"].values()
        if node["resource_type"] == "test" and "invariant" in node["tags"]
    }


def bar_nodes(nodes: list[NodeResult]) -> int:
    """Bar models (tag bars) and their data tests among a build's nodes."""
    return sum(1 for n in nodes if any(m in n.name for m in BAR_MODELS))


@pytest.fixture(
    scope="module", params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def outcome(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Outcome]:
    ds = base_dataset()
    workdir = tmp_path_factory.mktemp(f"incremental_{request.param}")
    project = copy_dbt_project(workdir / "project", ds.components)
    pg_url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    marts = mart_names(project)
    rewritten_bars: list[int] = []
    with fresh_settings(request.param, workdir / "incr", project, pg_url) as incr:
        with open_warehouse(incr) as wh:
            ds.load(wh)
        built = [build_analytics(incr, AS_OF)]
        changed = []
        for hour in (apply_hour_a, apply_hour_t, apply_hour_b):
            hour(incr, workdir)
            changed.append(bars_changed(incr))
            built.append(build_analytics(incr, AS_OF))
            ran = any(n.name == "fct_bar_features" for n in built[-1])
            rewritten_bars.append(rewritten(incr, "fct_bar_features") if ran else 0)
        changed.append(bars_changed(incr))
        recomputed = rewritten(incr, "fct_trades")
        invariant = invariant_tests(incr)
        with fresh_settings(request.param, workdir / "full", project, pg_url) as full:
            if request.param == "duckdb":
                full.duckdb_file.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(incr.duckdb_file, full.duckdb_file)
            else:
                copy_raw(incr, full)
            build_analytics(full, AS_OF, full_refresh=True)
            with connect(incr) as wh:
                left, right = compared_places(wh, full)
                differences = mart_differences(wh, left, right, marts)
                trades = wh.fetchone("select count(*) from fct_trades")
        yield Outcome(
            differences,
            recomputed,
            int(trades[0]) if trades else 0,
            rewritten_bars,
            changed,
            [bar_nodes(nodes) for nodes in built],
            [{n.name for n in nodes if n.resource_type == "test"} for nodes in built],
            [{n.name for n in nodes if n.resource_type == "model"} for nodes in built],
            invariant,
        )


def test_every_mart_of_the_incremental_build_equals_a_full_refresh(outcome: Outcome) -> None:
    assert outcome.differences == []


def test_the_incremental_build_rewrites_only_the_changed_trades(outcome: Outcome) -> None:
    """The last build rewrites the trades loaded within the lookback (hours T and B), the
    corrected one, and every trade entered from yesterday on, whose regime at entry the new
    and the corrected bars (yesterday's, the day before's) may change: about 30 of ~550."""
    loaded = [f"t-{i}" for i in range(len(HOUR_T))] + [f"b-{i}" for i in range(len(HOUR_B))]
    entered = [t.trade_id for t in base_dataset().trades if t.entry_ts.date() >= day(1)] + [
        f"a-{i}" for i, (_, n_days, _) in enumerate(HOUR_A) if n_days <= 1
    ]
    assert outcome.recomputed == len({*loaded, *entered, CORRECTED})
    n_base = len(base_dataset().trades)
    assert outcome.trades == n_base + len(HOUR_A) + len(HOUR_T) + len(HOUR_B)


def test_the_bar_models_rewrite_only_the_changed_symbols_from_their_first_changed_bar(
    outcome: Outcome,
) -> None:
    """Hour A's late bar (AAA, 100 days back) rewrites AAA's feature rows from h = 5 bars
    before it on (their labels look ahead into it) and none of BBB's; the trades-only hour
    rewrites nothing; hour B's new bars and BBB's corrected bar the day before rewrite AAA from
    5 bars before yesterday and BBB from 5 bars before the day before yesterday on."""
    horizon = 5
    late_symbol, late_days = LATE_BAR
    hour_a = late_days + horizon - 1  # bars from day(late + h) to day(2), one a day
    hour_b = (1 + horizon) + (CORRECTED_BAR[1] + horizon)
    assert late_symbol == "AAA" and CORRECTED_BAR[0] == "BBB"
    assert outcome.bars_rewritten == [hour_a, 0, hour_b]


def test_the_bar_models_and_tests_run_only_when_bars_changed(outcome: Outcome) -> None:
    """Bars changed before hours A and B, not before the trades-only hour nor after B; the
    hourly build then leaves out the bar models and their data tests, the others run them (all
    but the staging view over raw_bars and its tests: an hourly build leaves views as they are)."""
    assert outcome.bars_changed == [True, False, True, False]
    first, hour_a, hour_t, hour_b = outcome.bar_nodes
    assert hour_a > 10 and hour_a == hour_b and first > hour_a
    assert hour_t == 0


def test_the_models_built_from_the_seeds_alone_are_built_in_full_builds_only(
    outcome: Outcome,
) -> None:
    """The thresholds resolved from the seeds are as the last full build left them (a changed
    seed makes the next build a full one); the hourly builds still rebuild what reads them."""
    first, *hours = outcome.models_run
    assert "int_alert_thresholds_resolved" in first
    for ran in hours:
        assert "int_alert_thresholds_resolved" not in ran
        assert {"mart_metric_alerts", "fct_rolling_metrics_daily"} <= ran


def test_the_invariant_data_tests_run_in_full_builds_only(outcome: Outcome) -> None:
    """The tests of what a model's SQL guarantees run in the first (full) build, not in the
    hourly ones; the hourly builds still test the rows they wrote (the incremental models' keys,
    the trades' key and bounds, the relationship to the components seed)."""
    first, *hours = outcome.tests_run
    assert len(outcome.invariant_tests) > 30
    assert outcome.invariant_tests <= first
    hourly = {
        "unique_fct_trades_trade_id",
        "relationships_int_trades_aggregated_to_daily_component_id__component_id__ref_components_",
        "not_null_int_strategy_days_filled_daily_return",
    }
    for ran in hours:
        assert not ran & outcome.invariant_tests
        assert hourly <= ran
