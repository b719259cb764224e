"""ANALYZE at scale: ingest rows/s and `dbt build` on DuckDB vs pandas and empyrical-reloaded.

For each size it generates trades over 500 components (benchmarks/_generate.py), then runs each
path in its own fresh process so peak memory (max RSS) is per path:
  duckdb    `runner ingest` of the Parquet file, then `dbt build` of every model and test; the
            "SQL" figure is the compiled SQL of the models mart_performance is built from
            (staging -> daily aggregate -> recent daily series -> mart_performance) run again one
            after the other, which is the work pandas does; dbt's own per-model times are kept.
  pandas    the same metrics as one vectorised pandas computation (benchmarks/_reference.py).
  empyrical the same metrics with empyrical-reloaded called per component and window.
Timings start with the data in memory (pandas) or in the warehouse (DuckDB). It prints the
ratios and checks that the DuckDB marts agree with pandas.

    .venv/bin/python benchmarks/analyze.py --sizes 1000000 10000000
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
WINDOWS = [7, 14, 30]
PERFORMANCE_PATH = (
    "stg_raw__trades",
    "int_trades_aggregated_to_daily",
    "int_strategy_days_filled",
    "mart_performance",
)


def _peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def project_copy(dest: Path, n_components: int) -> Path:
    """The dbt project with a components seed of the benchmark's components."""
    from benchmarks._generate import components
    from tests.python.scenarios import copy_dbt_project

    rows = [
        {"component_id": c, "initial_capital": cap, "periods_per_year": a,
         "strategy": "sma_cross", "description": "benchmark"}
        for c, cap, a in components(n_components)
    ]  # fmt: skip
    return copy_dbt_project(dest, rows)


def run_duckdb(work: str, trades_path: str, bars_path: str, as_of: str) -> dict[str, Any]:
    from datetime import date

    from runner.analyze import build_analytics
    from runner.config import Settings
    from runner.ingest import Kind, ingest_file
    from runner.warehouse import connect
    from runner.warehouse.migrations import migrate

    settings = Settings(
        duckdb_path=Path(work) / "bench.duckdb", project_dir=Path(work), database_url=None
    )
    with connect(settings) as wh:
        migrate(wh)
        ingest_file(wh, settings, Kind.bars, Path(bars_path))
        start = time.perf_counter()
        result = ingest_file(wh, settings, Kind.trades, Path(trades_path))
        ingest_s = time.perf_counter() - start
    assert result.rejected == 0, result.rejects_by_reason
    start = time.perf_counter()
    build_analytics(settings, date.fromisoformat(as_of))
    build_s = time.perf_counter() - start
    run_results = json.loads((Path(work) / "target" / "run_results.json").read_text())
    timings = {
        r["unique_id"].split(".")[-1]: r["execution_time"]
        for r in run_results["results"]
        if r["unique_id"].startswith("model.")
    }
    dbt_path_s = sum(timings.get(name, 0.0) for name in PERFORMANCE_PATH)
    with connect(settings) as wh:
        sql_s = _sequential_sql_seconds(wh, Path(work))
        marts = wh.fetch_df("select * from mart_performance")
    marts.to_parquet(Path(work) / "duckdb_marts.parquet")
    return {
        "ingest_s": ingest_s,
        "ingest_rows_per_s": result.rows_in_file / ingest_s,
        "dbt_build_s": build_s,
        "sql_s": sql_s,
        "dbt_path_s": dbt_path_s,
        "model_s": timings,
        "peak_gib": _peak_gib(),
    }


def _sequential_sql_seconds(wh: Any, work: Path) -> float:
    """The path's compiled SQL run again, one model after the other on an idle connection.

    dbt runs independent models in parallel (threads: 2), so the times it reports for this path
    include contention with fct_trades; this is the SQL's own cost, comparable to pandas'.
    """
    compiled = work / "target" / "compiled" / "tradebase" / "models"
    total = 0.0
    for name in PERFORMANCE_PATH:
        if name.startswith("stg_"):
            continue  # a view: inlined into the models that read it
        sql = next(compiled.rglob(f"{name}.sql")).read_text()
        start = time.perf_counter()
        wh.execute(f"create temporary table bench_{name} as {sql}")
        total += time.perf_counter() - start
    return total


def _inputs(trades_path: str, n_components: int) -> tuple[Any, Any, Any]:
    import pandas as pd

    from benchmarks._generate import components

    trades = pd.read_parquet(trades_path)
    comps = pd.DataFrame(components(n_components), columns=["c", "capital", "ann"]).set_index("c")
    return trades, comps["capital"], comps["ann"]


def run_pandas(trades_path: str, n_components: int, as_of: str, work: str) -> dict[str, Any]:
    import pandas as pd

    from benchmarks._reference import pandas_metrics

    trades, capital, ann = _inputs(trades_path, n_components)
    start = time.perf_counter()
    out = pandas_metrics(trades, capital, ann, pd.Timestamp(as_of), WINDOWS)
    seconds = time.perf_counter() - start
    out.to_parquet(Path(work) / "pandas_marts.parquet")
    return {"seconds": seconds, "peak_gib": _peak_gib()}


def run_empyrical(trades_path: str, n_components: int, as_of: str) -> dict[str, Any]:
    import pandas as pd

    from benchmarks._reference import empyrical_metrics

    trades, capital, ann = _inputs(trades_path, n_components)
    start = time.perf_counter()
    empyrical_metrics(trades, capital, ann, pd.Timestamp(as_of), WINDOWS)
    return {"seconds": time.perf_counter() - start, "peak_gib": _peak_gib()}


def agreement(work: Path) -> float:
    """Largest relative difference between the DuckDB marts and pandas over every metric."""
    import numpy as np
    import pandas as pd

    from benchmarks._reference import METRICS

    keys = ["component_id", "window_days"]
    duck = pd.read_parquet(work / "duckdb_marts.parquet").set_index(keys).sort_index()
    pand = pd.read_parquet(work / "pandas_marts.parquet").set_index(keys).sort_index()
    duck, pand = duck.align(pand, join="outer")
    worst = 0.0
    for metric in METRICS:
        a, b = duck[metric].astype(float).to_numpy(), pand[metric].astype(float).to_numpy()
        if not np.array_equal(np.isnan(a), np.isnan(b)):
            return float("inf")
        mask = ~np.isnan(a)
        scale = np.maximum(1.0, np.abs(b[mask]))
        worst = max(worst, float(np.max(np.abs(a[mask] - b[mask]) / scale, initial=0.0)))
    return worst


def in_child(fn: Any, *args: Any) -> dict[str, Any]:
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()  # type: ignore[no-any-return]


def bench(n_trades: int, n_components: int, keep: Path | None) -> dict[str, Any]:
    import pyarrow.parquet as pq

    from benchmarks import _generate

    work = Path(tempfile.mkdtemp(prefix="tb-bench-", dir=keep))
    project_copy(work, n_components)
    start = time.perf_counter()
    trades = _generate.trades(n_trades, n_components)
    pq.write_table(trades, work / "trades.parquet")
    pq.write_table(_generate.bars(), work / "bars.parquet")
    gen_s = time.perf_counter() - start
    del trades
    as_of = str(_generate.FIRST_BAR + _generate.N_DAYS - 1)
    args = (str(work / "trades.parquet"), n_components, as_of)
    duck = in_child(
        run_duckdb, str(work), str(work / "trades.parquet"), str(work / "bars.parquet"), as_of
    )
    pand = in_child(run_pandas, *args, str(work))
    emp = in_child(run_empyrical, *args)
    report = {
        "trades": n_trades,
        "components": n_components,
        "generate_s": gen_s,
        "duckdb": duck,
        "pandas": pand,
        "empyrical": emp,
        "pandas_over_duckdb_sql": pand["seconds"] / duck["sql_s"],
        "empyrical_over_duckdb_sql": emp["seconds"] / duck["sql_s"],
        "pandas_over_dbt_build": pand["seconds"] / duck["dbt_build_s"],
        "max_rel_diff_vs_pandas": agreement(work),
    }
    if keep is None:
        shutil.rmtree(work, ignore_errors=True)
    return report


def render(reports: list[dict[str, Any]]) -> str:
    lines = [
        f"{'trades':>10} {'ingest rows/s':>14} {'dbt build s':>12} {'SQL s':>6} {'dbt path s':>11}"
        f" {'pandas s':>9} {'empyrical s':>12} {'pandas/SQL':>11} {'empyr/SQL':>10}"
        f" {'peak GiB duck/pd/emp':>21} {'max rel diff':>13}"
    ]
    for r in reports:
        d, p, e = r["duckdb"], r["pandas"], r["empyrical"]
        lines.append(
            f"{r['trades']:>10,} {d['ingest_rows_per_s']:>14,.0f} {d['dbt_build_s']:>12.2f}"
            f" {d['sql_s']:>6.2f} {d['dbt_path_s']:>11.2f} {p['seconds']:>9.2f}"
            f" {e['seconds']:>12.2f} {r['pandas_over_duckdb_sql']:>10.1f}x"
            f" {r['empyrical_over_duckdb_sql']:>9.1f}x"
            f" {d['peak_gib']:>6.2f}/{p['peak_gib']:.2f}/{e['peak_gib']:.2f}"
            f" {r['max_rel_diff_vs_pandas']:>13.1e}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--components", type=int, default=500)
    parser.add_argument("--keep", type=Path, default=None, help="keep work dirs under this path")
    parser.add_argument("--json", type=Path, default=None, help="also write the full report here")
    args = parser.parse_args()
    reports = [bench(n, args.components, args.keep) for n in args.sizes]
    if args.json:
        args.json.write_text(json.dumps(reports, indent=2))
    print(render(reports))


if __name__ == "__main__":
    main()
