"""The demo of the whole loop: a market, two components, and the engine run on simulated hours.

Market (runner.demo_loop.market): backtesting.py's EURUSD sample — 5,000 real hourly bars,
2017-04-19 → 2018-02-07 (shared/reference/data.md) — continued by generated weekday hours at a
volatile hour's spread (0.15%) whose returns carry `phi` of the previous hour's (AR(1)): phi > 0
is a momentum regime, phi < 0 a reversal regime. EURUSD: 10 days of momentum, then reversal. A
second market, GBPUSD-like, replays EURUSD's real hourly returns in shuffled day blocks, then
momentum, 100 days of reversal, and momentum again right after the engine's first run.

Both components run the built-in `ts_momentum` (follow the last hour's move) at a quarter of
their capital. Every engine run replays 120 new hourly bars through the paper-trading simulator
and runs `runner cycle`: the full cycle every fourth run (ANALYZE costs seconds), DEPLOY alone
in between, as a desk scheduling `--steps deploy` hourly and the rest every four hours would.
Nothing is scripted: alerts, recommendations, searches and their gates, smoke tests and the A/B
decisions are the engine's own, on this data.
"""

from __future__ import annotations

import csv
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from runner.audit import StoredEvent, read_events
from runner.config import Settings
from runner.cycle import CycleReport, run_cycle
from runner.errors import ConfigError
from runner.warehouse import connect
from runner.warehouse.migrations import migrate

HOURS_PER_RUN = 120  # new hourly bars between two engine runs
FULL_CYCLE_EVERY = 4  # runs; DEPLOY alone in between
MAX_RUNS = 24
DEMO_SEED = 1  # the searches' sampler: the same candidates, so the same story, every time
SPREAD = 0.0015  # hourly standard deviation of the generated hours
PROJECT_ENTRIES = ("dbt_project.yml", "profiles.yml", "models", "macros", "seeds", "tests/dbt")
COMPONENTS = (
    ("fx_trend", "EURUSD", "EURUSD hourly momentum: follows the last hour's move"),
    ("fx_cable", "GBPUSD", "GBPUSD hourly momentum: follows the last hour's move"),
)
# (bars, phi) per phase of each market's generated hours; the first run comes after
# FIRST_RUN_AFTER generated bars.
PHASES = {
    "EURUSD": ((240, 0.35), (5400, -0.35)),
    "GBPUSD": ((240, 0.35), (3000, -0.35), (2400, 0.35)),
}
FIRST_RUN_AFTER = 240 + 3000
# What the timeline tells, in order.
TOLD = (
    "alert_raised",
    "recommendation_created",
    "optimization_completed",
    "optimization_rejected",
    "deployment_staged",
    "smoke_tests_passed",
    "smoke_tests_failed",
    "ab_test_started",
    "ab_stage_advanced",
    "ab_stage_extended",
    "ab_test_promoted",
    "ab_test_rolled_back",
    "ab_test_inconclusive",
)


@dataclass(frozen=True)
class Run:
    number: int
    data_until: datetime
    cycle: CycleReport
    events: list[StoredEvent]


@dataclass
class LoopDemo:
    workspace: Path
    database: Path
    runs: list[Run] = field(default_factory=list)
    report_html: Path | None = None
    seconds: float = 0.0

    def events(self, kind: str) -> list[StoredEvent]:
        return [e for run in self.runs for e in run.events if e.event_type == kind]


def market(seed: int = 1) -> dict[str, list[tuple[str, float, float, float, float]]]:
    """Per symbol, hourly (ts, open, high, low, close) rows: real history, then generated."""
    try:
        from backtesting.test import EURUSD
    except ImportError:
        raise ConfigError(
            "The demo reads real EURUSD hours from backtesting.py's sample data: install it "
            "with `pip install -e '.[demo]'` (`make demo` does)."
        ) from None
    real = EURUSD
    times = [t.to_pydatetime() for t in real.index]
    close = real["Close"].to_numpy(dtype=float)
    returns = np.diff(np.log(close))
    rng = np.random.default_rng(seed)
    # GBPUSD-like history: EURUSD's real hourly returns in shuffled day blocks, from 1.35.
    blocks = [returns[i : i + 24] for i in range(0, len(returns) - 24, 24)]
    order = rng.permutation(len(blocks))
    shuffled = np.concatenate([blocks[i] for i in order] + [returns[len(blocks) * 24 :]])
    gbp = 1.35 * np.exp(np.r_[0.0, np.cumsum(shuffled)])
    histories = {
        "EURUSD": list(
            zip(
                times,
                real["Open"].to_numpy(float),
                real["High"].to_numpy(float),
                real["Low"].to_numpy(float),
                close,
                strict=True,
            )
        ),
        "GBPUSD": [
            (t, o, max(o, c) * 1.0002, min(o, c) * 0.9998, c)
            for t, o, c in zip(times, np.r_[1.35, gbp[:-1]], gbp, strict=True)
        ],
    }
    out: dict[str, list[tuple[str, float, float, float, float]]] = {}
    for k, (symbol, rows) in enumerate(histories.items()):
        generated = _continue(rows[-1][0], rows[-1][4], PHASES[symbol], seed + k + 1)
        out[symbol] = [(t.strftime("%Y-%m-%d %H:%M:%S"), o, h, lo, c) for t, o, h, lo, c in rows]
        out[symbol] += generated
    return out


def _continue(
    last_time: datetime, last_close: float, phases: tuple[tuple[int, float], ...], seed: int
) -> list[tuple[str, float, float, float, float]]:
    rng = np.random.default_rng(seed)
    returns, previous = [], 0.0
    for n, phi in phases:
        for _ in range(n):
            previous = phi * previous + rng.normal(0.0, SPREAD)
            returns.append(previous)
    closes = last_close * np.cumprod(1.0 + np.asarray(returns))
    opens = np.r_[last_close, closes[:-1]]
    wicks = np.abs(rng.normal(0.0, 0.0003, len(returns)))
    rows, moment = [], last_time
    for i in range(len(returns)):
        moment += timedelta(hours=1)
        while moment.weekday() >= 5:  # FX trades on weekdays
            moment += timedelta(hours=1)
        o, c = float(opens[i]), float(closes[i])
        rows.append(
            (
                moment.strftime("%Y-%m-%d %H:%M:%S"),
                o,
                max(o, c) * (1 + wicks[i]),
                min(o, c) * (1 - wicks[i]),
                c,
            )
        )
    return rows


def prepare(settings: Settings, workspace: Path) -> tuple[Settings, Path, list[str]]:
    """A fresh workspace: a copy of the dbt project declaring the demo's components (the
    project's own seeds stay the user's), the bars file, an empty task list, a new DuckDB."""
    if workspace.exists():
        shutil.rmtree(workspace)
    project = workspace / "project"
    for entry in PROJECT_ENTRIES:
        source = settings.project / entry
        if source.is_dir():
            shutil.copytree(source, project / entry, dirs_exist_ok=True)
        else:
            project.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, project / entry)
    params = json.dumps({"lookback": 1, "direction": 1, "max_position": 0.25})
    with (project / "seeds" / "components.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            [
                "component_id",
                "initial_capital",
                "periods_per_year",
                "strategy",
                "symbol",
                "params",
                "open_position_policy",
                "description",
            ]
        )
        for component_id, symbol, description in COMPONENTS:
            writer.writerow(
                [component_id, 100000, 252, "ts_momentum", symbol, params, "", description]
            )
    # The desk's weekly searches (Mondays 06:00 UTC, so not during the demo) say which knobs are
    # worth searching; the searches that recommendations start search the same ones.
    (project / "seeds" / "optimization_tasks.csv").write_text(
        "task_id,task_type,component_id,frequency,priority,config,timeout_seconds,enabled,"
        "description\n"
        + "".join(
            f'{c}_weekly,hyperparameter,{c},"0 6 * * 1",3,"{{""params"": [""direction"", '
            f'""lookback""]}}",600,true,Weekly search of {c}\'s direction and lookback\n'
            for c, _, _ in COMPONENTS
        )
    )
    bars = workspace / "bars.csv"
    times: list[str] = []
    with bars.open("w") as handle:
        handle.write("symbol,ts,open,high,low,close,volume\n")
        for symbol, rows in market().items():
            for ts, o, h, lo, c in rows:
                handle.write(f"{symbol},{ts},{o:.6f},{h:.6f},{lo:.6f},{c:.6f},1000\n")
            if symbol == "EURUSD":
                times = [ts for ts, *_ in rows]
    demo = settings.model_copy(
        update={
            "database_url": None,
            "duckdb_path": workspace / "tradebase-demo.duckdb",
            "project_dir": project,
            "artifact_dir": workspace / "artifacts",
            "log_dir": workspace / "logs",
            "dbt_artifacts_dir": workspace,
            "schedule_tasks_file": project / "seeds" / "optimization_tasks.csv",
            "discord_webhook_url": settings.discord_webhook_url,
            # The report is built once, after the last run; a run rebuilds it only when its
            # Discord summary attaches the charts.
            "cycle_report": settings.discord_webhook_url is not None,
            # The demo's desk: 40 trials a search, the last 150 days of bars, FX-like costs.
            "optimize_trials": 40,
            "optimize_seed": DEMO_SEED,
            "optimize_lookback_days": 150,
            "optimize_fees_bps": 0.3,
            "optimize_slippage_bps": 0.2,
            # Compressed time: a recommendation still open is looked at again every run.
            "schedule_recommendation_retry_hours": 0.0,
            "deploy_min_trades_per_arm": 20,
            "deploy_stage_days": 30.0,
            "deploy_smoke_days": 20,
            "deploy_planned_n": 3000,
        }
    )
    return demo, bars, times


def run_loop_demo(
    settings: Settings,
    workspace: Path,
    on_run: Callable[[Run], None] | None = None,
    max_runs: int = MAX_RUNS,
) -> LoopDemo:
    """Prepare the workspace, then run the engine until both A/B tests have ended."""
    from runner.dbt import run_dbt
    from runner.deploy.simulate import simulate
    from runner.report import build_report

    clock = time.monotonic()
    demo, bars, times = prepare(settings, workspace)
    with connect(demo) as wh:
        migrate(wh)
    run_dbt(demo, "seed", select="components alert_thresholds")
    result = LoopDemo(workspace, demo.duckdb_file)
    first = len(times) - sum(n for n, _ in PHASES["EURUSD"]) + FIRST_RUN_AFTER - 1
    ended: set[str] = set()
    for number in range(max_runs):
        index = first + number * HOURS_PER_RUN
        if index >= len(times):
            break
        until = datetime.fromisoformat(times[index])
        for component_id, _, _ in COMPONENTS:
            simulate(demo, component_id, until=until, bars_path=bars)
        full = number % FULL_CYCLE_EVERY == 0
        since = datetime.now(UTC)
        cycle = run_cycle(
            demo,
            steps=("analyze", "identify", "optimize", "deploy") if full else ("deploy",),
            as_of=until.date(),
            budget_seconds=600,
        )
        with connect(demo) as wh:
            events = [e for e in read_events(wh, since=since) if e.event_type in TOLD]
        run = Run(number, until, cycle, events)
        result.runs.append(run)
        if on_run is not None:
            on_run(run)
        ended |= {
            e.component_id or ""
            for e in events
            if e.event_type in ("ab_test_promoted", "ab_test_rolled_back", "ab_test_inconclusive")
        }
        if ended >= {c for c, _, _ in COMPONENTS}:
            break
    report = build_report(demo, out_dir=workspace / "report")
    result.report_html = report.html_path
    result.seconds = time.monotonic() - clock
    return result
