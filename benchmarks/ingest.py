"""Ingest alone: read + validate (`prepare`) and merge (`load`) of generated trades, per format.

Each case runs in a fresh process (peak memory = its max RSS) against an empty DuckDB file, or a
fresh PostgreSQL schema with --postgres URL. The reference is DuckDB reading the same file with no
validation at all (`create table as select * from read_parquet/read_csv`), in the same process,
so the printed ratio is the price of validation.

    .venv/bin/python benchmarks/ingest.py --sizes 1000000 [--postgres postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run_case(work: str, path: str, pg_url: str | None) -> dict[str, Any]:
    import duckdb

    from runner.config import Settings
    from runner.ingest import Kind, load, prepare
    from runner.warehouse import connect
    from runner.warehouse.migrations import migrate
    from tests.python.scenarios import drop_pg_schema

    reader = "read_parquet" if path.endswith(".parquet") else "read_csv"
    con = duckdb.connect()
    start = time.perf_counter()
    con.execute(f"create table plain as select * from {reader}($p)", {"p": path})
    plain_s = time.perf_counter() - start
    con.close()

    schema = f"tb_bench_{uuid.uuid4().hex[:8]}"
    if pg_url:
        settings = Settings(database_url=pg_url, schema_name=schema, project_dir=Path(work))
    else:
        settings = Settings(
            duckdb_path=Path(work) / f"{schema}.duckdb", project_dir=Path(work), database_url=None
        )
    try:
        start = time.perf_counter()
        prepared = prepare(settings, Kind.trades, Path(path))
        prepare_s = time.perf_counter() - start
        with connect(settings) as wh:
            migrate(wh)
            start = time.perf_counter()
            result = load(wh, prepared)
            load_s = time.perf_counter() - start
    finally:
        if pg_url:
            drop_pg_schema(pg_url, schema)
    assert result.rejected == 0
    return {
        "rows": result.rows_in_file,
        "plain_s": plain_s,
        "prepare_s": prepare_s,
        "load_s": load_s,
        "peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
    }


def main() -> None:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from benchmarks import _generate
    from benchmarks.analyze import project_copy

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--postgres", default=None, help="also load into this PostgreSQL URL")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tb-ingest-"))
    project_copy(work / "project", 500)
    targets = [("duckdb", None)] + ([("postgres", args.postgres)] if args.postgres else [])
    print(f"{'target':>8} {'format':>7} {'rows':>11} {'prepare s':>10} {'load s':>7} "
          f"{'rows/s':>9} {'plain read s':>13} {'validated/plain':>16} {'peak GiB':>9}")  # fmt: skip
    try:
        for n in args.sizes:
            trades = _generate.trades(n)
            files = {"parquet": work / "t.parquet", "csv": work / "t.csv"}
            pq.write_table(trades, files["parquet"])
            pacsv.write_csv(trades, files["csv"])
            del trades
            for target, url in targets:
                for fmt, path in files.items():
                    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
                        r = pool.submit(run_case, str(work / "project"), str(path), url).result()
                    total = r["prepare_s"] + r["load_s"]
                    print(
                        f"{target:>8} {fmt:>7} {r['rows']:>11,} {r['prepare_s']:>10.2f}"
                        f" {r['load_s']:>7.2f} {r['rows'] / total:>9,.0f} {r['plain_s']:>13.2f}"
                        f" {total / r['plain_s']:>15.1f}x {r['peak_gib']:>9.2f}"
                    )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
