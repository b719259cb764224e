"""What `runner status` shows: the monitoring guide's three views (recent events, pending
optimizations, running A/B tests), the active allocation, the latest optimization runs, and the open alerts and
recommendations of the latest marts.

It only reads; it builds nothing and records nothing (run `runner analyze` for fresh marts).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from runner.audit import StoredEvent, recent_events
from runner.deploy.state import allocation
from runner.engine_tables import pending_optimizations, running_ab_tests
from runner.identify import (
    ALERTS_MART,
    RECOMMENDATIONS_MART,
    Alert,
    Recommendation,
    for_component,
    latest_alerts,
    latest_recommendations,
    open_alerts,
)
from runner.optimize.runs import recent_runs
from runner.warehouse import Warehouse

RECENT_DAYS = 7


@dataclass(frozen=True)
class StatusReport:
    component: str | None
    days: int
    recent_events: list[StoredEvent]  # newest first
    pending_optimizations: list[dict[str, Any]]  # by next run
    running_ab_tests: list[dict[str, Any]]
    allocation: list[dict[str, Any]]  # active_allocation: who trades each component's signals
    optimization_runs: list[dict[str, Any]]  # newest first
    alerts: list[Alert]  # warning and critical, critical first
    recommendations: list[Recommendation]  # by priority
    notes: list[str] = field(default_factory=list)


def status_report(
    wh: Warehouse,
    component: str | None = None,
    days: int = RECENT_DAYS,
    now: datetime | None = None,
) -> StatusReport:
    """Read every section, optionally for one component (model alerts have no component)."""
    notes = [
        f"{mart} does not exist yet: run `runner analyze` to build it."
        for mart in (ALERTS_MART, RECOMMENDATIONS_MART)
        if not wh.table_exists(mart)
    ]
    return StatusReport(
        component=component,
        days=days,
        recent_events=recent_events(wh, days, component, now),
        pending_optimizations=pending_optimizations(wh, component),
        running_ab_tests=running_ab_tests(wh, component),
        allocation=[asdict(row) for row in allocation(wh, component)],
        optimization_runs=recent_runs(wh, component, limit=10),
        alerts=for_component(open_alerts(latest_alerts(wh)), component),
        recommendations=for_component(latest_recommendations(wh), component),
        notes=notes,
    )


def event_dict(event: StoredEvent) -> dict[str, Any]:
    """An event under the table's column names (metrics as a parsed object)."""
    value = asdict(event)
    value["improvement_metrics"] = value.pop("metrics")
    return value


def report_dict(report: StatusReport) -> dict[str, Any]:
    """The report as plain data, for `--json`."""
    return {
        "component": report.component,
        "recent_events_days": report.days,
        "recent_events": [event_dict(e) for e in report.recent_events],
        "pending_optimizations": report.pending_optimizations,
        "running_ab_tests": report.running_ab_tests,
        "allocation": report.allocation,
        "optimization_runs": report.optimization_runs,
        "open_alerts": [asdict(a) for a in report.alerts],
        "recommendations": [asdict(r) for r in report.recommendations],
        "notes": report.notes,
    }
