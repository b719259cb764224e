"""`runner status` and the alert/recommendation part of `runner analyze`, as a user runs them:
tables with coloured statuses, one line per empty section, and the same structure as --json."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from runner.audit import AuditTrail, Event, read_events
from runner.cli import app
from runner.cli.render import status_cell
from runner.config import Settings
from runner.dbt import NodeResult
from runner.engine_tables import (
    ABTest,
    OptimizationTask,
    insert_ab_tests,
    insert_optimization_tasks,
)
from runner.warehouse import Warehouse, connect
from runner.warehouse.migrations import migrate
from tests.python.test_identify_events import AS_OF, alert, recommendation, write_marts

STATUS_KEYS = {
    "component",
    "recent_events_days",
    "recent_events",
    "pending_optimizations",
    "running_ab_tests",
    "allocation",
    "optimization_runs",
    "open_alerts",
    "recommendations",
    "notes",
}


def _flat(text: str) -> str:
    return " ".join(text.split())


def cli(settings: Settings, *args: str) -> tuple[int, str]:
    """Run `runner ARGS` against the fixture's warehouse, as the environment would configure it."""
    env = {"DATABASE_URL": "", "TRADEBASE_PROJECT_DIR": str(settings.project)}
    if settings.dbt_artifacts_dir is not None:
        env["TRADEBASE_DBT_ARTIFACTS_DIR"] = str(settings.dbt_artifacts_dir)
    prefix: list[str] = []
    if settings.dialect == "postgres":
        assert settings.database_url is not None
        env |= {
            "DATABASE_URL": settings.database_url.get_secret_value(),
            "TRADEBASE_SCHEMA": settings.schema,
        }
    else:
        prefix = ["--duckdb-path", str(settings.duckdb_file)]
    result = CliRunner().invoke(app, [*prefix, *args], env=env, terminal_width=160)
    return result.exit_code, result.output


def _populate(wh: Warehouse) -> None:
    now = datetime.now(UTC)
    write_marts(
        wh,
        [
            alert("trend_spx", "sharpe", "critical", value=0.21),
            alert("meanrev_ndx", "win_rate", "warning", value=0.48),
            alert("meanrev_ndx", "sharpe", "ok"),
        ],
        [
            recommendation("rec_risk", "meanrev_ndx", priority=2, reason="Review position size"),
            recommendation("rec_tune", "trend_spx", priority=1, reason="Retune trend_spx"),
        ],
    )
    trail = AuditTrail(wh)
    trail.record([Event("alert_raised", "sharpe critical", component_id="trend_spx")])
    trail.record([Event("analysis_completed", "too old")], at=now - timedelta(days=9))
    insert_optimization_tasks(
        wh,
        [
            OptimizationTask(
                "t1", "hyperparameter", "trend_spx", "daily", now + timedelta(hours=2)
            ),
            OptimizationTask("t2", "risk_adjustment", "meanrev_ndx", "weekly", now),
        ],
    )
    insert_ab_tests(
        wh,
        [
            ABTest(
                "ab1", "trend_spx v1 vs v2", "trend_spx", "v1", "v2", 0.05, 5000, 0.05,
                "net_return_per_trade", "signal", improvement_percent=2.5,
            )
        ],
    )  # fmt: skip


@pytest.fixture
def populated(settings: Settings) -> Settings:
    with connect(settings) as wh:
        migrate(wh)
        _populate(wh)
    return settings


def test_status_on_an_empty_warehouse_says_each_section_is_empty(settings: Settings) -> None:
    code, output = cli(settings, "status")
    out = _flat(output)
    assert code == 0, output
    for line in (
        "No improvement events in the last 7 days.",
        "No pending optimizations.",
        "No A/B test is running.",
        "No open alerts (warning or critical).",
        "No recommendations.",
        "mart_metric_alerts does not exist yet",
    ):
        assert line in out


def test_status_shows_the_three_monitoring_views_alerts_and_recommendations(
    populated: Settings,
) -> None:
    code, output = cli(populated, "status")
    out = _flat(output)
    assert code == 0, output
    assert "Improvement events, last 7 days" in out and "sharpe critical" in out
    assert "too old" not in out
    assert "Pending optimizations" in out and "risk_adjustment" in out and "weekly" in out
    assert "Running A/B tests" in out and "trend_spx v1 vs v2" in out and "+2.50%" in out
    assert "Open alerts" in out and "critical" in out and "21.00%" not in out
    assert out.index("Retune trend_spx") < out.index("Review position size")  # by priority


def test_status_json_has_every_section_and_filters_by_component(populated: Settings) -> None:
    code, output = cli(populated, "status", "--json")
    assert code == 0, output
    report = json.loads(output)
    assert set(report) == STATUS_KEYS
    assert [e["event_type"] for e in report["recent_events"]] == ["alert_raised"]
    assert {"event_timestamp", "improvement_metrics", "run_id"} <= set(report["recent_events"][0])
    assert [t["task_id"] for t in report["pending_optimizations"]] == ["t2", "t1"]
    assert [t["test_id"] for t in report["running_ab_tests"]] == ["ab1"]
    assert report["optimization_runs"] == []  # none ran here; test_optimize shows filled ones
    assert [(a["subject_id"], a["status"]) for a in report["open_alerts"]] == [
        ("trend_spx", "critical"),
        ("meanrev_ndx", "warning"),
    ]
    assert [r["recommendation_id"] for r in report["recommendations"]] == ["rec_tune", "rec_risk"]

    code, output = cli(populated, "status", "--json", "--component", "meanrev_ndx")
    only = json.loads(output)
    assert only["component"] == "meanrev_ndx" and only["recent_events"] == []
    assert [t["task_id"] for t in only["pending_optimizations"]] == ["t2"]
    assert only["running_ab_tests"] == []
    assert [a["metric"] for a in only["open_alerts"]] == ["win_rate"]
    assert [r["recommendation_id"] for r in only["recommendations"]] == ["rec_risk"]


def test_alert_statuses_are_coloured_critical_red_warning_yellow() -> None:
    assert status_cell("critical") == "[bold red]critical[/]"
    assert status_cell("warning") == "[yellow]warning[/]"
    assert status_cell("ok") == "ok"


def _fake_build(settings: Settings) -> None:
    """Marts as dbt would leave them (fixture tables), without running dbt."""
    with connect(settings) as wh:
        migrate(wh)
        wh.execute("drop table if exists mart_performance")
        wh.execute(
            "create table mart_performance as select"
            " cast('trend_spx' as text) as component_id, cast(%(as_of)s as date) as as_of_date,"
            " 30 as window_days, 40 as n_trades, 21 as n_days, 0.4 as win_rate,"
            " -0.001 as avg_trade_return, 0.8 as profit_factor, -0.001 as expectancy,"
            " -0.7 as sharpe, -0.9 as sortino, 0.12 as max_drawdown, -0.2 as annual_return,"
            " -1.6 as calmar",
            {"as_of": AS_OF},
        )
        write_marts(
            wh,
            [alert("trend_spx", "sharpe", "critical", value=-0.7)],
            [recommendation("rec_tune", reason="Retune trend_spx")],
        )


def test_analyze_prints_alerts_and_recommendations_after_the_metrics_and_records_them(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """dbt is replaced by fixture marts; everything after the build is the real path."""
    _fake_build(settings)
    node = NodeResult("mart_performance", "model", "success", "")
    monkeypatch.setattr("runner.analyze.build_analytics", lambda s, as_of=None, **_: [node])

    code, output = cli(settings, "analyze")
    out = _flat(output)
    assert code == 0, output
    assert out.index("trend_spx — windows ending") < out.index("Open alerts")
    assert out.index("Open alerts") < out.index("Recommendations") < out.index("Retune trend_spx")
    assert "critical" in out

    code, output = cli(settings, "analyze", "--json")
    assert code == 0, output
    result = json.loads(output)
    assert set(result) == {
        "as_of",
        "run_id",
        "performance",
        "alerts",
        "recommendations",
        "events",
        "notes",
    }
    assert [a["status"] for a in result["alerts"]] == ["critical"]
    assert [e["event_type"] for e in result["events"]] == ["analysis_completed"]  # second run
    with connect(settings) as wh:
        types = sorted(e.event_type for e in read_events(wh))
    assert types == [
        "alert_raised",
        "analysis_completed",
        "analysis_completed",
        "recommendation_created",
    ]


@pytest.mark.integration
def test_analyze_twice_on_the_sample_data_records_the_alerts_once(tmp_path: Path) -> None:
    """The bundled sample data through the real dbt build: the losing trend_spx is alerted and
    printed; a second analyze of the same data appends only its analysis_completed."""
    from runner.demo import SAMPLE_AS_OF, sample_file
    from runner.ingest import Kind, ingest_file
    from tests.python.conftest import PROJECT_DIR

    settings = Settings(
        duckdb_path=tmp_path / "sample.duckdb",
        project_dir=PROJECT_DIR,
        database_url=None,
        dbt_artifacts_dir=tmp_path,
    )
    with connect(settings) as wh:
        migrate(wh)
        for kind in (Kind.bars, Kind.trades, Kind.predictions):
            ingest_file(wh, settings, kind, sample_file(kind))
    code, output = cli(settings, "analyze", "--as-of", SAMPLE_AS_OF.isoformat())
    assert code == 0, output
    assert "Open alerts" in output and "Recommendations" in output
    with connect(settings) as wh:
        first = read_events(wh)
    assert any(e.event_type == "alert_raised" and e.component_id == "trend_spx" for e in first)

    code, output = cli(settings, "analyze", "--as-of", SAMPLE_AS_OF.isoformat())
    assert code == 0, output
    with connect(settings) as wh:
        added = [e.event_type for e in read_events(wh)[len(first) :]]
    assert added == ["analysis_completed"]
