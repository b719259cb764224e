"""OPTIMIZE's inner loop: backtest evaluations per second (ours against backtesting.py and
vectorbt) and Optuna trials per second through the engine's search path.

Backtest section (`--only backtest`):

One evaluation = signals + backtest of sma_cross (long only) with a stop-loss and a take-profit,
zero fees, for one parameter set; every peer computes its own signals:
  ours             runner.backtest.backtest (resolve params, numba SMA cross, numba fill loop)
  backtesting.py   Backtest.run with the parity test's strategy (tests/python/test_backtest_parity.py:
                   same fills as ours, trade for trade)
  vectorbt         vbt.MA.run + crossed_above/below, then one Portfolio.from_signals call with
                   sl_stop/tp_stop on OHLC, next-open prices and stop levels from the fill price
                   (vectorbt's own stop rules otherwise; see docs/backtesting.md)
on EURUSD (5,000 hourly bars) and on a generated year of 1-minute bars (525,600, seeded geometric
random walk). The same parameter sets run through every peer; times are per evaluation, medians.
numba compiles into a fresh cache directory first, so its compile time is measured (and reported)
and excluded from the rates; the first call of a new process that finds the cache is reported too.

Search section (`--only optuna`): Optuna trials per second of a real study, as `runner optimize`
runs it: runner.optimize.study's StudySpec / SearchContext.build / run_study / collect over the
walk-forward plan of runner.optimize.walkforward (sma_cross, every parameter searched, the engine's
default folds, holdout, objective and costs; TPE with a seed, Wilcoxon pruning). Bars: GOOG
(daily), EURUSD (hourly) and the generated minute year. Storages, each fresh:
  in-memory        plain optuna.create_study() with the same sampler, pruner and objective
                   (runner.optimize.study.objective_for): the reference, in the same process
  SQLite           a file in a temp dir (the engine's default beside DuckDB), 1 and 2 workers
  PostgreSQL       Optuna's RDB storage in a fresh schema (created, then dropped), 1 and 2 workers
The objective is then replayed alone on each study's own trials (same parameters, pruned at the
same fold, no storage), which splits the time into the objective and Optuna + storage.

    .venv/bin/python benchmarks/backtest.py                  # both sections, ~7 minutes
    .venv/bin/python benchmarks/backtest.py --only optuna    # the search section, ~5 minutes
    .venv/bin/python benchmarks/backtest.py --quick          # fewer sets and trials

PostgreSQL: --postgres URL (default postgresql://postgres@127.0.0.1:5432/test); skipped with a
note when it does not answer, or with --no-postgres.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# Before numba is imported anywhere: a cold cache, so the first call measures the compile. Search
# workers are spawned processes that import this file again (as __mp_main__): they keep the
# parent's warm cache instead of making a cold one.
if __name__ == "__main__":
    CACHE_DIR = tempfile.mkdtemp(prefix="tb-numba-")
    os.environ["NUMBA_CACHE_DIR"] = CACHE_DIR
else:
    CACHE_DIR = os.environ.get("NUMBA_CACHE_DIR", "")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

MINUTES_PER_YEAR = 525_600


def minute_year(seed: int = 42) -> pd.DataFrame:
    """A year of 1-minute bars: GBM closes (~30% annual vol), opens a tick from the last close,
    highs/lows a half-normal excursion beyond the body."""
    rng = np.random.default_rng(seed)
    n = MINUTES_PER_YEAR
    close = 30_000 * np.exp(np.cumsum(rng.normal(0, 0.0004, n)))
    open_ = np.r_[30_000.0, close[:-1]] * np.exp(rng.normal(0, 0.00005, n))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.0002, n)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.0002, n)))
    index = pd.date_range("2023-01-01", periods=n, freq="min")
    volume = rng.integers(1, 100, n).astype(float)
    return pd.DataFrame(
        {"Open": open_, "High": high, "Low": low, "Close": close, "Volume": volume}, index=index
    )


def param_sets(n: int, minute: bool, seed: int = 7) -> list[dict[str, Any]]:
    """n random sma_cross settings; stop/target widths scaled to the bar size."""
    rng = np.random.default_rng(seed)
    sl_choices = [0.002, 0.005, 0.01] if minute else [0.005, 0.01, 0.02]
    tp_choices = [0.004, 0.01, 0.02] if minute else [0.01, 0.02, 0.04]
    out = []
    for _ in range(n):
        fast = int(rng.integers(5, 60))
        out.append(
            {
                "fast": fast,
                "slow": fast + int(rng.integers(10, 300)),
                "stop_loss": float(rng.choice(sl_choices)),
                "take_profit": float(rng.choice(tp_choices)),
                "allow_short": False,
            }
        )
    return out


def per_eval(fn: Callable[[dict[str, Any]], Any], sets: list[dict[str, Any]]) -> dict[str, float]:
    """Median and total seconds per evaluation over `sets`, one call each."""
    times = []
    for params in sets:
        start = time.perf_counter()
        fn(params)
        times.append(time.perf_counter() - start)
    median = float(np.median(times))
    return {"median_s": median, "evals_per_s": 1.0 / median, "n": len(sets)}


def bench_ours(frame: pd.DataFrame, sets: list[dict[str, Any]], repeats: int) -> dict[str, Any]:
    from runner.backtest import backtest
    from runner.strategies import Bars, load_strategy

    bars = Bars.from_frame(frame)
    strategy = load_strategy("sma_cross")
    start = time.perf_counter()
    backtest(strategy, bars, sets[0])
    first_s = time.perf_counter() - start
    rss_before = _max_rss_mib()
    runs = [per_eval(lambda p: backtest(strategy, bars, p), sets) for _ in range(repeats)]
    best = min(runs, key=lambda r: r["median_s"])
    n_trades = [len(backtest(strategy, bars, p).trades) for p in sets]
    return {
        **best,
        "first_call_s": first_s,
        "mean_trades": float(np.mean(n_trades)),
        # Sets run one after another: the high-water mark should not move with their number.
        "sweep_rss_growth_mib": _max_rss_mib() - rss_before,
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def _max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cached_first_call_s() -> float:
    """First evaluation in a new process whose numba cache is already written (load, no compile)."""
    code = (
        "import time; t = time.perf_counter();"
        "from backtesting.test import EURUSD;"
        "from runner.backtest import backtest; from runner.strategies import Bars, load_strategy;"
        "bars = Bars.from_frame(EURUSD); s = time.perf_counter();"
        "backtest(load_strategy('sma_cross'), bars, {'stop_loss': 0.01, 'take_profit': 0.02});"
        "print(time.perf_counter() - s)"
    )
    env = {**os.environ, "NUMBA_CACHE_DIR": CACHE_DIR, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def bench_backtesting_py(frame: pd.DataFrame, sets: list[dict[str, Any]]) -> dict[str, Any]:
    from backtesting import Backtest

    from tests.python.test_backtest_parity import SmaCrossBt

    bt = Backtest(
        frame,
        SmaCrossBt,
        cash=1e12,
        trade_on_close=False,
        exclusive_orders=True,
        finalize_trades=True,
    )

    def run(p: dict[str, Any]) -> Any:
        # Its progress bar goes to stderr; keep the benchmark's own progress lines readable.
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            return bt.run(
                fast=p["fast"],
                slow=p["slow"],
                sl=p["stop_loss"],
                tp=p["take_profit"],
                allow_short=p["allow_short"],
            )

    run(sets[0])  # pandas/bokeh imports and first-call costs
    return per_eval(run, sets)


def bench_vectorbt(frame: pd.DataFrame, sets: list[dict[str, Any]]) -> dict[str, Any]:
    import vectorbt as vbt

    close, open_, high, low = frame["Close"], frame["Open"], frame["High"], frame["Low"]
    freq = frame.index[1] - frame.index[0]

    def signals(p: dict[str, Any]) -> tuple[pd.Series, pd.Series]:
        fast = vbt.MA.run(close, p["fast"]).ma
        slow = vbt.MA.run(close, p["slow"]).ma
        # Decided on the close, filled at the next open: shift the events one bar.
        entries = fast.vbt.crossed_above(slow).shift(1, fill_value=False)
        exits = fast.vbt.crossed_below(slow).shift(1, fill_value=False)
        return entries, exits

    def portfolio(p: dict[str, Any], entries: pd.Series, exits: pd.Series) -> Any:
        return vbt.Portfolio.from_signals(
            close,
            entries,
            exits,
            price=open_,
            open=open_,
            high=high,
            low=low,
            sl_stop=p["stop_loss"],
            tp_stop=p["take_profit"],
            stop_entry_price="fillprice",  # levels from the entry fill, as ours (default: close)
            direction="longonly",
            freq=freq,
        )

    start = time.perf_counter()
    portfolio(sets[0], *signals(sets[0]))
    first_s = time.perf_counter() - start
    full = per_eval(lambda p: portfolio(p, *signals(p)), sets)
    prepared = {id(p): signals(p) for p in sets}
    alone = per_eval(lambda p: portfolio(p, *prepared[id(p)]), sets)
    return {**full, "from_signals_median_s": alone["median_s"], "first_call_s": first_s}


def bench(name: str, frame: pd.DataFrame, minute: bool, args: argparse.Namespace) -> dict[str, Any]:
    n_sets = args.sets if not args.quick else max(10, args.sets // 10)
    sets = param_sets(n_sets, minute)
    if minute:
        bt_sets = sets[: 1 if args.quick else 2]
        vbt_sets = sets[: 5 if args.quick else 20]
    else:
        bt_sets = sets[: 5 if args.quick else 30]
        vbt_sets = sets[: 10 if args.quick else 50]
    print(f"{name}: {len(frame):,} bars; ours on {len(sets)} sets", file=sys.stderr, flush=True)
    ours = bench_ours(frame, sets, repeats=3)
    print(f"{name}: backtesting.py on {len(bt_sets)} sets", file=sys.stderr, flush=True)
    bt = bench_backtesting_py(frame, bt_sets)
    print(f"{name}: vectorbt on {len(vbt_sets)} sets", file=sys.stderr, flush=True)
    vbt = bench_vectorbt(frame, vbt_sets)
    return {
        "data": name,
        "bars": len(frame),
        "ours": ours,
        "backtesting_py": bt,
        "vectorbt": vbt,
        "ours_vs_backtesting_py": bt["median_s"] / ours["median_s"],
        "ours_vs_vectorbt": vbt["median_s"] / ours["median_s"],
    }


def _t(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} µs"


def render(reports: list[dict[str, Any]], compile_s: float, cached_s: float) -> str:
    lines = [
        f"{'data':<16} {'bars':>8} {'ours':>9} {'ours eval/s':>12} {'backtesting.py':>15}"
        f" {'vectorbt':>9} {'vbt from_signals':>17} {'bt.py/ours':>11} {'vbt/ours':>9}"
    ]
    for r in reports:
        o, b, v = r["ours"], r["backtesting_py"], r["vectorbt"]
        lines.append(
            f"{r['data']:<16} {r['bars']:>8,} {_t(o['median_s']):>9} {o['evals_per_s']:>12,.0f}"
            f" {_t(b['median_s']):>15} {_t(v['median_s']):>9}"
            f" {_t(v['from_signals_median_s']):>17} {r['ours_vs_backtesting_py']:>10,.0f}x"
            f" {r['ours_vs_vectorbt']:>8,.0f}x"
        )
    growth = ", ".join(f"{r['ours']['sweep_rss_growth_mib']:.0f} MiB" for r in reports)
    lines.append(
        f"numba compile (first call, cold cache): {_t(compile_s)}; first call in a new process "
        f"(numba import + cached machine code): {_t(cached_s)}; peak RSS growth over our sweeps: "
        f"{growth}"
    )
    return "\n".join(lines)


# -- the search loop: Optuna trials per second through runner.optimize.study ---------------------
SEARCH_SEED = 0
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


def search_data() -> list[tuple[str, pd.DataFrame, int]]:
    """(name, bars, periods per year of their daily returns)."""
    from backtesting.test import EURUSD, GOOG

    return [
        ("GOOG 1d", GOOG, 252),
        ("EURUSD 1h", EURUSD, 260),
        ("1-minute year", minute_year(), 365),
    ]


def search_context(name: str, frame: pd.DataFrame, periods_per_year: int, trials: int) -> Any:
    """What run_target builds for a component: the spec (engine defaults for the walk-forward
    plan, objective and costs; sma_cross at its defaults, every parameter searched) and the
    context over the bars."""
    from runner.config import Settings
    from runner.optimize.study import SearchContext, StudySpec
    from runner.strategies import Bars, load_strategy

    def default(name: str) -> Any:
        return Settings.model_fields[f"optimize_{name}"].default

    bars = Bars.from_frame(frame, symbol=name)
    spec = StudySpec(
        study_name=f"tb-bench-{name.split()[0].lower()}",
        run_id="opt_bench",
        component_id="bench",
        strategy="sma_cross",
        symbol=name,
        fixed_params={p.name: p.default for p in load_strategy("sma_cross").parameters()},
        search=(),
        objective=default("objective"),
        periods_per_year=periods_per_year,
        folds=default("folds"),
        holdout_fraction=default("holdout_fraction"),
        fees_bps=default("fees_bps"),
        slippage_bps=default("slippage_bps"),
        data_start=str(bars.time[0]),
        data_end=str(bars.time[-1]),
        n_trials=trials,
        seed=SEARCH_SEED,
    )
    return SearchContext.build(spec, bars)


class _SqlCounter:
    """Statements and commits sent by every SQLAlchemy engine of this process (1-worker runs
    only: spawned workers have their own)."""

    def __init__(self) -> None:
        self.statements = 0
        self.commits = 0

    def statement(self, *_: Any) -> None:
        self.statements += 1

    def commit(self, *_: Any) -> None:
        self.commits += 1


def _storage_done(study: Any) -> None:
    """Close the study's pooled connections (before its PostgreSQL schema is dropped)."""
    storage = getattr(study, "_storage", None)
    backend = getattr(storage, "_backend", storage)
    engine = getattr(backend, "engine", None)
    if engine is not None:
        engine.dispose()


def run_in_memory(context: Any) -> tuple[Any, float]:
    """The reference: the same sampler, pruner and objective as run_trials, in-memory storage."""
    import optuna
    from optuna.exceptions import ExperimentalWarning

    from runner.optimize.study import PRUNE_P_THRESHOLD, objective_for

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        study = optuna.create_study(
            direction="maximize",
            sampler=optuna.samplers.TPESampler(seed=context.spec.seed),
            pruner=optuna.pruners.WilcoxonPruner(p_threshold=PRUNE_P_THRESHOLD),
        )
        start = time.perf_counter()
        study.optimize(
            objective_for(context),
            n_trials=context.spec.n_trials,
            catch=(ArithmeticError, ValueError),
            gc_after_trial=False,
        )
    return study, time.perf_counter() - start


def replay_objective(context: Any, trials: list[Any]) -> list[float]:
    """Seconds the objective alone takes on each of these trials: objective_for(context) called
    with a FixedTrial of the trial's parameters, pruned after as many folds as the trial reported
    (no sampler, no storage). Best of two passes, per trial."""
    import optuna
    from optuna.trial import FixedTrial, TrialState

    from runner.optimize.study import objective_for

    class Replay(FixedTrial):
        def __init__(self, params: dict[str, Any], prune_after: int | None) -> None:
            super().__init__(params)
            self.prune_after = prune_after
            self.reports = 0

        def report(self, value: float, step: int) -> None:
            self.reports += 1

        def should_prune(self) -> bool:
            return self.prune_after is not None and self.reports >= self.prune_after

    objective = objective_for(context)
    jobs = []
    for t in trials:
        pruned_by_folds = t.state == TrialState.PRUNED and "infeasible" not in t.user_attrs
        jobs.append((t.params, len(t.intermediate_values) if pruned_by_folds else None))
    best = [float("inf")] * len(jobs)
    for _ in range(2):
        for i, (params, prune_after) in enumerate(jobs):
            start = time.perf_counter()
            try:
                objective(cast("optuna.Trial", Replay(params, prune_after)))
            except (optuna.TrialPruned, ArithmeticError, ValueError):
                pass
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def study_figures(
    study: Any, wall_s: float, workers: int, context: Any, collect_s: float | None
) -> dict[str, Any]:
    from optuna.trial import TrialState

    trials = [
        t
        for t in study.get_trials(deepcopy=False)
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    ]
    objective = replay_objective(context, trials)
    # The study's own pace, without storage creation, worker start-up (spawn, imports, numba
    # cache load) or the final settle: from the moment every worker has started its first trial
    # to the last trial's end, counting the trials started in that window.
    first_by_worker: dict[str, Any] = {}
    for t in trials:
        who = t.user_attrs.get("worker", "")
        first_by_worker[who] = min(first_by_worker.get(who, t.datetime_start), t.datetime_start)
    opened = max(first_by_worker.values())
    window = [i for i, t in enumerate(trials) if t.datetime_start >= opened]
    span = (max(t.datetime_complete for t in trials) - opened).total_seconds()
    n_window = len(window)
    objective_window = sum(objective[i] for i in window)
    infeasible = sum(1 for t in trials if "infeasible" in t.user_attrs)
    pruned = sum(1 for t in trials if t.state == TrialState.PRUNED) - infeasible
    return {
        "trials": len(trials),
        "complete": sum(1 for t in trials if t.state == TrialState.COMPLETE),
        "pruned": pruned,
        "infeasible": infeasible,
        "failed": sum(1 for t in trials if t.state == TrialState.FAIL),
        "workers_seen": len(first_by_worker),
        "wall_s": wall_s,
        "trials_per_s_wall": len(trials) / wall_s,
        "window_trials": n_window,
        "window_s": span,
        "trials_per_s": n_window / span,
        "objective_s": sum(objective),
        "objective_ms_per_trial": objective_window / n_window * 1e3,
        # Worker time not spent in the objective: sampler, pruner, storage reads and writes.
        "overhead_ms_per_trial": (workers * span - objective_window) / n_window * 1e3,
        "objective_share": objective_window / (workers * span),
        "collect_s": collect_s,
    }


@contextlib.contextmanager
def postgres_schema(admin_url: str, name: str) -> Iterator[None]:
    """A fresh schema for one study's Optuna tables, dropped afterwards."""
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'drop schema if exists "{name}" cascade')
        conn.execute(f'create schema "{name}"')
        try:
            yield
        finally:
            conn.execute(f'drop schema if exists "{name}" cascade')


def postgres_storage_url(admin_url: str, schema: str) -> str:
    from urllib.parse import quote

    base = admin_url.split("://", 1)[1]
    options = quote(f"-csearch_path={schema}", safe="")
    sep = "&" if "?" in base else "?"
    return f"postgresql+psycopg://{base}{sep}options={options}"


def postgres_reachable(admin_url: str) -> str | None:
    """None when PostgreSQL answers, else why not."""
    try:
        import psycopg

        with psycopg.connect(admin_url, connect_timeout=5) as conn:
            conn.execute("select 1")
    except Exception as exc:  # any failure means: skip PostgreSQL
        return f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    return None


def _client_cpu_s(workers: int) -> float:
    """CPU seconds of this process (1 worker) or of its finished children (the spawned workers,
    joined by run_study)."""
    who = resource.RUSAGE_SELF if workers <= 1 else resource.RUSAGE_CHILDREN
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def run_stored(context: Any, storage: Any, workers: int) -> dict[str, Any]:
    """run_study as run_target calls it, then collect; the figures and the SQL statements this
    process sent (1 worker: all of them)."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    from runner.optimize.study import collect, run_study

    counter = _SqlCounter()
    event.listen(Engine, "before_cursor_execute", counter.statement)
    event.listen(Engine, "commit", counter.commit)
    try:
        cpu = _client_cpu_s(workers)
        start = time.perf_counter()
        study = run_study(context, storage, workers=workers, timeout=None, progress=None)
        wall = time.perf_counter() - start
        cpu = _client_cpu_s(workers) - cpu
        start = time.perf_counter()
        result = collect(study)
        collect_s = time.perf_counter() - start
    finally:
        event.remove(Engine, "before_cursor_execute", counter.statement)
        event.remove(Engine, "commit", counter.commit)
    figures = study_figures(study, wall, workers, context, collect_s)
    figures["collected_complete"] = result.n_complete
    # CPU of the processes that ran the trials, over the whole call: the rest of the workers' time
    # is spent waiting (for the database server, for a lock, for a core).
    figures["client_cpu_s"] = cpu
    figures["client_cpu_share"] = cpu / (workers * wall)
    if workers == 1:
        figures["sql_per_trial"] = counter.statements / figures["trials"]
        figures["commits_per_trial"] = counter.commits / figures["trials"]
    _storage_done(study)
    return figures


def bench_search(args: argparse.Namespace) -> dict[str, Any]:
    from runner.optimize.study import StorageConfig
    from runner.optimize.walkforward import evaluate

    trials = args.trials if not args.quick else max(20, args.trials // 4)
    workers_list = (1, 2)
    pg_url: str | None = None if args.no_postgres else args.postgres
    pg_problem = postgres_reachable(pg_url) if pg_url else "not asked for (--no-postgres)"
    if pg_problem:
        print(f"PostgreSQL skipped: {pg_problem}", file=sys.stderr, flush=True)
    runs: list[dict[str, Any]] = []
    warmed = False
    for name, frame, ppy in search_data():
        context = search_context(name, frame, ppy, trials)
        plan = context.plan
        # numba: compiled (or loaded from the cache) before anything is timed.
        evaluate(
            context.strategy,
            context.bars,
            context.spec.fixed_params,
            plan,
            context.costs,
            context.spec.objective,
            ppy,
        )
        days = len(np.unique(context.bars.time[: plan.search_stop].astype("datetime64[D]")))
        base = {
            "data": name,
            "bars": len(context.bars),
            "folds": len(plan.folds),
            "search_days": days,
            "search_bars": plan.search_stop,
        }
        if not warmed:  # Optuna's and TPE's imports and first calls, once, untimed
            run_in_memory(search_context(name, frame, ppy, 20))
            warmed = True
        print(f"{name}: {len(context.bars):,} bars; in-memory, {trials} trials", file=sys.stderr)
        study, wall = run_in_memory(context)
        memory = study_figures(study, wall, 1, context, None)
        runs.append({**base, "storage": "in-memory", "workers": 1, **memory})
        configs: list[tuple[str, int]] = [("sqlite", w) for w in workers_list]
        if not pg_problem:
            configs += [("postgres", w) for w in workers_list]
        for kind, workers in configs:
            print(f"{name}: {kind}, {workers} worker(s), {trials} trials", file=sys.stderr)
            with (
                tempfile.TemporaryDirectory(prefix="tb-optuna-") as tmp,
                contextlib.ExitStack() as stack,
            ):
                if kind == "sqlite":
                    url = f"sqlite:///{Path(tmp) / 'bench.optuna.sqlite'}"
                else:
                    assert pg_url is not None
                    schema = f"tb_bench_optuna_{os.getpid()}_{len(runs)}"
                    stack.enter_context(postgres_schema(pg_url, schema))
                    url = postgres_storage_url(pg_url, schema)
                storage = StorageConfig(url=url, kind=kind, heartbeat_seconds=5, grace_seconds=15)
                figures = run_stored(context, storage, workers)
            runs.append(
                {
                    **base,
                    "storage": kind,
                    "workers": workers,
                    **figures,
                    "vs_memory": memory["trials_per_s"] / figures["trials_per_s"],
                }
            )
    return {"trials": trials, "postgres_skipped": pg_problem, "runs": runs}


def render_search(report: dict[str, Any]) -> str:
    lines = [
        f"{'data':<14} {'storage':<9} {'w':>1} {'trials C/P/I/F':>15} {'trials/s':>9}"
        f" {'wall/s':>7} {'objective':>10} {'overhead':>9} {'obj share':>9} {'SQL/commit':>10}"
        f" {'mem/this':>8} {'collect':>8} {'cpu':>5}"
    ]
    for r in report["runs"]:
        counts = f"{r['complete']}/{r['pruned']}/{r['infeasible']}/{r['failed']}"
        sql = (
            f"{r['sql_per_trial']:.0f}/{r['commits_per_trial']:.0f}" if "sql_per_trial" in r else ""
        )
        ratio = f"{r['vs_memory']:.1f}x" if "vs_memory" in r else "1.0x"
        collect = "" if r["collect_s"] is None else _t(r["collect_s"])
        cpu = f"{r['client_cpu_share']:.0%}" if "client_cpu_share" in r else ""
        lines.append(
            f"{r['data']:<14} {r['storage']:<9} {r['workers']:>1} {counts:>15}"
            f" {r['trials_per_s']:>9.1f} {r['trials_per_s_wall']:>7.1f}"
            f" {r['objective_ms_per_trial']:>8.2f}ms {r['overhead_ms_per_trial']:>7.1f}ms"
            f" {r['objective_share']:>9.0%} {sql:>10} {ratio:>8} {collect:>8} {cpu:>5}"
        )
    lines.append(
        "trials/s: from every worker's first trial to the last finish; wall/s: trials over the whole "
        "run_study call (storage creation, worker start-up, settle). objective: ms per trial "
        "replayed alone; overhead: worker ms per trial outside it (sampler, pruner, storage). "
        "SQL/commit: statements and commits per trial (1 worker). "
        "cpu: CPU of the trial-running processes / (workers x wall), the rest is waiting "
        "(database server, locks, cores). C/P/I/F: complete, pruned, infeasible, failed."
    )
    if report["postgres_skipped"]:
        lines.append(f"PostgreSQL skipped: {report['postgres_skipped']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer parameter sets and trials")
    parser.add_argument(
        "--only", choices=("backtest", "optuna"), default=None, help="run one section only"
    )
    parser.add_argument("--sets", type=int, default=200, help="parameter sets for ours")
    parser.add_argument("--trials", type=int, default=200, help="Optuna trials per study")
    parser.add_argument(
        "--postgres", default=DEFAULT_POSTGRES, help="PostgreSQL for the RDB storage runs"
    )
    parser.add_argument("--no-postgres", action="store_true", help="SQLite and in-memory only")
    parser.add_argument("--json", type=Path, default=None, help="also write the full report here")
    args = parser.parse_args()
    machine = f"{_cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    out: dict[str, Any] = {"machine": machine}
    text = []
    if args.only in (None, "backtest"):
        from backtesting.test import EURUSD

        reports = [bench("EURUSD 1h", EURUSD, False, args)]
        compile_s = reports[0]["ours"]["first_call_s"]
        reports.append(bench("1-minute year", minute_year(), True, args))
        cached_s = cached_first_call_s()
        out.update({"compile_s": compile_s, "cached_first_s": cached_s, "runs": reports})
        text.append(render(reports, compile_s, cached_s))
    if args.only in (None, "optuna"):
        search = bench_search(args)
        out["search"] = search
        text.append(render_search(search))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    print("\n\n".join(text))
    print(machine)


if __name__ == "__main__":
    main()
