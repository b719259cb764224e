"""Scale: a full `dbt build` and an hourly incremental cycle at 10M trades, DuckDB and PostgreSQL.

Data (generated column-wise with numpy/pyarrow, fixed seeds, straight to Parquet): trades over
500 components, five years of daily bars for 100 symbols, one year of minute bars for 5 more
symbols. They enter the warehouse the way a user loads them, through `runner ingest` (validation,
rejects and the merge; COPY on PostgreSQL). Each phase runs in its own fresh process, so its peak
memory (max RSS of the process and its children) is its own:

  load         ingest the bars and the trades into an empty warehouse
  full         `dbt build` of every model and data test as `runner analyze` runs it
  cycle        an hour later: ingest 10k new trades (most in the last hour, some late ones for
               old dates, plus one corrected trade), then `dbt build` again: incremental
  service      (--service-hours N) N more such hours in one long-lived process, as
               `runner cycle --every 1h` runs them: dbt imported and the project parsed once
               (the first of them pays that), the steady state is the median of the others
  verify       (--verify) a `dbt build --full-refresh` of the same warehouse, and every mart of
               the incremental build compared with it

It prints the build times, peak memory, the slowest models, and an hour's cost as a share of the
full build (the target: under 10 %), for a fresh process per hour (cron) and for the long-lived
one. --quick is the small smoke test the suite runs.

    nice -n 10 .venv/bin/python benchmarks/scale.py --json /tmp/scale.json
    .venv/bin/python benchmarks/scale.py --quick --warehouses duckdb
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from datetime import date, datetime, timedelta
from multiprocessing import get_context
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
LAST_DAY = date(2025, 12, 31)  # as_of_date of every build; the data ends on it
REGIME_WARMUP_DAYS = 272  # daily bars before the first trade: int_market_regimes needs them
CYCLE_HOUR = 22  # the initial trades exit before 22:00 on LAST_DAY, the new ones after


@dataclass(frozen=True)
class Scale:
    trades: int = 10_000_000
    components: int = 500
    daily_symbols: int = 100
    daily_days: int = 5 * 365
    minute_symbols: int = 5
    minute_days: int = 365
    new_trades: int = 10_000
    late_share: float = 0.1  # of the new trades, exiting on random earlier dates
    hour_bars: bool = False  # the measured hour also loads the next hour's bars
    service_hours: int = 4  # hours built in one long-lived process after the measured one


QUICK = Scale(
    trades=20_000,
    components=20,
    daily_symbols=5,
    daily_days=400,
    minute_symbols=1,
    minute_days=3,
    new_trades=300,
    service_hours=2,
)


# -- data ---------------------------------------------------------------------------------------
def _day(offset_from_last: Any) -> Any:
    import numpy as np

    return np.datetime64(LAST_DAY) - offset_from_last


def _walk(rng: Any, shape: tuple[int, int], vol: Any) -> dict[str, Any]:
    import numpy as np

    close = 100 * np.exp(np.cumsum(rng.normal(0.0002, vol, size=shape), axis=1))
    open_ = close * np.exp(rng.normal(0, vol / 5, shape))
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, vol / 3, shape)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, vol / 3, shape)))
    volume = rng.integers(1_000, 1_000_000, close.size).astype(float)
    return {
        "open": open_.ravel(),
        "high": high.ravel(),
        "low": low.ravel(),
        "close": close.ravel(),
        "volume": volume,
    }


def daily_bars(scale: Scale, seed: int = 7) -> Any:
    """One geometric random walk per symbol S000.., one bar a day ending on LAST_DAY, with a
    volatility regime switch halfway."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    n = scale.daily_days
    days = _day(np.arange(n)[::-1].astype("timedelta64[D]"))
    vol = np.where(np.arange(n) < n // 2, 0.01, 0.02)
    prices = _walk(rng, (scale.daily_symbols, n), vol)
    symbols = np.repeat([f"S{i:03d}" for i in range(scale.daily_symbols)], n)
    ts = np.tile(days.astype("datetime64[us]"), scale.daily_symbols)
    return pa.table({"symbol": symbols, "ts": ts, **prices})


def minute_bars(scale: Scale, seed: int = 8) -> Any:
    """Every minute of the last `minute_days` days for symbols M0.. (a market open around the
    clock, like crypto): the intraday path through int_bars_aggregated_to_daily and features."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    n = scale.minute_days * 24 * 60
    start = _day(np.timedelta64(scale.minute_days - 1, "D")).astype("datetime64[m]")
    minutes = start + np.arange(n).astype("timedelta64[m]")
    prices = _walk(rng, (scale.minute_symbols, n), 0.0005)
    symbols = np.repeat([f"M{i}" for i in range(scale.minute_symbols)], n)
    ts = np.tile(minutes.astype("datetime64[us]"), scale.minute_symbols)
    return pa.table({"symbol": symbols, "ts": ts, **prices})


def trades(
    n: int,
    scale: Scale,
    *,
    seed: int,
    first_id: int = 0,
    exit_window: tuple[Any, Any] | None = None,
) -> Any:
    """Trades over `scale.components` components, each trading one daily symbol; normal returns
    with a per-component drift. Exits are uniform over the trading history, before CYCLE_HOUR on
    LAST_DAY, or uniform inside `exit_window` (datetime64 start, end)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    rng = np.random.default_rng(seed)
    component = rng.integers(0, scale.components, n)
    drift = np.random.default_rng(0).normal(0.0002, 0.001, scale.components)[component]
    if exit_window is None:
        first = _day(np.timedelta64(scale.daily_days - REGIME_WARMUP_DAYS, "D"))
        exit_window = (first.astype("datetime64[s]"), _last_day_at(CYCLE_HOUR))
    lo, hi = (np.datetime64(t, "s").astype("int64") for t in exit_window)
    exit_ = rng.integers(lo, hi, n).astype("datetime64[s]")
    entry = exit_ - rng.integers(60, 4 * 3600, n).astype("timedelta64[s]")
    side_long = rng.random(n) < 0.5
    entry_price = rng.uniform(20, 200, n)
    gross = rng.normal(drift, 0.01)
    exit_price = entry_price * np.where(side_long, 1 + gross, 1 - gross)
    quantity = rng.integers(1, 100, n).astype(float)
    ids = pa.array(np.arange(first_id, first_id + n)).cast(pa.string())
    symbols = pa.array([f"S{i:03d}" for i in range(scale.daily_symbols)])
    return pa.table(
        {
            "trade_id": pc.binary_join_element_wise("t", ids, ""),
            "component_id": pc.binary_join_element_wise(
                "c", pa.array(component).cast(pa.string()), ""
            ),
            "symbol": symbols.take(pa.array(component % scale.daily_symbols)),
            "side": np.where(side_long, "long", "short"),
            "quantity": quantity,
            "entry_ts": entry.astype("datetime64[us]"),
            "exit_ts": exit_.astype("datetime64[us]"),
            "entry_price": entry_price,
            "exit_price": exit_price,
            "fees": np.round(entry_price * quantity * 1e-4, 4),
        }
    )


def _last_day_at(hour: int) -> Any:
    import numpy as np

    return np.datetime64(LAST_DAY).astype("datetime64[s]") + np.timedelta64(hour * 3600, "s")


def hour_batch(scale: Scale, hour: int) -> Any:
    """The trades of cycle `hour` (0, 1, ...): most exit in that hour after CYCLE_HOUR on
    LAST_DAY, `late_share` of them arrive late for random earlier dates of the history."""
    import numpy as np
    import pyarrow as pa

    n_late = round(scale.new_trades * scale.late_share)
    first_id = scale.trades + hour * scale.new_trades
    start = _last_day_at(CYCLE_HOUR + hour)
    recent = trades(
        scale.new_trades - n_late,
        scale,
        seed=101 + hour,
        first_id=first_id,
        exit_window=(start, start + np.timedelta64(3599, "s")),
    )
    late = trades(n_late, scale, seed=201 + hour, first_id=first_id + scale.new_trades - n_late)
    return pa.concat_tables([recent, late])


CORRECTED_TRADE = "t1"  # a trade of the initial load, corrected in the measured cycle


def correct_one_trade(wh: Any, trade_id: str, now: datetime) -> None:
    """A corrected fill, the way an operator corrects a loaded trade: the raw row is updated in
    place with the fix and a new loaded_at (the incremental models pick up rows by loaded_at).
    It also moves the trade to the previous day, the hardest case for daily aggregates."""
    wh.execute(
        "update raw_trades set exit_price = exit_price * 1.01,"
        " exit_ts = exit_ts - interval '1 day', entry_ts = entry_ts - interval '1 day',"
        " loaded_at = %(now)s where trade_id = %(id)s",
        {"id": trade_id, "now": now},
    )


def next_hour_bars(scale: Scale, seed: int = 9) -> Any:
    """The bars of the hour after the data ends (--hour-bars): 60 minute bars per minute symbol
    and the next day's daily bar of every daily symbol."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    start = np.datetime64(LAST_DAY + timedelta(days=1)).astype("datetime64[m]")
    tables = []
    for prefix, n_symbols, times in (
        ("S", scale.daily_symbols, np.array([start])),
        ("M", scale.minute_symbols, start + np.arange(60).astype("timedelta64[m]")),
    ):
        if n_symbols == 0:
            continue
        names = [f"S{i:03d}" if prefix == "S" else f"M{i}" for i in range(n_symbols)]
        prices = _walk(rng, (n_symbols, len(times)), 0.001)
        tables.append(
            pa.table(
                {
                    "symbol": np.repeat(names, len(times)),
                    "ts": np.tile(times.astype("datetime64[us]"), n_symbols),
                    **prices,
                }
            )
        )
    return pa.concat_tables(tables)


def write_inputs(work: Path, scale: Scale, hours: int) -> float:
    """The Parquet files the phases ingest; returns the seconds it took."""
    import pyarrow.parquet as pq

    start = time.perf_counter()
    pq.write_table(daily_bars(scale), work / "daily_bars.parquet")
    if scale.minute_symbols and scale.minute_days:
        pq.write_table(minute_bars(scale), work / "minute_bars.parquet")
    pq.write_table(trades(scale.trades, scale, seed=11), work / "trades.parquet")
    for hour in range(hours):
        pq.write_table(hour_batch(scale, hour), work / f"hour_{hour}.parquet")
    if scale.hour_bars:
        pq.write_table(next_hour_bars(scale), work / "hour_bars.parquet")
    return time.perf_counter() - start


# -- phases, each in its own process -------------------------------------------------------------
def _peak_gib() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024**2


@dataclass(frozen=True)
class Place:
    """One warehouse of a run: a DuckDB file in `work`, or a PostgreSQL schema."""

    work: str
    warehouse: str
    pg_url: str
    schema: str
    duckdb_name: str = "scale.duckdb"

    def settings(self) -> Any:
        from pydantic import SecretStr

        from runner.config import Settings

        work = Path(self.work)
        if self.warehouse == "duckdb":
            return Settings(
                duckdb_path=work / self.duckdb_name,
                project_dir=work,
                database_url=None,
                dbt_artifacts_dir=work / "dbt",
            )
        return Settings(
            database_url=SecretStr(self.pg_url),
            schema_name=self.schema,
            project_dir=work,
            dbt_artifacts_dir=work / "dbt",
        )


def phase_load(place: Place, now: datetime) -> dict[str, Any]:
    """`runner ingest` of the bars and the initial trades into an empty warehouse."""
    from runner.ingest import Kind, ingest_file
    from runner.warehouse import connect
    from runner.warehouse.migrations import migrate

    settings = place.settings()
    work = Path(place.work)
    out: dict[str, Any] = {}
    with connect(settings) as wh:
        migrate(wh)
        start = time.perf_counter()
        for name in ("daily_bars", "minute_bars"):
            if (work / f"{name}.parquet").exists():
                result = ingest_file(wh, settings, Kind.bars, work / f"{name}.parquet", now=now)
                assert result.rejected == 0, result.rejects_by_reason
        out["bars_s"] = time.perf_counter() - start
        start = time.perf_counter()
        result = ingest_file(wh, settings, Kind.trades, work / "trades.parquet", now=now)
        out["trades_s"] = time.perf_counter() - start
    assert result.rejected == 0, result.rejects_by_reason
    out["trades_rows_per_s"] = result.rows_in_file / out["trades_s"]
    out["peak_gib"] = _peak_gib()
    return out


def phase_build(place: Place, full_refresh: bool) -> dict[str, Any]:
    """`dbt build` as `runner analyze` runs it (build_analytics), timed from outside."""
    from runner.analyze import build_analytics

    settings = place.settings()
    start = time.perf_counter()
    nodes = build_analytics(settings, LAST_DAY, full_refresh=full_refresh)
    seconds = time.perf_counter() - start
    run_results = settings.dbt_target_dir / "run_results.json"
    return {
        "build_s": seconds,
        "dbt_s": json.loads(run_results.read_text())["elapsed_time"],
        "nodes": len(nodes),
        "node_s": node_timings(run_results),
        "peak_gib": _peak_gib(),
    }


def phase_service(place: Place, first_hour: int, now: datetime) -> dict[str, Any]:
    """Hours `first_hour`, ... built one after the other in this one process with one
    DbtSession, as `runner cycle --every 1h` does: each hour's ingest (and corrected trade),
    then build_analytics. Hour h is stamped h hours after `now`."""
    from runner.analyze import build_analytics
    from runner.dbt import DbtSession

    settings = place.settings()
    session = DbtSession()
    hours = [p for p in Path(place.work).glob("hour_*.parquet") if p.stem[5:].isdigit()]
    builds, ingests = [], []
    for hour in range(first_hour, len(hours)):
        stamp = now + timedelta(hours=hour - first_hour + 1)
        ingests.append(phase_hour(place, hour, stamp, True, with_bars=False)["ingest_s"])
        start = time.perf_counter()
        build_analytics(settings, LAST_DAY, session=session)
        builds.append(time.perf_counter() - start)
    return {
        "build_s": builds,
        "ingest_s": ingests,
        "parses": session.parses,
        "node_s": node_timings(settings.dbt_target_dir / "run_results.json"),
        "peak_gib": _peak_gib(),
    }


def phase_hour(
    place: Place, hour: int, now: datetime, correct: bool, *, with_bars: bool = True
) -> dict[str, Any]:
    """An hour's `runner ingest` of new trades (and, when `correct`, one corrected trade)."""
    from runner.ingest import Kind, ingest_file
    from runner.warehouse import connect

    settings = place.settings()
    path = Path(place.work) / f"hour_{hour}.parquet"
    bars = Path(place.work) / "hour_bars.parquet"
    with connect(settings) as wh:
        start = time.perf_counter()
        result = ingest_file(wh, settings, Kind.trades, path, now=now)
        if correct and with_bars and bars.exists():
            loaded = ingest_file(wh, settings, Kind.bars, bars, now=now)
            assert loaded.rejected == 0, loaded.rejects_by_reason
        if correct:
            with wh.transaction():
                correct_one_trade(wh, CORRECTED_TRADE, now)
        seconds = time.perf_counter() - start
    assert result.rejected == 0 and result.inserted > 0, result.rejects_by_reason
    return {"ingest_s": seconds, "rows": result.inserted, "peak_gib": _peak_gib()}


def phase_verify(place: Place) -> dict[str, Any]:
    """The same raw rows in a second DuckDB file or PostgreSQL schema, built with
    --full-refresh; every mart of `place` compared with it."""
    from runner.warehouse import connect
    from runner.warehouse.migrations import migrate

    full = replace(place, schema=f"{place.schema}_full", duckdb_name="scale_full.duckdb")
    full_settings = full.settings()
    start = time.perf_counter()
    if place.warehouse == "duckdb":
        shutil.copy(place.settings().duckdb_file, full_settings.duckdb_file)
    else:
        with connect(full_settings) as wh:
            migrate(wh)
            for table in ("raw_trades", "raw_bars", "raw_predictions"):
                wh.execute(f'insert into "{table}" select * from "{place.schema}"."{table}"')
    copy_s = time.perf_counter() - start
    build = phase_build(full, full_refresh=True)
    start = time.perf_counter()
    with connect(place.settings()) as wh:
        if place.warehouse == "duckdb":
            wh.execute(f"attach '{full_settings.duckdb_file}' as full_build (read_only)")
            catalog = wh.fetchall("select current_database()")[0][0]
            left: tuple[str | None, str] = (str(catalog), "main")
            right: tuple[str | None, str] = ("full_build", "main")
        else:
            left, right = (None, place.schema), (None, full.schema)
        differences = mart_differences(wh, left, right, mart_names(Path(place.work)))
    return {
        "copy_s": copy_s,
        "full_refresh_s": build["build_s"],
        "compare_s": time.perf_counter() - start,
        "differences": differences,
    }


def node_timings(run_results: Path) -> dict[str, float]:
    """Seconds per model and data test of the last dbt invocation, from its run_results.json."""
    results = json.loads(run_results.read_text())["results"]
    return {
        r["unique_id"].split(".", 1)[1]: r["execution_time"]
        for r in results
        if r["unique_id"].startswith(("model.", "test."))
    }


def in_child(fn: Any, *args: Any) -> dict[str, Any]:
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()  # type: ignore[no-any-return]


def in_process(fn: Any, *args: Any) -> dict[str, Any]:
    return fn(*args)  # type: ignore[no-any-return]


# -- a run ----------------------------------------------------------------------------------------
def run_warehouse(
    work: Path,
    warehouse: str,
    pg_url: str,
    *,
    warm_up: bool,
    verify: bool,
    isolate: bool,
    service_hours: int = 0,
) -> dict[str, Any]:
    """Load, full build, (a warm-up hour,) the measured hour, (the long-lived process's hours,)
    (verify), on one warehouse.

    Ingest times are stamped a day apart (`now`): the initial load two days ago, the warm-up
    hour yesterday, the measured hour now. The first incremental build after a bulk load
    rewrites every trade loaded within the lookback of the newest one, that is the whole load;
    the warm-up hour takes that cost, so the measured hour is the steady state.
    """
    from tests.python.scenarios import drop_pg_schema

    run = in_child if isolate else in_process
    place = Place(str(work), warehouse, pg_url, f"tb_scale_{uuid.uuid4().hex[:8]}")
    now = datetime.utcnow().replace(microsecond=0)
    out: dict[str, Any] = {"warehouse": warehouse}
    try:
        out["load"] = run(phase_load, place, now - timedelta(days=2))
        out["full"] = run(phase_build, place, False)
        if warm_up:
            out["warm_up_ingest"] = run(phase_hour, place, 0, now - timedelta(days=1), False)
            out["warm_up"] = run(phase_build, place, False)
        out["hour_ingest"] = run(phase_hour, place, 1 if warm_up else 0, now, True)
        out["hour"] = run(phase_build, place, False)
        if service_hours:
            out["service"] = run(phase_service, place, 2 if warm_up else 1, now)
        if verify:
            out["verify"] = run(phase_verify, place)
    finally:
        if warehouse == "postgres":
            drop_pg_schema(pg_url, place.schema)
            drop_pg_schema(pg_url, f"{place.schema}_full")
    full_s, hour_s = out["full"]["build_s"], out["hour"]["build_s"]
    out["hour_over_full"] = hour_s / full_s
    out["hour_with_ingest_over_full"] = (hour_s + out["hour_ingest"]["ingest_s"]) / full_s
    if "service" in out:
        steady = out["service"]["build_s"][1:] or out["service"]["build_s"]
        out["service_hour_s"] = statistics.median(steady)
        out["service_hour_over_full"] = out["service_hour_s"] / full_s
    return out


def bench(
    scale: Scale,
    warehouses: list[str],
    pg_url: str,
    *,
    warm_up: bool = True,
    verify: bool = True,
    isolate: bool = True,
    keep: Path | None = None,
) -> dict[str, Any]:
    from benchmarks.analyze import project_copy

    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="tb-scale-", dir=keep))
    try:
        project_copy(work, scale.components)
        report: dict[str, Any] = {
            "scale": asdict(scale),
            "generate_s": write_inputs(
                work, scale, hours=(2 if warm_up else 1) + scale.service_hours
            ),
            "warehouses": [],
        }
        for warehouse in warehouses:
            wh_work = work / warehouse
            shutil.copytree(work, wh_work, ignore=shutil.ignore_patterns("duckdb", "postgres"))
            report["warehouses"].append(
                run_warehouse(
                    wh_work,
                    warehouse,
                    pg_url,
                    warm_up=warm_up,
                    verify=verify,
                    isolate=isolate,
                    service_hours=scale.service_hours,
                )
            )
            shutil.rmtree(wh_work / "dbt", ignore_errors=True)
            if keep is None:
                shutil.rmtree(wh_work, ignore_errors=True)
        return report
    finally:
        if keep is None:
            shutil.rmtree(work, ignore_errors=True)


def _slowest(node_s: dict[str, float], n: int) -> str:
    top = sorted(node_s.items(), key=lambda kv: -kv[1])[:n]
    return ", ".join(f"{name.split('.')[-1][:48]} {sec:.1f}" for name, sec in top)


def render(report: dict[str, Any]) -> str:
    sc = report["scale"]
    lines = [
        f"{sc['trades']:,} trades, {sc['components']} components, {sc['daily_symbols']} daily"
        f" symbols x {sc['daily_days']} days, {sc['minute_symbols']} minute symbols x"
        f" {sc['minute_days']} days; hour: {sc['new_trades']:,} trades"
        f" ({sc['late_share']:.0%} late) + 1 corrected"
        f"{' + an hour of bars' if sc.get('hour_bars') else ''};"
        f" generated in {report['generate_s']:.1f} s",
        f"{'warehouse':<10} {'ingest rows/s':>13} {'full s':>8} {'full GiB':>8}"
        f" {'warm-up s':>9} {'hour ingest s':>13} {'hour build s':>12} {'hour GiB':>8}"
        f" {'build/full':>10} {'+ingest/full':>12} {'verify':>8}",
    ]
    for w in report["warehouses"]:
        verify = w.get("verify")
        verdict = "-" if verify is None else ("same" if not verify["differences"] else "DIFFERS")
        warm = f"{w['warm_up']['build_s']:.1f}" if "warm_up" in w else "-"
        lines.append(
            f"{w['warehouse']:<10} {w['load']['trades_rows_per_s']:>13,.0f}"
            f" {w['full']['build_s']:>8.1f} {w['full']['peak_gib']:>8.2f} {warm:>9}"
            f" {w['hour_ingest']['ingest_s']:>13.2f} {w['hour']['build_s']:>12.1f}"
            f" {w['hour']['peak_gib']:>8.2f} {w['hour_over_full']:>9.1%}"
            f" {w['hour_with_ingest_over_full']:>11.1%} {verdict:>8}"
        )
    for w in report["warehouses"]:
        if "service" in w:
            svc = w["service"]
            lines.append(
                f"{w['warehouse']} long-lived process (runner cycle --every), hour builds s: "
                + ", ".join(f"{b:.1f}" for b in svc["build_s"])
                + f" (the first imports dbt and parses; {svc['parses']} parse(s));"
                f" steady hour {w['service_hour_s']:.1f} s = {w['service_hour_over_full']:.1%}"
                " of the full build"
            )
    for w in report["warehouses"]:
        lines.append(f"{w['warehouse']} full build, slowest: {_slowest(w['full']['node_s'], 6)}")
        lines.append(f"{w['warehouse']} hour build, slowest: {_slowest(w['hour']['node_s'], 6)}")
        if w.get("verify", {}).get("differences"):
            lines.append(f"{w['warehouse']} differences: {w['verify']['differences']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Scale()
    parser.add_argument("--trades", type=int, default=default.trades)
    parser.add_argument("--components", type=int, default=default.components)
    parser.add_argument("--daily-symbols", type=int, default=default.daily_symbols)
    parser.add_argument("--daily-days", type=int, default=default.daily_days)
    parser.add_argument("--minute-symbols", type=int, default=default.minute_symbols)
    parser.add_argument("--minute-days", type=int, default=default.minute_days)
    parser.add_argument("--new-trades", type=int, default=default.new_trades)
    parser.add_argument(
        "--hour-bars", action="store_true", help="the measured hour also loads an hour of bars"
    )
    parser.add_argument(
        "--service-hours",
        type=int,
        default=default.service_hours,
        help="hours built in one long-lived process after the measured one (0: none)",
    )
    parser.add_argument("--quick", action="store_true", help="a small smoke run (seconds)")
    parser.add_argument("--warehouses", nargs="+", default=["duckdb", "postgres"])
    parser.add_argument("--postgres", default=DEFAULT_PG_URL, help="PostgreSQL URL")
    parser.add_argument("--no-verify", action="store_true", help="skip the full-refresh check")
    parser.add_argument("--keep", type=Path, default=None, help="keep work dirs under this path")
    parser.add_argument("--json", type=Path, default=None, help="also write the full report here")
    args = parser.parse_args()
    if args.quick:
        scale = QUICK
    else:
        scale = Scale(
            trades=args.trades,
            components=args.components,
            daily_symbols=args.daily_symbols,
            daily_days=args.daily_days,
            minute_symbols=args.minute_symbols,
            minute_days=args.minute_days,
            new_trades=args.new_trades,
            hour_bars=args.hour_bars,
            service_hours=args.service_hours,
        )
    report = bench(
        scale,
        args.warehouses,
        args.postgres,
        warm_up=not args.quick,
        verify=not args.no_verify,
        isolate=not args.quick,
        keep=args.keep,
    )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    print(render(report))
    if any(w.get("verify", {}).get("differences") for w in report["warehouses"]):
        sys.exit(1)


# -- identical marts ----------------------------------------------------------------------------
FLOAT_TYPES = ("double", "double precision", "real", "float", "float8", "numeric")


def mart_names(project: Path) -> list[str]:
    """Every model under models/marts: what BI tools and the runner read."""
    return sorted(p.stem for p in (project / "models" / "marts").rglob("*.sql"))


def _columns(wh: Any, catalog_schema: tuple[str | None, str], table: str) -> list[tuple[str, str]]:
    catalog, schema = catalog_schema
    where = "table_schema = %(s)s and table_name = %(t)s"
    params: dict[str, Any] = {"s": schema, "t": table}
    if catalog is not None:
        where += " and table_catalog = %(c)s"
        params["c"] = catalog
    rows = wh.fetchall(
        f"select column_name, lower(data_type) from information_schema.columns where {where}"
        " order by ordinal_position",
        params,
    )
    return [(str(name), str(kind)) for name, kind in rows]


def table_difference(
    wh: Any,
    left: tuple[str | None, str],
    right: tuple[str | None, str],
    table: str,
    rel_tol: float = 1e-9,
) -> str | None:
    """None when `table` holds the same rows in the two (catalog, schema) places, else what
    differs. Rows are compared exactly in SQL (EXCEPT ALL both ways, so it scales to 10M rows);
    the few rows that differ only in a floating-point column (a sum taken in another order) are
    then paired on their other columns and compared to `rel_tol`."""
    import numpy as np

    cols = _columns(wh, left, table)
    if cols != _columns(wh, right, table):
        return f"{table}: columns differ"

    def name(place: tuple[str | None, str]) -> str:
        return ".".join(f'"{p}"' for p in place if p is not None) + f'."{table}"'

    col_list = ", ".join(f'"{c}"' for c, _ in cols)
    counts = [wh.fetchone(f"select count(*) from {name(p)}")[0] for p in (left, right)]
    if counts[0] != counts[1]:
        return f"{table}: {counts[0]} rows against {counts[1]}"
    only = [
        wh.fetch_df(f"select {col_list} from {name(a)} except all select {col_list} from {name(b)}")
        for a, b in ((left, right), (right, left))
    ]
    if len(only[0]) == 0 and len(only[1]) == 0:
        return None
    floats = [c for c, kind in cols if kind in FLOAT_TYPES]
    keys = [c for c, kind in cols if kind not in FLOAT_TYPES]
    a, b = (
        df.sort_values(keys + floats, na_position="first").reset_index(drop=True) for df in only
    )
    if len(a) != len(b) or not a[keys].astype(str).equals(b[keys].astype(str)):
        return f"{table}: {len(a)} / {len(b)} rows differ beyond floating point"
    x, y = a[floats].to_numpy(dtype=float), b[floats].to_numpy(dtype=float)
    same = np.isclose(x, y, rtol=rel_tol, atol=rel_tol, equal_nan=True)
    if not same.all():
        return f"{table}: {int((~same).any(axis=1).sum())} rows differ by more than {rel_tol:g}"
    return None


def mart_differences(
    wh: Any, left: tuple[str | None, str], right: tuple[str | None, str], tables: list[str]
) -> list[str]:
    return [d for t in tables if (d := table_difference(wh, left, right, t)) is not None]


if __name__ == "__main__":
    main()
