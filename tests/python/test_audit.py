"""The engine tables and the audit trail: the monitoring guide's three queries run verbatim on both
warehouses and return what the engine wrote; events are append-only, bulk-inserted, redacted."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

import runner
from runner.audit import AuditTrail, Event, read_events, recent_events
from runner.engine_tables import (
    ABTest,
    OptimizationTask,
    insert_ab_tests,
    insert_optimization_tasks,
    pending_optimizations,
    running_ab_tests,
)
from runner.identify import identify
from runner.warehouse import Warehouse
from tests.python.test_identify_events import alert, recommendation, write_marts

# Copied from the monitoring guide, unchanged: they must run as users type them.
RECENT_EVENTS_QUERY = """
SELECT event_timestamp, event_type, component_id, trigger_reason, improvement_metrics
FROM improvement_events WHERE event_timestamp > NOW() - INTERVAL '7 days' ORDER BY event_timestamp DESC;
"""
QUEUE_QUERY = """
SELECT task_type, component_id, frequency, next_run_at, status
FROM optimization_queue WHERE enabled = TRUE ORDER BY next_run_at;
"""
AB_TESTS_QUERY = """
SELECT test_name, control_version, treatment_version, status, improvement_percent
FROM ab_tests WHERE status = 'running';
"""

NOW = datetime.now(UTC).replace(microsecond=0)


def _task(task_id: str, hours: int, **changes: object) -> OptimizationTask:
    values: dict[str, object] = {
        "task_id": task_id,
        "task_type": "hyperparameter",
        "component_id": "trend_spx",
        "frequency": "daily",
        "next_run_at": NOW + timedelta(hours=hours),
    }
    values.update(changes)
    return OptimizationTask(**values)  # type: ignore[arg-type]


def _ab(test_id: str, status: str = "running", **changes: object) -> ABTest:
    values: dict[str, object] = {
        "test_id": test_id,
        "test_name": f"{test_id}: trend_spx v1 vs v2",
        "component_id": "trend_spx",
        "control_version": "v1",
        "treatment_version": "v2",
        "alpha": 0.05,
        "planned_n": 5000,
        "margin": 0.05,
        "primary_metric": "net_return_per_trade",
        "randomisation_unit": "signal",
        "status": status,
    }
    values.update(changes)
    return ABTest(**values)  # type: ignore[arg-type]


def test_recent_events_query_runs_verbatim_and_returns_what_identify_wrote(
    warehouse: Warehouse,
) -> None:
    write_marts(warehouse, [alert("trend_spx", "sharpe", "critical")], [recommendation("rec_a")])
    trail = AuditTrail(warehouse)
    trail.record(
        [Event("analysis_completed", "an old run", {})], at=datetime.now(UTC) - timedelta(days=8)
    )
    identify(warehouse, trail, models_built=3)
    rows = warehouse.fetchall(RECENT_EVENTS_QUERY)
    assert sorted(r[1] for r in rows) == [
        "alert_raised",
        "analysis_completed",
        "recommendation_created",
    ]  # the 8-day-old event is outside the window
    raised = next(r for r in rows if r[1] == "alert_raised")
    assert raised[2] == "trend_spx"
    assert json.loads(raised[4])["status"] == "critical"
    assert raised[0].tzinfo is not None  # timestamptz on both warehouses


def test_queue_query_runs_verbatim_and_returns_enabled_tasks_by_next_run(
    warehouse: Warehouse,
) -> None:
    insert_optimization_tasks(
        warehouse,
        [
            _task("t_late", 48, task_type="retrain", frequency="0 3 * * 1"),
            _task("t_soon", 1, config={"trials": 50}),
            _task("t_off", 0, enabled=False),
            _task("t_rec", 5, source="recommendation", recommendation_id="rec_a", priority=1),
        ],
    )
    rows = warehouse.fetchall(QUEUE_QUERY)
    assert [(r[0], r[2], r[4]) for r in rows] == [
        ("hyperparameter", "daily", "pending"),
        ("hyperparameter", "daily", "pending"),
        ("retrain", "0 3 * * 1", "pending"),
    ]
    assert rows[0][3] == NOW + timedelta(hours=1)
    pending = pending_optimizations(warehouse)
    assert [t["task_id"] for t in pending] == ["t_soon", "t_rec", "t_late"]
    assert pending[1]["recommendation_id"] == "rec_a" and pending[1]["priority"] == 1
    (config,) = warehouse.fetchone(
        "select config from optimization_queue where task_id = 't_soon'"
    ) or (None,)
    assert json.loads(config) == {"trials": 50}


def test_ab_tests_query_runs_verbatim_and_returns_the_running_tests(warehouse: Warehouse) -> None:
    insert_ab_tests(
        warehouse,
        [
            _ab("ab_1", improvement_percent=1.25, current_stage=50, n_control=800, n_treatment=790),
            _ab("ab_2", status="promoted", ended_at=NOW),
        ],
    )
    rows = warehouse.fetchall(AB_TESTS_QUERY)
    assert rows == [("ab_1: trend_spx v1 vs v2", "v1", "v2", "running", 1.25)]
    (running,) = running_ab_tests(warehouse, "trend_spx")
    assert running["current_stage"] == 50 and running["n_treatment"] == 790
    assert running_ab_tests(warehouse, "other") == []


@pytest.mark.parametrize(
    ("table", "bad"),
    [
        ("queue", {"task_type": "guess"}),
        ("queue", {"source": "manual"}),
        ("queue", {"priority": 0}),
        ("ab", {"status": "paused"}),
        ("ab", {"current_stage": 30}),
    ],
)
def test_enum_columns_reject_values_outside_their_vocabulary(
    warehouse: Warehouse, table: str, bad: dict[str, object]
) -> None:
    with pytest.raises(Exception, match=r"(?i)check"):
        if table == "queue":
            insert_optimization_tasks(warehouse, [_task("t", 1, **bad)])
        else:
            insert_ab_tests(warehouse, [_ab("a", **bad)])


def test_a_batch_of_events_is_one_insert(
    warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[int] = []
    original = warehouse.load_arrow

    def counting(table: str, data: object) -> None:
        loads.append(data.num_rows)  # type: ignore[attr-defined]
        original(table, data)  # type: ignore[arg-type]

    monkeypatch.setattr(warehouse, "load_arrow", counting)
    events = [Event("alert_raised", f"alert {i}", {"i": i}) for i in range(500)]
    stored = AuditTrail(warehouse).record(events)
    assert loads == [500]
    assert [e.event_id for e in read_events(warehouse)] == [e.event_id for e in stored]


def test_metrics_are_json_text_that_both_warehouses_can_parse(warehouse: Warehouse) -> None:
    metrics = {"sharpe": -0.5, "nan": math.nan, "as_of": date(2024, 6, 28), "nested": {"n": [1, 2]}}
    (stored,) = AuditTrail(warehouse).record([Event("analysis_completed", "x", metrics)])
    assert stored.metrics == {
        "sharpe": -0.5,
        "nan": None,
        "as_of": "2024-06-28",
        "nested": {"n": [1, 2]},
    }
    cast = "::jsonb" if warehouse.dialect == "postgres" else "::json"
    row = warehouse.fetchone(f"select improvement_metrics{cast} from improvement_events")
    assert row is not None
    parsed = json.loads(row[0]) if isinstance(row[0], str) else row[0]
    assert parsed == stored.metrics


def test_secrets_are_masked_in_trigger_reason_and_metrics(warehouse: Warehouse) -> None:
    trail = AuditTrail(warehouse, secrets=("pw-literal",))
    trail.record(
        [
            Event(
                "deployment_failed",
                "push to postgresql://bob:hunter2@db/x failed (pw-literal)",
                {"error": "password=hunter3", "urls": ["https://discord.com/api/webhooks/1/tok"]},
            )
        ]
    )
    text = str(
        warehouse.fetchall("select trigger_reason, improvement_metrics from improvement_events")
    )
    for leak in ("hunter2", "hunter3", "pw-literal", "/1/tok"):
        assert leak not in text
    (event,) = read_events(warehouse)
    assert event.metrics["urls"] == ["https://discord.com/api/webhooks/1/***"]


def test_events_of_one_run_share_its_run_id_and_recent_events_are_newest_first(
    warehouse: Warehouse,
) -> None:
    trail = AuditTrail(warehouse)
    trail.record([Event("analysis_completed", "first")], at=NOW - timedelta(hours=2))
    trail.record([Event("alert_raised", "second", component_id="c1")], at=NOW - timedelta(hours=1))
    recent = recent_events(warehouse, now=NOW)
    assert [e.trigger_reason for e in recent] == ["second", "first"]
    assert {e.run_id for e in recent} == {trail.run_id}
    assert [e.trigger_reason for e in recent_events(warehouse, component="c1", now=NOW)] == [
        "second"
    ]


def test_an_event_type_must_be_snake_case(warehouse: Warehouse) -> None:
    with pytest.raises(ValueError, match="snake_case"):
        AuditTrail(warehouse).record([Event("Alert Raised", "x")])


def test_the_audit_trail_has_no_update_or_delete_path() -> None:
    """Append-only: no method to change an event, and no SQL in the package that would."""
    assert not [n for n in dir(AuditTrail) if re.search("update|delete|remove|clear", n)]
    package = Path(runner.__file__).parent
    pattern = re.compile(r"(update|delete\s+from|truncate)\s+(table\s+)?improvement_events", re.I)
    offenders = [p for p in package.rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []
