"""Crash faults of `runner cycle` on both warehouses: SIGKILL at seeded statements of every step,
two cycles at once, the database connection cut mid-cycle, and Discord misbehaving for a whole
cycle. After every fault the engine tables hold no duplicate and nothing half-written, the audit
trail closes every cycle (finished, or interrupted and found by the next one), and the next
cycle runs normally.

The kills come from tests/python/killpoints.py (a test-only wrapper around the real CLI): it
counts the warehouse statements of each step and SIGKILLs the runner at the k-th one of a chosen
step. The runs are chained: each run after a kill is also the recovery of that kill.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import SecretStr

from runner.config import Settings
from runner.cycle import run_cycle
from runner.deploy.rollout import rollback
from runner.optimize.versions import add_candidate
from runner.warehouse import Warehouse, connect
from runner.warehouse.migrations import MIGRATIONS
from tests.python.fake_discord import FakeDiscord
from tests.python.killpoints import RunResult, Runs
from tests.python.scenarios import (
    MOMENTUM_STRATEGY,
    PROJECT_DIR,
    momentum_world,
    runner_environment,
)

pytestmark = pytest.mark.integration

TASKS = (
    "task_id,task_type,component_id,frequency,priority,config,timeout_seconds,enabled,description\n"
    "mom_risk,risk_adjustment,mom,hourly,2,{},120,true,size the momentum follower\n"
)
CHEAP = "identify,optimize,deploy"  # the steps without dbt: most kill points run these
# Kill points per warehouse and step (two warehouses: 52 in all). ANALYZE runs dbt build, the
# dearest step, so it gets few; "start" is the cycle's own bookkeeping (recovery included),
# "summary" the report, the final event and Discord.
PLAN = {"start": 2, "analyze": 2, "identify": 2, "optimize": 7, "deploy": 7, "summary": 6}
SEEDS = {"duckdb": 9001, "postgres": 9002}


# -- the world ----------------------------------------------------------------------------------
@dataclass
class World:
    settings: Settings
    env: dict[str, str]
    workdir: Path
    discord: FakeDiscord


@contextmanager
def world_of(kind: str, tmp_path: Path, pg_url: str | None) -> Iterator[World]:
    """The momentum world (scenarios.py: a production version with paper trades, a candidate
    waiting for DEPLOY) with an hourly risk task and a local Discord."""
    discord = FakeDiscord(rate=(1000, 2.0), channel_rate=(10000, 60.0)).start()
    try:
        with momentum_world(kind, tmp_path, pg_url, TASKS) as base:
            settings = base.model_copy(
                update={
                    "optimize_seed": 7,
                    "discord_webhook_url": SecretStr(discord.url),
                    "notify_timeout_seconds": 2.0,
                    "notify_backoff_seconds": 0.05,
                }
            )
            yield World(settings, runner_environment(settings), tmp_path, discord)
    finally:
        discord.stop()


@pytest.fixture(scope="module")
def duckdb_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with world_of("duckdb", tmp_path_factory.mktemp("duckdb_world"), None) as world:
        yield world


@pytest.fixture(scope="module")
def postgres_world(tmp_path_factory: pytest.TempPathFactory, pg_url: str) -> Iterator[World]:
    with world_of("postgres", tmp_path_factory.mktemp("postgres_world"), pg_url) as world:
        yield world


def an_hour_passes(settings: Settings) -> None:
    """The next run is an hour later: the hourly task is due again and a lease taken an hour ago
    has expired (on PostgreSQL a dead runner's lease is only taken over after it expires)."""
    with connect(settings) as wh:
        wh.execute(
            "update optimization_queue set next_run_at = next_run_at - interval '1 hour',"
            " lease_expires_at = lease_expires_at - interval '1 hour'"
        )


def restage(settings: Settings, rng: np.random.Generator) -> None:
    """Let the next DEPLOY stage, smoke-test and start a test (its longest path): a person rolls
    the running test back, and a candidate waits."""
    with connect(settings) as wh:
        running = wh.fetchall(
            "select deployment_id from deployments where environment = 'staging'"
            " and status = 'ab_testing'"
        )
        waiting = wh.fetchone("select count(*) from strategy_versions where status = 'candidate'")
    for (deployment_id,) in running:
        rollback(settings, str(deployment_id), "restaged by the crash test")
    if not waiting or not waiting[0]:
        with connect(settings) as wh, wh.transaction():
            stop = round(float(rng.uniform(0.05, 0.5)), 3)
            add_candidate(
                wh, "mom", MOMENTUM_STRATEGY, {"follow": 1, "stop_loss": stop}, 1, None, ""
            )


# -- invariants ---------------------------------------------------------------------------------
def migrated_tables() -> set[str]:
    found = set()
    for migration in MIGRATIONS:
        for statement in migration.statements:
            match = re.search(r"create table if not exists (\w+)", statement)
            if match:
                found.add(match.group(1))
    return found


# Every engine table by its natural key (what must never appear twice, whatever the row's id).
NATURAL_KEYS: dict[str, list[tuple[str, str]]] = {
    "schema_migrations": [("version", "")],
    "raw_trades": [("trade_id", "")],
    "raw_predictions": [("prediction_id", "")],
    "raw_bars": [("symbol, ts", "")],
    "ingest_runs": [("ingest_id", "")],
    "ingest_rejects": [("kind, file_sha256, row_number, reason", "")],
    "improvement_events": [
        ("event_id", ""),
        # one beginning and one end per cycle, per step, per deployment and test decision
        ("run_id", "event_type = 'cycle_started'"),
        (
            "run_id",
            "event_type in ('cycle_completed', 'cycle_failed', 'cycle_interrupted')",
        ),
        ("run_id, improvement_metrics", "event_type = 'cycle_step_started'"),
        (
            "run_id, improvement_metrics",
            "event_type in ('cycle_step_completed', 'cycle_step_failed', 'cycle_step_interrupted')",
        ),
        ("run_id, task_id", "event_type = 'task_started'"),
        ("run_id, task_id", "event_type in ('task_succeeded', 'task_failed')"),
        ("component_id", "event_type = 'deployment_created'"),
        (
            "event_type, deployment_id",
            "event_type in ('deployment_staged', 'smoke_tests_passed', 'smoke_tests_failed',"
            " 'ab_test_started', 'deployment_rolled_back')",
        ),
        (
            "test_id",
            "event_type in ('ab_test_promoted', 'ab_test_rolled_back', 'ab_test_inconclusive')",
        ),
    ],
    "optimization_queue": [("task_id", "")],
    "ab_tests": [("test_id", ""), ("deployment_id", "")],
    "strategy_versions": [("component_id, version", "")],
    "optimization_runs": [("run_id", "")],
    "model_versions": [("model_id, version", "")],
    "feature_importances": [("model_id, version, feature", "")],
    "deployments": [
        ("deployment_id", ""),
        ("component_id, version", "environment = 'staging'"),
        ("component_id", "environment = 'production' and status = 'active'"),
        ("component_id", "environment = 'staging' and status in ('smoke_testing', 'ab_testing')"),
    ],
    "deployment_checks": [("deployment_id, check_name", "")],
    "simulation_state": [("component_id", "")],
    "simulation_open_trades": [("component_id, version, entry_ts", "")],
    "ab_assignments": [("test_id, unit_key", "")],
    "notification_outbox": [
        ("message_id", ""),
        ("event_id, payload", "event_id is not null"),
        ("payload", "kind = 'cycle_summary'"),
    ],
}


def duplicates(wh: Warehouse) -> list[str]:
    found = []
    for table, keys in NATURAL_KEYS.items():
        for columns, where in keys:
            sql = (
                f"select {columns}, count(*) from {table}"  # noqa: S608 - fixed names
                + (f" where {where}" if where else "")
                + f" group by {columns} having count(*) > 1"
            )
            for row in wh.fetchall(sql):
                found.append(f"{table} ({columns}{' where ' + where if where else ''}): {row}")
    return found


def half_written(wh: Warehouse, *, after_kill: bool) -> list[str]:
    """Rollout and queue states that only a torn write could leave. Right after a kill, the
    states the next run resumes are allowed: a staging deployment whose smoke tests were never
    recorded, a task leased by the dead runner and its optimization run still `running`."""
    problems = []
    checks = [
        (
            "a finished staging deployment without its smoke-test checks",
            "select d.deployment_id from deployments as d where d.environment = 'staging'"
            " and d.status <> 'smoke_testing' and not exists"
            " (select 1 from deployment_checks as c where c.deployment_id = d.deployment_id)",
        ),
        (
            "an A/B test without its deployment",
            "select t.test_id from ab_tests as t where not exists (select 1 from deployments"
            " as d where d.deployment_id = t.deployment_id and d.test_id = t.test_id)",
        ),
        (
            "a deployment naming a test that does not exist",
            "select d.deployment_id from deployments as d where d.test_id is not null and"
            " not exists (select 1 from ab_tests as t where t.test_id = d.test_id)",
        ),
        (
            "a running test whose deployment is not ab_testing, or the reverse",
            "select t.test_id from ab_tests as t join deployments as d"
            " on d.deployment_id = t.deployment_id and d.environment = 'staging'"
            " where (t.status = 'running') <> (d.status = 'ab_testing')",
        ),
        (
            "two running tests for one component",
            "select component_id from ab_tests where status = 'running'"
            " group by component_id having count(*) > 1",
        ),
        (
            "a version in staging without a live staging deployment, or the reverse",
            "select v.component_id, v.version from strategy_versions as v"
            " full outer join (select component_id, version from deployments"
            " where environment = 'staging' and status in ('smoke_testing', 'ab_testing')) as d"
            " on d.component_id = v.component_id and d.version = v.version"
            " where (v.status = 'staging') is distinct from (d.version is not null)"
            " and (v.status = 'staging' or d.version is not null)",
        ),
        (
            "a component with no or two production versions",
            "select component_id from strategy_versions group by component_id"
            " having sum(case when status = 'production' then 1 else 0 end) <> 1",
        ),
        (
            "a task running without a lease",
            "select task_id from optimization_queue where status = 'running'"
            " and lease_owner is null",
        ),
    ]
    if not after_kill:
        checks += [
            (
                "a staging deployment left in smoke_testing",
                "select deployment_id from deployments where status = 'smoke_testing'",
            ),
            (
                "an optimization run left running",
                "select run_id from optimization_runs where verdict = 'running'",
            ),
            (
                "a task left leased",
                "select task_id from optimization_queue where lease_owner is not null",
            ),
        ]
    for what, sql in checks:
        rows = wh.fetchall(sql)
        if rows:
            problems.append(f"{what}: {rows}")
    return problems


def open_cycles(wh: Warehouse) -> dict[str, list[str]]:
    """Cycles started and not ended, with the steps each started and did not end."""
    rows = wh.fetchall(
        "select run_id, event_type, improvement_metrics from improvement_events"
        " where event_type like 'cycle%' order by event_timestamp, event_id"
    )
    started: dict[str, list[str]] = {}
    closed: set[str] = set()
    ended: set[tuple[str, str]] = set()
    for run_id, kind, metrics in rows:
        step = json.loads(metrics).get("step")
        if kind == "cycle_started":
            started[run_id] = []
        elif kind in ("cycle_completed", "cycle_failed", "cycle_interrupted"):
            closed.add(run_id)
        elif kind == "cycle_step_started":
            started.setdefault(run_id, []).append(step)
        elif kind.startswith("cycle_step_"):
            ended.add((run_id, step))
    return {
        run: [s for s in steps if (run, s) not in ended]
        for run, steps in started.items()
        if run not in closed
    }


def unended_steps_of_closed_cycles(wh: Warehouse) -> list[tuple[str, str]]:
    rows = wh.fetchall(
        "select run_id, event_type, improvement_metrics from improvement_events"
        " where event_type like 'cycle_step_%'"
    )
    started = {(r, json.loads(m)["step"]) for r, k, m in rows if k == "cycle_step_started"}
    ended = {(r, json.loads(m)["step"]) for r, k, m in rows if k != "cycle_step_started"}
    return sorted(started - ended)


def interrupted_records(wh: Warehouse) -> dict[str, list[str]]:
    rows = wh.fetchall(
        "select run_id, improvement_metrics from improvement_events"
        " where event_type = 'cycle_interrupted'"
    )
    return {str(r): json.loads(m)["interrupted_steps"] for r, m in rows}


def assert_consistent(world: World, *, after_kill: bool) -> dict[str, list[str]]:
    with connect(world.settings) as wh:
        assert duplicates(wh) == []
        assert half_written(wh, after_kill=after_kill) == []
        still_open = open_cycles(wh)
        # Only the cycle just killed may be open; a closed cycle has no step left open.
        assert len(still_open) <= (1 if after_kill else 0), still_open
        open_runs = set(still_open)
        dangling = [x for x in unended_steps_of_closed_cycles(wh) if x[0] not in open_runs]
        assert dangling == []
    return still_open


# -- the chain of kills -------------------------------------------------------------------------
@dataclass
class Chain:
    kills: list[dict[str, Any]] = field(default_factory=list)
    missed: list[tuple[str, int]] = field(default_factory=list)  # k past the step's end
    runs: int = 0
    seconds: float = 0.0
    timings: list[tuple[str, float]] = field(default_factory=list)  # (kind of run, seconds)


def spans_of(result: RunResult) -> dict[str, int]:
    return dict(Counter(r["step"] for r in result.trace))


def kill_chain(world: World, tmp_path: Path, seed: int) -> Chain:
    rng = np.random.default_rng(seed)
    strata = [step for step, n in PLAN.items() for _ in range(n)]
    order = [strata[i] for i in rng.permutation(len(strata))]
    chain = Chain()
    clock = time.monotonic()
    tmp_path.mkdir(parents=True, exist_ok=True)
    runs = Runs(tmp_path)
    try:
        first = runs.run(["cycle", "--json"], world.env)  # the clean run the spans come from
        assert first.returncode == 0, first.stderr
        assert_consistent(world, after_kill=False)
        spans = spans_of(first)
        assert set(spans) == set(PLAN), spans  # every step runs warehouse statements
        pending_open: dict[str, list[str]] = {}
        queue = list(order)
        attempts = 0
        while queue:
            step = queue.pop(0)
            attempts += 1
            assert attempts <= len(order) + 12, f"too many runs missed their kill: {chain.missed}"
            an_hour_passes(world.settings)
            if step == "deploy":
                restage(world.settings, rng)
            k = int(rng.integers(1, spans[step] + 1))
            args = ["cycle", "--json"] + ([] if step == "analyze" else ["--steps", CHEAP])
            started = time.monotonic()
            result = runs.run(args, world.env, kill=(step, k))
            chain.timings.append((step, time.monotonic() - started))
            # What the previous kill left open is closed by this run's start, with its steps.
            if pending_open and not (result.killed and result.killed["step"] == "start"):
                with connect(world.settings) as wh:
                    recorded = interrupted_records(wh)
                for run_id, steps in pending_open.items():
                    assert recorded.get(run_id) == steps, (run_id, steps, recorded.get(run_id))
                pending_open = {}
            if result.killed is None:
                chain.missed.append((step, k))
                queue.append(step)  # drawn again, from the spans this run measured
                assert result.returncode == 0, result.stderr
                assert json.loads(result.stdout)["engine_failed"] is False
                spans.update({s: n for s, n in spans_of(result).items() if s in PLAN})
                assert_consistent(world, after_kill=False)
                continue
            assert result.returncode == -9, (result.returncode, result.stderr)
            chain.kills.append(result.killed)
            still_open = assert_consistent(world, after_kill=True)
            if step in ("analyze", "identify", "optimize", "deploy") and still_open:
                (steps,) = still_open.values()
                assert steps in ([], [step]), (step, steps)
            pending_open.update(still_open)
        last = runs.run(["cycle", "--json"], world.env)  # a clean cycle after the last kill
        assert last.returncode == 0, last.stderr
        report = json.loads(last.stdout)
        assert [(s["name"], s["status"]) for s in report["steps"]] == [
            ("analyze", "ok"),
            ("identify", "ok"),
            ("optimize", "ok"),
            ("deploy", "ok"),
        ]
        with connect(world.settings) as wh:
            recorded = interrupted_records(wh)
        for run_id, steps in pending_open.items():
            assert recorded.get(run_id) == steps
        assert_consistent(world, after_kill=False)
    finally:
        runs.close()
        chain.runs = runs.count
        chain.seconds = time.monotonic() - clock
    return chain


def assert_notifications_once(world: World, chain: Chain) -> None:
    """Nothing lost: every message was sent. Nothing twice, but for the one documented gap: a
    kill between Discord's answer and the row's update resends that message."""
    from runner.notify import deliver

    # Most killed runs died before delivering: the backlog can exceed Discord's 30 messages a
    # minute, and what the last cycle's budget left waits for the next run, as here.
    with connect(world.settings) as wh:
        flushed = deliver(wh, world.settings)
    assert flushed.ok and flushed.pending == 0, flushed
    resent = sum(
        1
        for k in chain.kills
        if k["sql"].startswith("update notification_outbox set status = 'sent'")
    )
    with connect(world.settings) as wh:
        states = dict(
            wh.fetchall("select status, count(*) from notification_outbox group by status")
        )
        ids = [r[0] for r in wh.fetchall("select discord_message_id from notification_outbox")]
    assert set(states) == {"sent"}, states
    accepted = {a.id for a in world.discord.accepted}
    assert set(ids) <= accepted
    assert len(world.discord.accepted) == states["sent"] + resent, (
        len(world.discord.accepted),
        states,
        resent,
    )


@pytest.mark.parametrize("kind", ["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_sigkill_at_seeded_statements_of_every_step_leaves_nothing_torn(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """26 runs per warehouse killed at seeded statements across every step (the cycle's start,
    ANALYZE's dbt build, IDENTIFY, OPTIMIZE's task, DEPLOY's staging and smoke tests, the summary
    and Discord), each the recovery of the one before: no duplicate, nothing half-written, every
    killed cycle closed as interrupted at the step it died in, Discord's messages all sent once
    (but for a kill right after Discord answered), and a clean cycle at the end."""
    world: World = request.getfixturevalue(f"{kind}_world")
    chain = kill_chain(world, tmp_path / "runs", SEEDS[kind])
    by_step = Counter(k["step"] for k in chain.kills)
    assert by_step == Counter(PLAN), by_step
    assert_notifications_once(world, chain)
    with connect(world.settings) as wh:
        kinds = Counter(r[0] for r in wh.fetchall("select event_type from improvement_events"))
    killed_in_steps = sum(n for s, n in by_step.items() if s not in ("start", "summary"))
    assert killed_in_steps <= kinds["cycle_interrupted"] <= killed_in_steps + by_step["summary"]
    print(
        f"\n{kind}: {len(chain.kills)} kills in {chain.runs} runs, {chain.seconds:.0f} s;"
        f" by step {dict(by_step)}; missed {chain.missed}; seconds per run by kill step"
        f" { ({s: round(sum(t for x, t in chain.timings if x == s), 1) for s in PLAN}) }"
    )


# -- two cycles at once -------------------------------------------------------------------------
def new_events(settings: Settings, since: datetime) -> Counter[str]:
    with connect(settings) as wh:
        rows = wh.fetchall(
            "select event_type from improvement_events where event_timestamp > %(t)s",
            {"t": since},
        )
    return Counter(str(r[0]) for r in rows)


def db_now(settings: Settings) -> datetime:
    with connect(settings) as wh:
        row = wh.fetchone("select current_timestamp")
    assert row is not None and isinstance(row[0], datetime)
    return row[0]


@pytest.mark.postgres
def test_two_cycles_started_at_once_share_the_work_and_never_repeat_it(
    postgres_world: World,
) -> None:
    """Two `runner cycle` processes on one PostgreSQL schema at the same instant, with one task
    due and one candidate waiting: the task runs once, the candidate is staged and tested once,
    both cycles end, and the audit trail closes both."""
    world = postgres_world
    an_hour_passes(world.settings)
    restage(world.settings, np.random.default_rng(1))
    since = db_now(world.settings)
    command = [sys.executable, "-m", "runner.cli", "cycle", "--json"]
    processes = [
        subprocess.Popen(
            command,
            env=world.env,
            cwd=PROJECT_DIR,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=600) for p in processes]
    for process, (out, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, (
            [(s["name"], s["status"], s["error"]) for s in json.loads(out)["steps"]]
            if out.strip()
            else err[-2000:]
        )
    events = new_events(world.settings, since)
    assert events["cycle_started"] == 2 and events["cycle_completed"] == 2, events
    assert events["task_started"] == 1 and events["task_succeeded"] == 1, events
    assert events["deployment_staged"] == 1 and events["ab_test_started"] == 1, events
    assert events["cycle_interrupted"] == 0  # a live cycle is never taken for a dead one
    assert_consistent(world, after_kill=False)
    with connect(world.settings) as wh:
        running = wh.fetchall("select count(*) from ab_tests where status = 'running'")
    assert running == [(1,)]


# -- the database connection cut mid-cycle ------------------------------------------------------
PASSWORD = "s3cretPW-f4ult"


@contextmanager
def cut_when_paused(world: World, runs: Runs, app_name: str) -> Iterator[threading.Event]:
    """In the background: once the next run pauses, terminate every PostgreSQL backend of that
    runner (and only its: other suites share the server), then let it go on."""
    trace = runs.trace_of_next()
    done = threading.Event()

    def cutter() -> None:
        import psycopg

        url = world.settings.database_url
        assert url is not None
        for _ in range(6000):
            if trace.exists() and "paused" in trace.read_text():
                break
            time.sleep(0.01)
        with psycopg.connect(
            url.get_secret_value(), autocommit=True, application_name="tb_fault_cutter"
        ) as con:
            rows = con.execute(
                "select pg_terminate_backend(pid) from pg_stat_activity"
                " where application_name = %s",
                (app_name,),
            ).fetchall()
        assert rows and all(r[0] for r in rows)
        Path(f"{trace}.go").touch()
        done.set()

    thread = threading.Thread(target=cutter, daemon=True)
    thread.start()
    try:
        yield done
    finally:
        thread.join(timeout=60)


@pytest.mark.postgres
def test_a_connection_cut_mid_cycle_is_one_clear_line_and_the_next_cycle_recovers(
    postgres_world: World, tmp_path: Path
) -> None:
    """The runner's PostgreSQL connections are terminated by the server (pg_terminate_backend)
    while DEPLOY writes a staging deployment, then while the cycle starts: each time one
    sentence without a traceback or the password, exit 1, nothing half-written; the next cycle
    stages the candidate and starts its test."""
    world = postgres_world
    an_hour_passes(world.settings)
    restage(world.settings, np.random.default_rng(2))
    url = world.env["DATABASE_URL"].replace(
        "postgresql://postgres@", f"postgresql://postgres:{PASSWORD}@"
    )
    app_name = f"tb_fault_{os.getpid()}"
    env = {**world.env, "DATABASE_URL": url, "PGAPPNAME": app_name}
    runs = Runs(tmp_path)
    try:
        with cut_when_paused(world, runs, app_name) as cut:
            mid = runs.run(
                ["cycle", "--json", "--steps", CHEAP],
                env,
                pause=("deploy", "insert into deployments"),
            )
        assert cut.is_set()
        assert mid.returncode == 1, (mid.stdout[-2000:], mid.stderr[-2000:])
        steps = {s["name"]: s for s in json.loads(mid.stdout)["steps"]}
        error = steps["deploy"]["error"]
        assert error.startswith("WarehouseUnavailable: Lost the connection to PostgreSQL"), error
        assert "\n" not in error and "Traceback" not in mid.stderr
        assert steps["optimize"]["status"] == "ok"
        assert_consistent(world, after_kill=False)  # the staging transaction left nothing

        with cut_when_paused(world, runs, app_name) as cut:
            start = runs.run(
                ["cycle", "--steps", CHEAP], env, pause=("start", "select pg_advisory_xact_lock")
            )
        assert cut.is_set()
        assert start.returncode == 1, (start.stdout[-2000:], start.stderr[-2000:])
        lines = [line for line in start.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("Error: Lost the connection"), lines
        assert_consistent(world, after_kill=True)

        an_hour_passes(world.settings)
        after = runs.run(["cycle", "--json", "--steps", CHEAP], env)
        assert after.returncode == 0, after.stderr
        deploy = next(s for s in json.loads(after.stdout)["steps"] if s["name"] == "deploy")
        assert "test_started" in deploy["summary"], deploy
        assert_consistent(world, after_kill=False)
    finally:
        runs.close()
    texts = [mid.stdout, mid.stderr, start.stdout, start.stderr, after.stdout, after.stderr]
    texts += [p.read_text() for p in world.settings.logs.glob("improvement_cycle_*.log")]
    with connect(world.settings) as wh:
        texts += [
            str(r)
            for r in wh.fetchall(
                "select trigger_reason, improvement_metrics from improvement_events"
            )
        ]
        texts += [
            str(r) for r in wh.fetchall("select payload, last_error from notification_outbox")
        ]
    assert not [t for t in texts if PASSWORD in t]


# -- Discord misbehaving for a whole cycle ------------------------------------------------------
def test_a_cycle_against_a_slow_rate_limited_garbage_answering_discord_loses_and_repeats_nothing(
    duckdb_world: World,
) -> None:
    """A whole cycle whose Discord stalls past the timeout, answers 429, 500 and a 200 with an
    HTML body: the cycle finishes without an engine failure, every message is delivered (this
    run or the next), and Discord holds each exactly once (a stalled request never posted; the
    garbage 200 did and is not sent again)."""
    world = duckdb_world
    discord = world.discord
    discord.stall_seconds = 0.6
    settings = world.settings.model_copy(
        update={
            "notify_timeout_seconds": 0.3,
            "notify_backoff_seconds": 0.05,
            "notify_budget_seconds": 20.0,
        }
    )
    restage(settings, np.random.default_rng(3))
    with connect(settings) as wh:
        sent_before = dict(
            wh.fetchall("select status, count(*) from notification_outbox group by status")
        ).get("sent", 0)
    accepted_before = len(discord.accepted)
    discord.script("stall", "429", "garbage", "500", "stall", "ok", "garbage")
    report = run_cycle(settings, steps=("deploy",))
    assert not report.engine_failed, report.steps
    assert "test_started" in report.steps[0].summary
    flush = run_cycle(settings, steps=("deploy",))  # whatever waited goes now
    assert not flush.engine_failed
    with connect(settings) as wh:
        states = dict(
            wh.fetchall("select status, count(*) from notification_outbox group by status")
        )
    assert set(states) == {"sent"}, states
    assert len(discord.accepted) - accepted_before == states["sent"] - sent_before
    payloads = [json.dumps(a.payload, sort_keys=True) for a in discord.accepted[accepted_before:]]
    assert len(payloads) == len(set(payloads))  # nothing twice
    assert any(report.cycle_id in p for p in payloads) and any(
        flush.cycle_id in p for p in payloads
    )
    assert_consistent(world, after_kill=False)
