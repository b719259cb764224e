"""IDENTIFY → events: alerts and recommendations from the identify marts become audit events once
per change (raised, escalated, resolved; created, closed), never once per run.

The marts are fixture tables made here (`create table … as select …`), with the columns the dbt
identify marts promise, so these tests do not depend on the dbt models.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from runner.audit import AuditTrail, read_events
from runner.identify import (
    ALERT_COLUMNS,
    ALERTS_MART,
    RECOMMENDATION_COLUMNS,
    RECOMMENDATIONS_MART,
    IdentifyResult,
    identify,
)
from runner.warehouse import Warehouse

AS_OF = date(2024, 6, 28)

_TYPES = {
    "as_of_date": "date",
    "window_days": "integer",
    "priority": "integer",
    "value": "double precision",
    "threshold_value": "double precision",
    "statistic_value": "double precision",
    "evidence_count": "bigint",
    "min_evidence": "bigint",
    "is_alert": "boolean",
}
ALERT_MART_COLUMNS = (*ALERT_COLUMNS, "is_alert")


def _create_as_select(
    wh: Warehouse, table: str, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]
) -> None:
    """(Re)create `table` as a union of typed selects of `rows` (an empty table when none)."""
    params: dict[str, Any] = {}
    selects = []
    for i, row in enumerate(rows or [{}]):
        cells = []
        for column in columns:
            params[f"r{i}_{column}"] = row.get(column)
            cells.append(f"cast(%(r{i}_{column})s as {_TYPES.get(column, 'text')}) as {column}")
        selects.append("select " + ", ".join(cells) + ("" if rows else " where 1 = 0"))
    wh.execute(f"drop table if exists {table}")
    wh.execute(f"create table {table} as " + " union all ".join(selects), params)


def alert(
    subject_id: str,
    metric: str,
    status: str,
    *,
    window_days: int = 30,
    value: float = 0.4,
    subject_type: str = "component",
    as_of: date = AS_OF,
) -> dict[str, Any]:
    is_model = subject_type == "model"
    return {
        "alert_id": f"{subject_type}:{subject_id}:{metric}:{window_days}:{as_of}",
        "subject_type": subject_type,
        "subject_id": subject_id,
        "component_id": None if is_model else subject_id,
        "model_id": subject_id if is_model else None,
        "model_version": "v3" if is_model else None,
        "as_of_date": as_of,
        "window_days": window_days,
        "metric": metric,
        "value": value,
        "status": status,
        "threshold_crossed": status if status in ("warning", "critical") else None,
        "threshold_value": 0.5,
        "evidence_count": 40,
        "min_evidence": 20,
        "is_alert": status in ("warning", "critical"),
    }


def recommendation(
    recommendation_id: str,
    component_id: str = "trend_spx",
    *,
    priority: int = 1,
    reason: str = "Sharpe at its critical threshold: retune the hyperparameters",
    as_of: date = AS_OF,
) -> dict[str, Any]:
    return {
        "recommendation_id": recommendation_id,
        "component_id": component_id,
        "recommendation_type": "hyperparameter",
        "priority": priority,
        "rule_id": "sharpe_critical",
        "reason": reason,
        "metric": "sharpe",
        "value": 0.2,
        "threshold_value": 0.5,
        "window_days": 30,
        "statistic_name": None,
        "statistic_value": None,
        "as_of_date": as_of,
    }


def write_marts(
    wh: Warehouse,
    alerts: Sequence[Mapping[str, Any]] | None = (),
    recommendations: Sequence[Mapping[str, Any]] | None = (),
) -> None:
    """Replace the identify marts by these rows; None drops the mart (an older dbt project)."""
    for table, columns, rows in (
        (ALERTS_MART, ALERT_MART_COLUMNS, alerts),
        (RECOMMENDATIONS_MART, RECOMMENDATION_COLUMNS, recommendations),
    ):
        if rows is None:
            wh.execute(f"drop table if exists {table}")
        else:
            _create_as_select(wh, table, columns, rows)


def run(wh: Warehouse, secrets: tuple[str, ...] = ()) -> IdentifyResult:
    return identify(wh, AuditTrail(wh, secrets=secrets), models_built=12)


def counts(wh: Warehouse) -> Counter[str]:
    return Counter(e.event_type for e in read_events(wh))


def test_first_run_raises_open_alerts_and_creates_recommendations(warehouse: Warehouse) -> None:
    """Warning and critical alerts are raised; ok, below_target and insufficient_data are not."""
    write_marts(
        warehouse,
        [
            alert("trend_spx", "sharpe", "critical"),
            alert("trend_spx", "win_rate", "warning"),
            alert("meanrev_ndx", "sharpe", "ok"),
            alert("meanrev_ndx", "win_rate", "below_target"),
            alert("breakout_spx", "sharpe", "insufficient_data"),
            alert("clf_spx", "model_accuracy", "warning", subject_type="model"),
        ],
        [recommendation("rec_a"), recommendation("rec_b", "meanrev_ndx", priority=2)],
    )
    result = run(warehouse)
    assert counts(warehouse) == {
        "analysis_completed": 1,
        "alert_raised": 3,
        "recommendation_created": 2,
    }
    assert [(a.subject_id, a.status) for a in result.alerts] == [
        ("trend_spx", "critical"),
        ("trend_spx", "warning"),
        ("clf_spx", "warning"),  # components before models at one severity
    ]
    assert [r.recommendation_id for r in result.recommendations] == ["rec_a", "rec_b"]
    (summary,) = read_events(warehouse, event_types=("analysis_completed",))
    assert summary.metrics["models_built"] == 12
    assert summary.metrics["alerts_by_status"] == {
        "below_target": 1,
        "critical": 1,
        "insufficient_data": 1,
        "ok": 1,
        "warning": 2,
    }
    assert summary.as_of_date == AS_OF and summary.run_id == result.events[0].run_id
    raised = read_events(warehouse, event_types=("alert_raised",), component="trend_spx")
    assert {e.alert_id for e in raised} == {
        "component:trend_spx:sharpe:30:2024-06-28",
        "component:trend_spx:win_rate:30:2024-06-28",
    }
    assert (
        "sharpe over 30 days for component trend_spx is 0.4: critical" in raised[0].trigger_reason
    )


def test_running_twice_on_the_same_marts_adds_only_a_second_analysis_completed(
    warehouse: Warehouse,
) -> None:
    write_marts(warehouse, [alert("trend_spx", "sharpe", "critical")], [recommendation("rec_a")])
    run(warehouse)
    before = counts(warehouse)
    second = run(warehouse)
    after = counts(warehouse)
    assert after - before == Counter({"analysis_completed": 1})
    assert [e.event_type for e in second.events] == ["analysis_completed"]
    assert second.alerts and second.recommendations  # still shown, just not re-recorded


def test_an_alert_staying_open_on_later_days_is_not_raised_again(warehouse: Warehouse) -> None:
    """The alert id changes with the as-of date; the streak key (subject, metric, window) does not."""
    write_marts(warehouse, [alert("trend_spx", "sharpe", "warning", as_of=date(2024, 6, 27))])
    run(warehouse)
    write_marts(warehouse, [alert("trend_spx", "sharpe", "warning", as_of=date(2024, 6, 28))])
    run(warehouse)
    assert counts(warehouse)["alert_raised"] == 1


def test_escalation_raises_again_and_de_escalation_does_not(warehouse: Warehouse) -> None:
    for status in ("warning", "critical", "warning", "critical"):
        write_marts(warehouse, [alert("trend_spx", "sharpe", status)])
        run(warehouse)
    raised = read_events(warehouse, event_types=("alert_raised",))
    assert [e.metrics["status"] for e in raised] == ["warning", "critical"]


def test_an_alert_back_to_ok_is_resolved_and_a_new_breach_is_raised_again(
    warehouse: Warehouse,
) -> None:
    for status in ("critical", "ok", "ok", "warning"):
        write_marts(warehouse, [alert("trend_spx", "sharpe", status)])
        run(warehouse)
    alert_events = read_events(warehouse, event_types=("alert_raised", "alert_resolved"))
    assert [(e.event_type, e.metrics["status"]) for e in alert_events] == [
        ("alert_raised", "critical"),
        ("alert_resolved", "ok"),
        ("alert_raised", "warning"),
    ]
    assert alert_events[1].trigger_reason.endswith("is back to ok")


def test_an_alert_that_leaves_the_mart_is_resolved(warehouse: Warehouse) -> None:
    write_marts(warehouse, [alert("trend_spx", "sharpe", "critical")])
    run(warehouse)
    write_marts(warehouse, [])
    run(warehouse)
    (resolved,) = read_events(warehouse, event_types=("alert_resolved",))
    assert resolved.metrics["status"] == "absent"


def test_a_recommendation_closes_when_it_leaves_the_mart_and_can_open_again(
    warehouse: Warehouse,
) -> None:
    write_marts(warehouse, [], [recommendation("rec_a"), recommendation("rec_b")])
    run(warehouse)
    write_marts(warehouse, [], [recommendation("rec_b")])
    second = run(warehouse)
    assert [(e.event_type, e.recommendation_id) for e in second.events[1:]] == [
        ("recommendation_closed", "rec_a")
    ]
    write_marts(warehouse, [], [recommendation("rec_a"), recommendation("rec_b")])
    third = run(warehouse)
    assert [(e.event_type, e.recommendation_id) for e in third.events[1:]] == [
        ("recommendation_created", "rec_a")
    ]
    assert counts(warehouse) == {
        "analysis_completed": 3,
        "recommendation_created": 3,
        "recommendation_closed": 1,
    }


def test_missing_marts_are_skipped_with_a_note_not_a_crash(warehouse: Warehouse) -> None:
    write_marts(warehouse, None, None)
    result = run(warehouse)
    assert [e.event_type for e in result.events] == ["analysis_completed"]
    assert result.alerts == [] and result.recommendations == []
    assert len(result.notes) == 2 and "mart_metric_alerts does not exist" in result.notes[0]
    assert result.events[0].metrics["skipped_marts"] == [ALERTS_MART, RECOMMENDATIONS_MART]


def test_secrets_in_a_recommendation_reason_are_redacted_when_stored(warehouse: Warehouse) -> None:
    reason = "webhook https://discord.com/api/webhooks/42/tok-en failed; db postgresql://u:pw9@h/d; key s3cr3t"
    write_marts(warehouse, [], [recommendation("rec_a", reason=reason)])
    run(warehouse, secrets=("s3cr3t",))
    stored = " ".join(str(row) for row in warehouse.fetchall("select * from improvement_events"))
    for leak in ("tok-en", "pw9", "s3cr3t"):
        assert leak not in stored
    assert "/api/webhooks/42/***" in stored and "postgresql://u:***@h/d" in stored
