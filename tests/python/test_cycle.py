"""`runner cycle` end to end: the four steps on both warehouses with notifications delivered to
the local Discord, a failing step that leaves the independent ones running (exit 1 only for the
engine), a dry run that writes nothing but its event, and the structured log."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from runner.cli import app
from runner.config import Settings
from runner.cycle import parse_steps, run_cycle
from runner.dbt import run_dbt
from runner.deploy.simulate import simulate
from runner.errors import ConfigError
from runner.ingest import ingest_file
from runner.optimize.versions import add_candidate, read_components, seed_versions
from runner.warehouse import connect
from tests.python.deploy_strategies import momentum_market
from tests.python.fake_discord import FakeDiscord
from tests.python.markets import write_bars_csv
from tests.python.scenarios import copy_dbt_project, fresh_settings, open_warehouse

pytestmark = pytest.mark.integration

STRATEGY = "tests.python.deploy_strategies:FollowLastBar"
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


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    component = {
        "component_id": "mom",
        "initial_capital": 100000,
        "periods_per_year": 252,
        "strategy": STRATEGY,
        "symbol": "MOM",
        "params": json.dumps({"follow": 1}),
        "description": "cycle test",
    }
    project = copy_dbt_project(tmp_path / "project", [component])
    tasks = tmp_path / "tasks.csv"
    tasks.write_text(TASKS)
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    with fresh_settings(request.param, tmp_path, project, url) as base:
        settings = base.model_copy(
            update={
                "schedule_tasks_file": tasks,
                "log_dir": tmp_path / "logs",
                "risk_bootstrap_samples": 200,
            }
        )
        bars = write_bars_csv(momentum_market(days=700), "MOM", tmp_path / "MOM.csv")
        with open_warehouse(settings) as wh:
            assert ingest_file(wh, settings, "bars", bars).rejected == 0
        run_dbt(settings, "seed", select="components")
        # Production trades to analyze: the simulator replays the bars under version 1.
        simulate(settings, "mom", until=datetime(2014, 12, 31))
        with open_warehouse(settings) as wh, wh.transaction():
            seed_versions(wh, read_components(wh, "mom"))
            add_candidate(wh, "mom", STRATEGY, {"follow": 1, "stop_loss": 0.3}, 1, None, "")
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


def test_a_failed_step_is_recorded_and_the_independent_steps_still_run(
    world: Settings, tmp_path: Path
) -> None:
    if world.dialect == "postgres":
        pytest.skip("one warehouse is enough to break dbt on purpose")
    broken = world.project / "models" / "marts" / "zz_broken.sql"
    broken.write_text("select * from a_table_that_does_not_exist\n")
    env = {
        "TRADEBASE_DUCKDB_PATH": str(world.duckdb_file),
        "TRADEBASE_PROJECT_DIR": str(world.project),
        "TRADEBASE_ARTIFACT_DIR": str(world.artifacts),
        "TRADEBASE_DBT_ARTIFACTS_DIR": str(world.dbt_artifacts_dir or tmp_path),
        "TRADEBASE_SCHEDULE_TASKS_FILE": str(world.schedule_tasks_file),
        "TRADEBASE_LOG_DIR": str(tmp_path / "logs"),
        "TRADEBASE_RISK_BOOTSTRAP_SAMPLES": "200",
        "DATABASE_URL": "",
    }
    result = CliRunner().invoke(app, ["cycle", "--json"], env=env)
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
