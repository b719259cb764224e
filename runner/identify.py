"""IDENTIFY → events: turn the identify marts (mart_metric_alerts, mart_recommendations) into
audit events after each `runner analyze`, once per change, never once per run.

The thresholds and rules are SQL (the marts); this module only reads the latest as-of date of each
mart, compares it with what the audit trail already says, and appends the difference.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from runner.audit import AuditTrail, Event, StoredEvent, read_events
from runner.warehouse import Warehouse

ALERTS_MART = "mart_metric_alerts"
RECOMMENDATIONS_MART = "mart_recommendations"

ANALYSIS_COMPLETED = "analysis_completed"
ALERT_RAISED = "alert_raised"
ALERT_RESOLVED = "alert_resolved"
RECOMMENDATION_CREATED = "recommendation_created"
RECOMMENDATION_CLOSED = "recommendation_closed"

# Statuses that make an alert open, by severity: a raise repeats only on escalation.
SEVERITY = {"warning": 1, "critical": 2}

ALERT_COLUMNS = (
    "alert_id",
    "subject_type",
    "subject_id",
    "component_id",
    "model_id",
    "model_version",
    "as_of_date",
    "window_days",
    "metric",
    "value",
    "status",
    "threshold_crossed",
    "threshold_value",
    "evidence_count",
    "min_evidence",
)
RECOMMENDATION_COLUMNS = (
    "recommendation_id",
    "component_id",
    "recommendation_type",
    "priority",
    "rule_id",
    "reason",
    "metric",
    "value",
    "threshold_value",
    "window_days",
    "statistic_name",
    "statistic_value",
    "as_of_date",
)


@dataclass(frozen=True)
class Alert:
    """One row of mart_metric_alerts."""

    alert_id: str
    subject_type: str
    subject_id: str
    component_id: str | None
    model_id: str | None
    model_version: str | None
    as_of_date: date
    window_days: int
    metric: str
    value: float | None
    status: str
    threshold_crossed: str | None
    threshold_value: float | None
    evidence_count: int | None
    min_evidence: int | None

    @property
    def key(self) -> tuple[str, str, str, int]:
        """What stays the same from day to day while the problem persists (no as-of date)."""
        return (self.subject_type, self.subject_id, self.metric, int(self.window_days))

    @property
    def is_open(self) -> bool:
        return self.status in SEVERITY


@dataclass(frozen=True)
class Recommendation:
    """One row of mart_recommendations (recommendation_id is stable while the problem persists)."""

    recommendation_id: str
    component_id: str | None
    recommendation_type: str
    priority: int
    rule_id: str
    reason: str
    metric: str | None
    value: float | None
    threshold_value: float | None
    window_days: int | None
    statistic_name: str | None
    statistic_value: float | None
    as_of_date: date


@dataclass(frozen=True)
class IdentifyResult:
    """What IDENTIFY found at the latest as-of date and the events it appended."""

    as_of: date | None
    alerts_by_status: dict[str, int]
    alerts: list[Alert]  # open ones (warning, critical), critical first
    recommendations: list[Recommendation]  # by priority
    events: list[StoredEvent]
    notes: list[str] = field(default_factory=list)


def _latest(wh: Warehouse, mart: str, columns: Sequence[str]) -> list[dict[str, Any]]:
    sql = (
        f"select {', '.join(columns)} from {mart}"
        f" where as_of_date = (select max(as_of_date) from {mart})"
    )
    return [dict(zip(columns, row, strict=True)) for row in wh.fetchall(sql)]


def _missing(mart: str) -> str:
    return (
        f"{mart} does not exist (a dbt project without the identify marts?); "
        "skipped its events. Update the dbt project and run `runner analyze` again."
    )


def latest_alerts(wh: Warehouse) -> list[Alert]:
    """Every row of mart_metric_alerts at its latest as-of date (empty if the mart is missing)."""
    if not wh.table_exists(ALERTS_MART):
        return []
    return [Alert(**row) for row in _latest(wh, ALERTS_MART, ALERT_COLUMNS)]


def latest_recommendations(wh: Warehouse) -> list[Recommendation]:
    """mart_recommendations at its latest as-of date, by priority (empty if the mart is missing)."""
    if not wh.table_exists(RECOMMENDATIONS_MART):
        return []
    rows = [
        Recommendation(**row) for row in _latest(wh, RECOMMENDATIONS_MART, RECOMMENDATION_COLUMNS)
    ]
    return sorted(rows, key=lambda r: (r.priority, r.component_id or "", r.recommendation_id))


def open_alerts(alerts: Sequence[Alert]) -> list[Alert]:
    """Alerts at warning or critical, critical first, then by subject, metric and window."""
    return sorted(
        (a for a in alerts if a.is_open),
        key=lambda a: (-SEVERITY[a.status], a.subject_type, a.subject_id, a.metric, a.window_days),
    )


def for_component(items: Sequence[Any], component: str | None) -> list[Any]:
    """Alerts or recommendations of one component (all when `component` is None)."""
    return [x for x in items if component is None or x.component_id == component]


# -- the rules that turn mart rows into events ------------------------------------------------
def _alert_key_of(metrics: dict[str, Any]) -> tuple[str, str, str, int]:
    return (
        str(metrics["subject_type"]),
        str(metrics["subject_id"]),
        str(metrics["metric"]),
        int(metrics["window_days"]),
    )


def open_alert_streaks(wh: Warehouse) -> dict[tuple[str, str, str, int], int]:
    """For each alert key in an open streak (raised and not resolved since), the highest
    severity already raised in that streak. Replays alert_raised / alert_resolved events."""
    streaks: dict[tuple[str, str, str, int], int] = {}
    for event in read_events(wh, event_types=(ALERT_RAISED, ALERT_RESOLVED)):
        key = _alert_key_of(dict(event.metrics))
        if event.event_type == ALERT_RESOLVED:
            streaks.pop(key, None)
        else:
            severity = SEVERITY.get(str(event.metrics.get("status")), 0)
            streaks[key] = max(streaks.get(key, 0), severity)
    return streaks


def open_recommendation_ids(wh: Warehouse) -> set[str]:
    """Recommendation ids whose latest created/closed event is a creation."""
    rows = wh.fetchall(
        "select recommendation_id, event_type from ("
        " select recommendation_id, event_type, row_number() over ("
        "  partition by recommendation_id order by event_timestamp desc, event_id desc) as rn"
        " from improvement_events where event_type in (%(created)s, %(closed)s)"
        ") as last_event where rn = 1",
        {"created": RECOMMENDATION_CREATED, "closed": RECOMMENDATION_CLOSED},
    )
    return {str(rid) for rid, event_type in rows if event_type == RECOMMENDATION_CREATED}


def _alert_metrics(alert: Alert) -> dict[str, Any]:
    return {
        "subject_type": alert.subject_type,
        "subject_id": alert.subject_id,
        "model_id": alert.model_id,
        "model_version": alert.model_version,
        "metric": alert.metric,
        "window_days": alert.window_days,
        "status": alert.status,
        "value": alert.value,
        "threshold_crossed": alert.threshold_crossed,
        "threshold_value": alert.threshold_value,
        "evidence_count": alert.evidence_count,
        "min_evidence": alert.min_evidence,
    }


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def alert_events(
    alerts: Sequence[Alert], streaks: dict[tuple[str, str, str, int], int]
) -> list[Event]:
    """alert_raised for an alert newly open or escalated (warning → critical) in its streak;
    alert_resolved for a streak whose alert is no longer at warning or critical (or gone)."""
    events: list[Event] = []
    current = {a.key: a for a in alerts}
    for alert in open_alerts(alerts):
        if SEVERITY[alert.status] <= streaks.get(alert.key, 0):
            continue
        events.append(
            Event(
                ALERT_RAISED,
                f"{alert.metric} over {alert.window_days} days for {alert.subject_type} "
                f"{alert.subject_id} is {_number(alert.value)}: {alert.status} (threshold "
                f"{alert.threshold_crossed or ''} {_number(alert.threshold_value)}, evidence "
                f"{alert.evidence_count}/{alert.min_evidence})",
                _alert_metrics(alert),
                component_id=alert.component_id,
                alert_id=alert.alert_id,
                as_of_date=alert.as_of_date,
            )
        )
    for key in sorted(streaks):
        now = current.get(key)
        if now is not None and now.is_open:
            continue
        subject_type, subject_id, metric, window_days = key
        status = now.status if now is not None else "absent"
        metrics = {
            "subject_type": subject_type,
            "subject_id": subject_id,
            "metric": metric,
            "window_days": window_days,
            "status": status,
            "value": now.value if now is not None else None,
        }
        events.append(
            Event(
                ALERT_RESOLVED,
                f"{metric} over {window_days} days for {subject_type} {subject_id} is "
                + (f"back to {status}" if now is not None else f"no longer in {ALERTS_MART}"),
                metrics,
                component_id=now.component_id if now is not None else None,
                alert_id=now.alert_id if now is not None else None,
                as_of_date=now.as_of_date if now is not None else None,
            )
        )
    return events


def recommendation_events(
    recommendations: Sequence[Recommendation], open_ids: set[str], as_of: date | None
) -> list[Event]:
    """recommendation_created for an id newly in the mart; recommendation_closed for an open id
    the mart no longer has."""
    events: list[Event] = []
    current = {r.recommendation_id for r in recommendations}
    for rec in recommendations:
        if rec.recommendation_id in open_ids:
            continue
        events.append(
            Event(
                RECOMMENDATION_CREATED,
                rec.reason,
                {
                    "recommendation_type": rec.recommendation_type,
                    "priority": rec.priority,
                    "rule_id": rec.rule_id,
                    "metric": rec.metric,
                    "value": rec.value,
                    "threshold_value": rec.threshold_value,
                    "window_days": rec.window_days,
                    "statistic_name": rec.statistic_name,
                    "statistic_value": rec.statistic_value,
                },
                component_id=rec.component_id,
                recommendation_id=rec.recommendation_id,
                as_of_date=rec.as_of_date,
            )
        )
    for rid in sorted(open_ids - current):
        events.append(
            Event(
                RECOMMENDATION_CLOSED,
                f"recommendation {rid} is no longer produced by {RECOMMENDATIONS_MART}"
                + (f" as of {as_of.isoformat()}" if as_of else ""),
                {},
                recommendation_id=rid,
                as_of_date=as_of,
            )
        )
    return events


def identify(
    wh: Warehouse,
    trail: AuditTrail,
    *,
    models_built: int,
    at: datetime | None = None,
) -> IdentifyResult:
    """Read the identify marts and append this run's events, in one transaction.

    Idempotent: with unchanged marts a second run appends only its analysis_completed. A mart
    that does not exist is skipped with a note (analysis_completed is still recorded).
    """
    notes: list[str] = []
    with wh.transaction():
        if wh.dialect == "postgres":
            # Two runners at once must not both see "not yet raised"; released at commit.
            wh.execute(
                "select pg_advisory_xact_lock(hashtext(%(key)s))",
                {"key": f"tb:identify:{wh.schema}"},
            )
        events: list[Event] = []
        has_alerts = wh.table_exists(ALERTS_MART)
        has_recommendations = wh.table_exists(RECOMMENDATIONS_MART)
        alerts = latest_alerts(wh)
        recommendations = latest_recommendations(wh)
        if has_alerts:
            events += alert_events(alerts, open_alert_streaks(wh))
        else:
            notes.append(_missing(ALERTS_MART))
        dates = [a.as_of_date for a in alerts] + [r.as_of_date for r in recommendations]
        as_of = max(dates, default=None)
        if has_recommendations:
            events += recommendation_events(recommendations, open_recommendation_ids(wh), as_of)
        else:
            notes.append(_missing(RECOMMENDATIONS_MART))
        by_status = dict(sorted(Counter(a.status for a in alerts).items()))
        counts = Counter(e.event_type for e in events)
        summary = Event(
            ANALYSIS_COMPLETED,
            f"runner analyze built {models_built} models"
            + (f" for as-of {as_of.isoformat()}" if as_of else ""),
            {
                "models_built": models_built,
                "alerts_by_status": by_status,
                "open_alerts": sum(1 for a in alerts if a.is_open),
                "open_recommendations": len(recommendations),
                "events": dict(sorted(counts.items())),
                "skipped_marts": [
                    m
                    for m, ok in (
                        (ALERTS_MART, has_alerts),
                        (RECOMMENDATIONS_MART, has_recommendations),
                    )
                    if not ok
                ],
            },
            as_of_date=as_of,
        )
        stored = trail.record([summary, *events], at=at)
    return IdentifyResult(
        as_of=as_of,
        alerts_by_status=by_status,
        alerts=open_alerts(alerts),
        recommendations=recommendations,
        events=stored,
        notes=notes,
    )
