"""`runner cycle` end to end: the four steps on both warehouses with notifications delivered to
the local Discord, a failing step that leaves the independent ones running (exit 1 only for the
engine), a dry run that writes nothing but its event, and the structured log."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from runner.audit import read_events
from runner.cli import app
from runner.config import Settings
from runner.cycle import parse_steps, run_cycle
from runner.dbt import DbtSession
from runner.errors import ConfigError
from runner.warehouse import connect
from tests.python.fake_discord import FakeDiscord
from tests.python.scenarios import (
    copy_world,
    momentum_world,
    own_database,
    runner_environment,
)

pytestmark = pytest.mark.integration

TASKS = (
    "task_id,task_type,component_id,frequency,priority,config,timeout_seconds,enabled,description\n"
    "mom_risk,risk_adjustment,mom,hourly,2,{},600,true,size the momentum follower\n"
)
ENGINE_TABLES = (
    "improvement_events",
    "optimization_queue",
    "optimization_runs",
    "deployments",
    "ab_tests",
    "strategy_versions",
    "notification_outbox",
)


@pytest.fixture(
    scope="module", params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def built(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Settings]:
    """The momentum world (scenarios.py) with an hourly risk task, built once per warehouse; on
    PostgreSQL in a database of its own, the template of each test's copy."""
    root = tmp_path_factory.mktemp(f"cycle_{request.param}")
    pg_url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    with (
        own_database(pg_url) as url,
        momentum_world(request.param, root, url, TASKS) as settings,
    ):
        yield settings


@pytest.fixture
def world(built: Settings, tmp_path: Path) -> Iterator[Settings]:
    """A private copy of the built world: each test changes its own."""
    with copy_world(built, tmp_path) as settings:
        yield settings


def counts(settings: Settings) -> dict[str, int]:
    with connect(settings) as wh:
        out = {}
        for table in ENGINE_TABLES:
            row = wh.fetchone(f"select count(*) from {table}")  # noqa: S608 - fixed names
            out[table] = int(row[0]) if row else 0
        return out


def log_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_cycle_runs_the_four_steps_and_delivers_its_notifications(world: Settings) -> None:
    discord = FakeDiscord().start()
    try:
        settings = world.model_copy(
            update={"discord_webhook_url": SecretStr(discord.url), "notify_timeout_seconds": 2.0}
        )
        report = run_cycle(settings, budget_seconds=600)
    finally:
        discord.stop()
    assert [(s.name, s.status) for s in report.steps] == [
        ("analyze", "ok"),
        ("identify", "ok"),
        ("optimize", "ok"),
        ("deploy", "ok"),
    ], report.steps
    assert not report.engine_failed
    optimize = report.steps[2].details["run_due"]
    assert [r["task_id"] for r in optimize["runs"]] == ["mom_risk"]
    assert "mom: test_started" in report.steps[3].summary

    lines = log_lines(report.log_path)
    assert report.log_path.name.startswith("improvement_cycle_")
    assert lines[0]["kind"] == "cycle_started" and lines[-1]["kind"] == "cycle_finished"
    logged = [line["event_type"] for line in lines if line["kind"] == "event"]
    for kind in ("task_started", "task_succeeded", "ab_test_started", "cycle_completed"):
        assert kind in logged, kind
    assert discord.token not in report.log_path.read_text()

    titles = [json.dumps(a.payload) for a in discord.accepted]
    assert any("ab_test_started" in t or "A/B test" in t for t in titles)
    assert any(report.cycle_id in t for t in titles)  # the summary, last
    assert report.cycle_id in titles[-1]
    with connect(world) as wh:
        left = wh.fetchall("select status, count(*) from notification_outbox group by status")
    assert dict(left) == {"sent": len(discord.accepted)}


def test_the_build_is_from_scratch_once_a_day_and_incremental_between(world: Settings) -> None:
    """The first cycle rebuilds every model and tests every row; the next, within
    cycle_full_refresh_hours, builds incrementally (docs/benchmarks.md, "Scale")."""
    first = run_cycle(world, steps=("analyze",))
    second = run_cycle(world, steps=("analyze",))
    assert first.steps[0].details["full_refresh"] is True, first.steps[0]
    assert "full refresh" in first.steps[0].summary
    assert second.steps[0].details["full_refresh"] is False, second.steps[0]
    with connect(world) as wh:
        marked = [
            e.run_id
            for e in read_events(wh, event_types=["cycle_step_completed"])
            if e.metrics.get("full_refresh")
        ]
    assert marked == [first.cycle_id]


def test_a_failed_step_is_recorded_and_the_independent_steps_still_run(world: Settings) -> None:
    if world.dialect == "postgres":
        pytest.skip("one warehouse is enough to break dbt on purpose")
    broken = world.project / "models" / "marts" / "zz_broken.sql"
    broken.write_text("select * from a_table_that_does_not_exist\n")
    result = CliRunner().invoke(app, ["cycle", "--json"], env=runner_environment(world))
    assert result.exit_code == 1, result.output
    report = json.loads(result.output)
    statuses = {s["name"]: s["status"] for s in report["steps"]}
    assert statuses == {
        "analyze": "failed",
        "identify": "skipped",
        "optimize": "ok",
        "deploy": "ok",
    }
    assert "zz_broken" in report["steps"][0]["error"]
    with connect(world) as wh:
        kinds = [r[0] for r in wh.fetchall("select event_type from improvement_events")]
    assert kinds.count("cycle_step_failed") == 1 and "cycle_failed" in kinds
    assert "ab_test_started" in kinds and "task_succeeded" in kinds


def test_a_dry_run_decides_and_writes_nothing_but_its_event(world: Settings) -> None:
    before = counts(world)
    report = run_cycle(world, dry_run=True)
    assert not report.engine_failed, report.steps
    after = counts(world)
    assert after == {**before, "improvement_events": before["improvement_events"] + 1}
    with connect(world) as wh:
        row = wh.fetchone(
            "select event_type from improvement_events order by event_timestamp desc limit 1"
        )
    assert row is not None and row[0] == "cycle_dry_run"
    deploy = next(s for s in report.steps if s.name == "deploy")
    assert "would stage candidate version 2" in deploy.summary


def test_without_a_webhook_the_cycle_says_notifications_are_off_once(world: Settings) -> None:
    report = run_cycle(world, steps=("deploy",))
    assert [n for n in report.notes if "notifications are off" in n] == [report.notes[0]]
    assert len(report.notes) == 1


def test_steps_are_checked_and_kept_in_the_loops_order() -> None:
    assert parse_steps("deploy, analyze") == ("analyze", "deploy")
    assert parse_steps(None) == ("analyze", "identify", "optimize", "deploy")
    with pytest.raises(ConfigError, match="Unknown step"):
        parse_steps("analyse")


def test_discord_down_is_recorded_and_the_messages_wait_for_the_next_run(world: Settings) -> None:
    discord = FakeDiscord().start()
    url = discord.url
    discord.stop()  # nothing listens on that port any more
    settings = world.model_copy(
        update={
            "discord_webhook_url": SecretStr(url),
            "notify_timeout_seconds": 0.5,
            "notify_budget_seconds": 2.0,
            "notify_backoff_seconds": 0.05,
        }
    )
    report = run_cycle(settings, steps=("deploy",))
    assert not report.engine_failed  # Discord being down is not the engine failing
    with connect(world) as wh:
        kinds = [r[0] for r in wh.fetchall("select event_type from improvement_events")]
        waiting = wh.fetchone("select count(*) from notification_outbox where status = 'pending'")
        text = " ".join(
            str(r[0]) for r in wh.fetchall("select trigger_reason from improvement_events")
        )
    assert kinds.count("notification_failed") == 1
    assert waiting is not None and waiting[0] >= 2  # the test start and the summary, at least
    assert discord.token not in text and discord.token not in report.log_path.read_text()


def _performance(settings: Settings) -> list[tuple[Any, ...]]:
    with connect(settings) as wh:
        return wh.fetchall("select * from mart_performance order by component_id, window_days")


def test_a_long_lived_process_parses_the_project_once_per_kind_of_build(world: Settings) -> None:
    """`runner cycle --every` keeps one DbtSession: dbt parses the project once for the full
    build and once for the hourly ones, not at every cycle; the marts are those a fresh process
    builds; an edited model is parsed again (and the build is then a full one)."""
    session = DbtSession()
    reports = [run_cycle(world, steps=("analyze",), session=session) for _ in range(3)]
    assert [r.steps[0].status for r in reports] == ["ok"] * 3, reports
    assert [r.steps[0].details["full_refresh"] for r in reports] == [True, False, False]
    assert session.parses == 2  # the full build's vars, then the hourly build's
    with_session = _performance(world)
    assert run_cycle(world, steps=("analyze",)).steps[0].status == "ok"  # no session
    assert _performance(world) == with_session

    model = world.project / "models" / "marts" / "analyze" / "mart_performance.sql"
    model.write_text(model.read_text() + "\n-- edited\n")
    edited = run_cycle(world, steps=("analyze",), session=session)
    assert edited.steps[0].status == "ok", edited
    # Other project files: the build is a full one, and the cycle says so (it is the day's).
    assert edited.steps[0].details["full_refresh"] is True
    assert session.parses == 3
    assert session.kept == 1  # the parses of the files before the edit are dropped
    assert _performance(world) == with_session


def test_cycle_every_runs_cycles_in_one_process_until_its_limit(world: Settings) -> None:
    if world.dialect == "postgres":
        pytest.skip("the loop is the same on both warehouses; the file lock is DuckDB's")
    result = CliRunner().invoke(
        app,
        ["cycle", "--steps", "analyze", "--every", "1s", "--max-cycles", "2", "--json"],
        env=runner_environment(world),
    )
    assert result.exit_code == 0, result.output
    reports = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert len(reports) == 2, result.stdout
    assert [r["steps"][0]["status"] for r in reports] == ["ok", "ok"]
    assert [r["steps"][0]["details"]["full_refresh"] for r in reports] == [True, False]
    # Between builds no process holds the file: another one opens it to write.
    code = f"import duckdb; duckdb.connect({str(world.duckdb_file)!r}).execute('select 1')"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
