"""Follow a strategy version back to what produced it: the recommendation and alerts that asked
for a change, the task, the optimization run with its data window and gates, and forward
through its deployment, smoke tests, A/B test and promotion or rollback.

Read only. The links are the ids every engine row carries (strategy_versions.optimization_run_id,
optimization_runs.recommendation_id / task_id, improvement_events.deployment_id / test_id /
recommendation_id / run_id).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from runner.audit import StoredEvent, read_events
from runner.deploy import state
from runner.optimize import versions
from runner.warehouse import Warehouse


@dataclass(frozen=True)
class Trace:
    component_id: str
    version: int
    status: str
    strategy: str
    params: dict[str, Any]
    parent_version: int | None
    run: dict[str, Any] | None  # the optimization run that produced it (None for version 1)
    task: dict[str, Any] | None
    events: list[StoredEvent] = field(default_factory=list)  # oldest first


def _run(wh: Warehouse, run_id: str) -> dict[str, Any] | None:
    columns = (
        "run_id",
        "trigger_reason",
        "recommendation_id",
        "task_id",
        "verdict",
        "data_start",
        "data_end",
        "dsr",
        "pbo",
        "holdout_p",
        "n_trials",
        "started_at",
        "finished_at",
    )
    row = wh.fetchone(
        f"select {', '.join(columns)} from optimization_runs where run_id = %(r)s", {"r": run_id}
    )
    return None if row is None else dict(zip(columns, row, strict=True))


def _task(wh: Warehouse, task_id: str) -> dict[str, Any] | None:
    columns = ("task_id", "task_type", "frequency", "priority", "source", "recommendation_id")
    row = wh.fetchone(
        f"select {', '.join(columns)} from optimization_queue where task_id = %(t)s",
        {"t": task_id},
    )
    return None if row is None else dict(zip(columns, row, strict=True))


def trace(wh: Warehouse, component_id: str, version: int | None = None) -> Trace:
    """The trace of `version` (default: the production version) of `component_id`."""
    chosen = (
        versions.get_version(wh, component_id, version)
        if version is not None
        else versions.production_version(wh, component_id)
    )
    run = _run(wh, chosen.optimization_run_id) if chosen.optimization_run_id else None
    task = _task(wh, str(run["task_id"])) if run and run.get("task_id") else None
    recommendation = run.get("recommendation_id") if run else None
    if recommendation is None and task is not None:
        recommendation = task.get("recommendation_id")
    deployments = [d for d in state.deployments(wh, component_id) if d.version == chosen.version]
    deployment_ids = {d.deployment_id for d in deployments}
    test_ids = {d.test_id for d in deployments if d.test_id}
    run_id = chosen.optimization_run_id

    def relevant(event: StoredEvent) -> bool:
        if recommendation and event.recommendation_id == recommendation:
            return True
        if run_id and event.run_id == run_id:
            return True
        if event.deployment_id in deployment_ids or event.test_id in test_ids:
            return True
        if event.event_type == "strategy_version_created":
            return int(event.metrics.get("version", 0) or 0) == chosen.version
        return False

    events = [e for e in read_events(wh, component=component_id) if relevant(e)]
    if recommendation:
        # The alerts a recommendation cites are its evidence: keep those of the same component
        # raised before it was created.
        created = [e for e in events if e.recommendation_id == recommendation]
        if created:
            first = min(e.event_timestamp for e in created)
            events += [
                e
                for e in read_events(wh, event_types=("alert_raised",), component=component_id)
                if e.event_timestamp <= first and e not in events
            ][-5:]
    events.sort(key=lambda e: (e.event_timestamp, e.event_id))
    return Trace(
        component_id=component_id,
        version=chosen.version,
        status=chosen.status,
        strategy=chosen.strategy,
        params=dict(chosen.params),
        parent_version=chosen.parent_version,
        run=run,
        task=task,
        events=events,
    )


def as_dict(trace_: Trace) -> dict[str, Any]:
    def plain(value: Any) -> Any:
        return value.isoformat() if isinstance(value, datetime) else value

    return {
        "component_id": trace_.component_id,
        "version": trace_.version,
        "status": trace_.status,
        "strategy": trace_.strategy,
        "params": trace_.params,
        "parent_version": trace_.parent_version,
        "run": {k: plain(v) for k, v in (trace_.run or {}).items()} or None,
        "task": trace_.task,
        "events": [
            {
                "at": e.event_timestamp.isoformat(),
                "event_type": e.event_type,
                "reason": e.trigger_reason,
                "run_id": e.run_id,
                "recommendation_id": e.recommendation_id,
                "task_id": e.task_id,
                "deployment_id": e.deployment_id,
                "test_id": e.test_id,
                "metrics": json.loads(json.dumps(e.metrics, default=str)),
            }
            for e in trace_.events
        ],
    }
