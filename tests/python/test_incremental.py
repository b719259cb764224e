"""Incremental builds give the marts a full rebuild gives, on DuckDB and PostgreSQL.

Scenario: three components trade two symbols for 90 days; the warehouse is built. Two hours of
changes then arrive through `runner ingest`, each followed by an incremental `dbt build`: late
trades for dates months back and new trades; then more new trades, yesterday's daily bar (which
changes the regime at entry of today's trades) and one trade corrected in place (new exit price
and exit date, new loaded_at). Every mart must equal a `--full-refresh` build of the same raw rows
in a second DuckDB file or PostgreSQL schema, and the last build must have rewritten only the
trades those changes touch.
"""

from __future__ import annotations

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
from runner.analyze import build_analytics
from runner.config import Settings
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


def base_dataset() -> Dataset:
    """Bars up to the day before yesterday; trades for the last 90 days, today's included."""
    ds = Dataset()
    for symbol in SYMBOLS:
        series = closes(symbol)[:-1]
        ds.bars += [bar(symbol, day(len(series) + 1 - i), c) for i, c in enumerate(series)]
    rng = np.random.default_rng(5)
    for component, symbol in COMPONENTS.items():
        ds.add_component(component, 100_000.0)
        pnls = {day(n): list(rng.normal(5, 40, int(rng.integers(1, 4)))) for n in range(90)}
        ds.add_pnl_trades(component, pnls, symbol=symbol)
    return ds


# (component, days before AS_OF, exit hour) of each hour's trades
HOUR_A = [("gamma", 30, 11), ("alpha", 75, 12), ("beta", 120, 13), ("alpha", 0, 10)]
HOUR_B = [("alpha", 0, 17), ("alpha", 0, 18), ("beta", 0, 17), ("gamma", 0, 19)]
HOUR_A_AT = datetime(2024, 6, 30, 12, 0)  # ingest times: 13 h apart, beyond the 2 h lookback
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
    with connect(settings) as wh:
        result = ingest_file(wh, settings, Kind.trades, path, now=HOUR_A_AT)
    assert result.inserted == len(HOUR_A)


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
    recomputed: int
    trades: int


def recomputed_trades(settings: Settings) -> int:
    """Rows the last build's fct_trades select produced: the trades it rewrote."""
    compiled = next(settings.dbt_target_dir.rglob("compiled/**/fct_trades.sql")).read_text()
    with connect(settings) as wh:
        row = wh.fetchone(f"select count(*) from ({compiled}) as rewritten")
    assert row is not None
    return int(row[0])


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
    with fresh_settings(request.param, workdir / "incr", project, pg_url) as incr:
        with open_warehouse(incr) as wh:
            ds.load(wh)
        build_analytics(incr, AS_OF)
        apply_hour_a(incr, workdir)
        build_analytics(incr, AS_OF)
        apply_hour_b(incr, workdir)
        build_analytics(incr, AS_OF)
        recomputed = recomputed_trades(incr)
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
        yield Outcome(differences, recomputed, int(trades[0]) if trades else 0)


def test_every_mart_of_the_incremental_build_equals_a_full_refresh(outcome: Outcome) -> None:
    assert outcome.differences == []


def test_the_incremental_build_rewrites_only_the_changed_trades(outcome: Outcome) -> None:
    """The last build rewrites the trades loaded within the lookback (both hours), the corrected
    one, and the base trades entered today, whose regime yesterday's new bar changes: about 20
    of the ~540 trades in the warehouse."""
    base = base_dataset().trades
    base_today = sum(1 for t in base if t.entry_ts.date() == AS_OF and t.trade_id != CORRECTED)
    assert outcome.recomputed == len(HOUR_A) + len(HOUR_B) + 1 + base_today
    assert outcome.trades == len(base) + len(HOUR_A) + len(HOUR_B)
