"""Typed records and insert/read helpers for the engine tables of migration 2 (optimization_queue,
ab_tests) and the one bulk-insert path they and the audit trail share.

It owns how a record becomes a row (JSON as text, timestamps in UTC); it does not decide when a
task runs or a test promotes: the scheduler and the rollout will, through these helpers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal

from runner.warehouse import Warehouse

TaskType = Literal["hyperparameter", "retrain", "feature_selection", "risk_adjustment"]
TaskStatus = Literal["pending", "running", "succeeded", "failed", "paused"]
TaskSource = Literal["declared", "recommendation"]
ABTestStatus = Literal["running", "promoted", "rolled_back", "inconclusive", "aborted"]
ColumnKind = Literal[
    "text", "timestamptz", "timestamp", "date", "integer", "bigint", "double", "boolean"
]


# -- shared: JSON as text and one bulk insert per batch ----------------------------------------
def _plain(value: Any) -> Any:
    """A JSON-ready copy: non-finite floats become null (JSON has no NaN), dates ISO strings."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, int | str):
        return value
    if isinstance(value, float | Decimal):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, datetime | date):
        return value.isoformat()
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        return _plain(item())
    return str(value)


def to_json_text(value: Mapping[str, Any]) -> str:
    """The text stored in a JSON column: compact, keys sorted, valid for ::json and ::jsonb."""
    return json.dumps(_plain(value), sort_keys=True, separators=(",", ":"), allow_nan=False)


def utc(moment: datetime) -> datetime:
    """`moment` as an aware UTC datetime (naive values are taken to be UTC already)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def bulk_insert(
    wh: Warehouse,
    table: str,
    columns: Mapping[str, ColumnKind],
    rows: Sequence[Mapping[str, Any]],
) -> None:
    """Append `rows` to `table` in one set-based load (Arrow on DuckDB, COPY on PostgreSQL)."""
    if not rows:
        return
    import pyarrow as pa

    types: dict[ColumnKind, Any] = {
        "text": pa.string(),
        "timestamptz": pa.timestamp("us", tz="UTC"),
        "timestamp": pa.timestamp("us"),  # data time (bar and trade times), naive UTC
        "date": pa.date32(),
        "integer": pa.int32(),
        "bigint": pa.int64(),
        "double": pa.float64(),
        "boolean": pa.bool_(),
    }
    arrays = {}
    for name, kind in columns.items():
        values = [row.get(name) for row in rows]
        if kind == "timestamptz":
            values = [None if v is None else utc(v) for v in values]
        elif kind == "timestamp":
            values = [None if v is None else utc(v).replace(tzinfo=None) for v in values]
        arrays[name] = pa.array(values, type=types[kind])
    wh.load_arrow(table, pa.table(arrays))


def _aware(value: Any) -> Any:
    return utc(value) if isinstance(value, datetime) else value


def _select(
    wh: Warehouse, sql: str, columns: Sequence[str], params: Mapping[str, Any]
) -> list[dict[str, Any]]:
    return [
        {c: _aware(v) for c, v in zip(columns, row, strict=True)}
        for row in wh.fetchall(sql, params)
    ]


# -- optimization_queue -------------------------------------------------------------------------
QUEUE_COLUMNS: dict[str, ColumnKind] = {
    "task_id": "text",
    "task_type": "text",
    "component_id": "text",
    "frequency": "text",
    "priority": "integer",
    "config": "text",
    "enabled": "boolean",
    "status": "text",
    "next_run_at": "timestamptz",
    "last_run_at": "timestamptz",
    "consecutive_failures": "integer",
    "last_error": "text",
    "source": "text",
    "recommendation_id": "text",
    "created_at": "timestamptz",
    "updated_at": "timestamptz",
    # migration 6: leases (runner/schedule) and one-off tasks
    "lease_owner": "text",
    "lease_expires_at": "timestamptz",
    "timeout_seconds": "integer",
    "one_off": "boolean",
}


@dataclass(frozen=True)
class OptimizationTask:
    """One row of optimization_queue. `frequency` is hourly, daily, weekly or a cron expression;
    priority 1 is the most urgent; `config` is stored as JSON text."""

    task_id: str
    task_type: TaskType
    component_id: str | None
    frequency: str
    next_run_at: datetime
    priority: int = 3
    config: Mapping[str, Any] = field(default_factory=dict)
    enabled: bool = True
    status: TaskStatus = "pending"
    source: TaskSource = "declared"
    recommendation_id: str | None = None
    last_run_at: datetime | None = None
    consecutive_failures: int = 0
    last_error: str | None = None
    # A runner owns a running task until lease_expires_at; timeout_seconds None means the
    # default of the settings; a one_off task (frequency "once") is disabled after its run.
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    timeout_seconds: int | None = None
    one_off: bool = False


def insert_optimization_tasks(
    wh: Warehouse, tasks: Sequence[OptimizationTask], now: datetime | None = None
) -> None:
    """Add new tasks to the queue in one insert (a task_id already queued is a key violation)."""
    stamp = utc(now or datetime.now(UTC))
    rows = [
        {
            **{name: getattr(task, name) for name in QUEUE_COLUMNS if hasattr(task, name)},
            "config": to_json_text(task.config),
            "created_at": stamp,
            "updated_at": stamp,
        }
        for task in tasks
    ]
    bulk_insert(wh, "optimization_queue", QUEUE_COLUMNS, rows)


TASK_COLUMNS = tuple(c for c in QUEUE_COLUMNS if c not in ("created_at", "updated_at"))


def read_optimization_tasks(
    wh: Warehouse, *, task_id: str | None = None, component: str | None = None
) -> list[OptimizationTask]:
    """Queued tasks (all, one by id, or one component's), most urgent first; config parsed."""
    conditions: list[str] = []
    params: dict[str, Any] = {}
    if task_id is not None:
        conditions.append("task_id = %(task_id)s")
        params["task_id"] = task_id
    if component is not None:
        conditions.append("component_id = %(component)s")
        params["component"] = component
    where = f" where {' and '.join(conditions)}" if conditions else ""
    rows = _select(
        wh,
        f"select {', '.join(TASK_COLUMNS)} from optimization_queue{where}"
        " order by priority, next_run_at, task_id",
        TASK_COLUMNS,
        params,
    )
    tasks = []
    for row in rows:
        row["config"] = json.loads(row["config"] or "{}")
        row["one_off"] = bool(row["one_off"])
        tasks.append(OptimizationTask(**row))
    return tasks


PENDING_COLUMNS = (
    "task_id",
    "task_type",
    "component_id",
    "frequency",
    "priority",
    "next_run_at",
    "last_run_at",
    "status",
    "consecutive_failures",
    "source",
    "recommendation_id",
)


def pending_optimizations(wh: Warehouse, component: str | None = None) -> list[dict[str, Any]]:
    """Enabled tasks by next run (the monitoring guide's queue view, plus ids and history)."""
    sql = f"select {', '.join(PENDING_COLUMNS)} from optimization_queue where enabled = true"
    if component:
        sql += " and component_id = %(component)s"
    sql += " order by next_run_at, priority, task_id"
    return _select(wh, sql, PENDING_COLUMNS, {"component": component} if component else {})


# -- ab_tests -----------------------------------------------------------------------------------
AB_COLUMNS: dict[str, ColumnKind] = {
    "test_id": "text",
    "test_name": "text",
    "component_id": "text",
    "control_version": "text",
    "treatment_version": "text",
    "status": "text",
    "current_stage": "integer",
    "improvement_percent": "double",
    "alpha": "double",
    "planned_n": "bigint",
    "margin": "double",
    "primary_metric": "text",
    "randomisation_unit": "text",
    "n_control": "bigint",
    "n_treatment": "bigint",
    "estimate": "double",
    "cs_lower": "double",
    "cs_upper": "double",
    "always_valid_p": "double",
    "srm_p": "double",
    "started_at": "timestamptz",
    "updated_at": "timestamptz",
    "ended_at": "timestamptz",
    # migration 5: the rollout state (runner/deploy)
    "deployment_id": "text",
    "data_start": "timestamp",
    "stage_data_start": "timestamp",
    "stage_started_at": "timestamptz",
    "stage_days": "double",
    "stage_extended": "boolean",
    "min_n_per_arm": "bigint",
    "guardrails": "text",
    "paused": "boolean",
    "decision_reason": "text",
    "look_count": "bigint",
}


@dataclass(frozen=True)
class ABTest:
    """One row of ab_tests. The design (alpha, planned_n, margin, primary_metric,
    randomisation_unit) is fixed when the test starts; the statistics are the latest look."""

    test_id: str
    test_name: str
    component_id: str
    control_version: str
    treatment_version: str
    alpha: float
    planned_n: int
    margin: float
    primary_metric: str
    randomisation_unit: str
    status: ABTestStatus = "running"
    current_stage: int = 10
    improvement_percent: float | None = None
    n_control: int = 0
    n_treatment: int = 0
    estimate: float | None = None
    cs_lower: float | None = None
    cs_upper: float | None = None
    always_valid_p: float | None = None
    srm_p: float | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    # The rollout (runner/deploy): trades entered after data_start count (stage_data_start for
    # the current stage's sample-ratio check); a stage lasts stage_days of data time, extended
    # once; min_n_per_arm trades per arm before a stage may move; guardrails as JSON.
    deployment_id: str | None = None
    data_start: datetime | None = None
    stage_data_start: datetime | None = None
    stage_started_at: datetime | None = None
    stage_days: float | None = None
    stage_extended: bool = False
    min_n_per_arm: int | None = None
    guardrails: str = "{}"
    paused: bool = False
    decision_reason: str | None = None
    look_count: int = 0


def insert_ab_tests(wh: Warehouse, tests: Sequence[ABTest], now: datetime | None = None) -> None:
    """Record new A/B tests in one insert; started_at defaults to `now`."""
    stamp = utc(now or datetime.now(UTC))
    rows = [
        {
            **{name: getattr(test, name) for name in AB_COLUMNS if hasattr(test, name)},
            "started_at": test.started_at or stamp,
            "updated_at": stamp,
        }
        for test in tests
    ]
    bulk_insert(wh, "ab_tests", AB_COLUMNS, rows)


RUNNING_COLUMNS = (
    "test_id",
    "test_name",
    "component_id",
    "control_version",
    "treatment_version",
    "status",
    "current_stage",
    "improvement_percent",
    "n_control",
    "n_treatment",
    "cs_lower",
    "cs_upper",
    "always_valid_p",
    "srm_p",
    "paused",
    "started_at",
)


def running_ab_tests(wh: Warehouse, component: str | None = None) -> list[dict[str, Any]]:
    """Tests with status running (the monitoring guide's view, plus stage, sizes and bounds)."""
    sql = f"select {', '.join(RUNNING_COLUMNS)} from ab_tests where status = 'running'"
    if component:
        sql += " and component_id = %(component)s"
    sql += " order by started_at, test_id"
    return _select(wh, sql, RUNNING_COLUMNS, {"component": component} if component else {})
