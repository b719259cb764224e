"""OPTIMIZE throughput on PostgreSQL storage: trials/s with 1, 2 and 4 worker processes.

A study as `runner optimize --workers K` runs it (`runner.optimize.study.run_study` with Optuna's
RDB storage in a fresh PostgreSQL schema, dropped afterwards; the engine's defaults: sma_cross
with every parameter searched, 5 walk-forward folds, 20 % holdout, TPE seeded, Wilcoxon pruner).
The measuring code is benchmarks/backtest.py's (`run_stored`, `study_figures`): trials/s runs
from the moment every worker has started its first trial to the last finish, so worker start-up
is left out; `wall` includes it. Each configuration runs `--repeats` times; medians are printed
with the range, and the speed-up over one worker of the same data.

    nice -n 10 .venv/bin/python benchmarks/optimize_throughput.py --json /tmp/throughput.json
    .venv/bin/python benchmarks/optimize_throughput.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
DATA = ("GOOG 1d", "EURUSD 1h")


def one_run(name: str, trials: int, workers: int, pg_url: str, tag: str) -> dict[str, Any]:
    from benchmarks.backtest import (
        postgres_schema,
        postgres_storage_url,
        run_stored,
        search_context,
        search_data,
    )
    from runner.optimize.study import StorageConfig

    frame, ppy = next((f, p) for n, f, p in search_data() if n == name)
    context = search_context(name, frame, ppy, trials)
    schema = f"tb_bench_throughput_{os.getpid()}_{tag}"
    with postgres_schema(pg_url, schema):
        url = postgres_storage_url(pg_url, schema)
        storage = StorageConfig(url=url, kind="postgres", heartbeat_seconds=5, grace_seconds=15)
        return run_stored(context, storage, workers)


def bench(args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks.backtest import postgres_reachable, run_in_memory, search_context, search_data

    problem = postgres_reachable(args.postgres)
    if problem:
        raise SystemExit(f"PostgreSQL is needed: {problem}")
    # Optuna's imports, TPE's first calls and numba's cache load, once and untimed.
    name0, frame0, ppy0 = search_data()[0]
    run_in_memory(search_context(name0, frame0, ppy0, 10))
    runs: list[dict[str, Any]] = []
    for repeat in range(args.repeats):
        for name in args.data:
            for workers in args.workers:
                print(f"{name}: {workers} worker(s), run {repeat + 1}", file=sys.stderr, flush=True)
                tag = f"{len(runs)}"
                figures = one_run(name, args.trials, workers, args.postgres, tag)
                runs.append({"data": name, "workers": workers, "repeat": repeat, **figures})
    return {"trials": args.trials, "cpus": os.cpu_count(), "runs": runs}


def summary(report: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name in dict.fromkeys(r["data"] for r in report["runs"]):
        base: float | None = None
        for workers in sorted({r["workers"] for r in report["runs"] if r["data"] == name}):
            runs = [r for r in report["runs"] if r["data"] == name and r["workers"] == workers]
            rates = [r["trials_per_s"] for r in runs]
            median = statistics.median(rates)
            base = median if workers == 1 else base
            rows.append(
                {
                    "data": name,
                    "workers": workers,
                    "runs": len(runs),
                    "trials_per_s": median,
                    "min": min(rates),
                    "max": max(rates),
                    "wall_trials_per_s": statistics.median(r["trials_per_s_wall"] for r in runs),
                    "speedup": median / base if base else float("nan"),
                    "client_cpu_share": statistics.median(r["client_cpu_share"] for r in runs),
                    "trials": statistics.median(r["trials"] for r in runs),
                }
            )
    return rows


def render(report: dict[str, Any]) -> str:
    lines = [
        f"{'data':<10} {'workers':>7} {'runs':>4} {'trials/s':>9} {'range':>13}"
        f" {'wall trials/s':>13} {'vs 1 worker':>11} {'client cpu':>10}"
    ]
    for s in summary(report):
        lines.append(
            f"{s['data']:<10} {s['workers']:>7} {s['runs']:>4} {s['trials_per_s']:>9.1f}"
            f" {s['min']:>6.1f}-{s['max']:<6.1f} {s['wall_trials_per_s']:>13.1f}"
            f" {s['speedup']:>10.2f}x {s['client_cpu_share']:>10.0%}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--data", nargs="+", default=list(DATA), choices=DATA)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES)
    parser.add_argument("--quick", action="store_true", help="40 trials, one run, EURUSD only")
    parser.add_argument("--json", type=Path, default=None, help="also write the full report here")
    args = parser.parse_args()
    if args.quick:
        args.trials, args.repeats, args.data = 40, 1, ["EURUSD 1h"]
    report = bench(args)
    report["summary"] = summary(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    print(render(report))


if __name__ == "__main__":
    main()
