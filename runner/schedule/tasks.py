"""SCHEDULE's declared side: the tasks the repository declares (seeds/optimization_tasks.csv),
their frequencies, the sync that brings them into optimization_queue without losing runtime state,
the one-off tasks of open recommendations, and a person's verbs (list, add, enable, disable).

It runs nothing: leasing, timeouts and the circuit breaker live in runner/schedule/queue.py.
"""

from __future__ import annotations

import csv
import json
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, get_args

from runner.audit import AuditTrail, Event
from runner.config import Settings
from runner.engine_tables import (
    OptimizationTask,
    TaskType,
    insert_optimization_tasks,
    read_optimization_tasks,
    to_json_text,
    utc,
)
from runner.errors import ConfigError
from runner.warehouse import Warehouse, connect
from runner.warehouse.migrations import migrate

TASK_TYPES: tuple[str, ...] = get_args(TaskType)
INTERVALS = {
    "hourly": timedelta(hours=1),
    "daily": timedelta(days=1),
    "weekly": timedelta(weeks=1),
}
ONCE = "once"  # a one-off task: runs when due, then is disabled
MANUAL_PREFIX = "manual_"  # tasks of `runner schedule add`: never touched by the sync
RECOMMENDATION_PREFIX = "rec_"  # one-off tasks of recommendations
DECLARED_FILE = Path("seeds") / "optimization_tasks.csv"

TASK_ADDED = "task_added"
TASK_UPDATED = "task_updated"
TASK_ENABLED = "task_enabled"
TASK_DISABLED = "task_disabled"
CIRCUIT_BREAKER_OPENED = "circuit_breaker_opened"

# Who switched a task off, in the metrics of task_disabled ("by"): the sync turns back on only
# what the sync turned off; a person's switch or the circuit breaker waits for `schedule enable`.
BY_DECLARATION = "declaration"  # enabled=false in the seed
BY_REMOVAL = "removed"  # no longer in the seed
BY_PERSON = "person"  # runner schedule disable
SYNC_SWITCHES = (BY_DECLARATION, BY_REMOVAL)

_TASK_ID = re.compile(r"^[a-z0-9][a-z0-9_.:-]*$")


# -- frequencies ----------------------------------------------------------------------------------
def validate_frequency(text: str) -> str:
    """`text` as stored: hourly, daily, weekly, once, or a cron expression (5 fields, or a
    croniter @-alias such as @daily), evaluated in UTC. A ConfigError in one line otherwise."""
    value = " ".join(str(text).split())
    if value.lower() in INTERVALS or value.lower() == ONCE:
        return value.lower()
    from croniter import croniter

    if (value.startswith("@") or len(value.split(" ")) == 5) and croniter.is_valid(value):
        return value
    raise ConfigError(
        f"Frequency {text!r} is not hourly, daily, weekly, once or a cron expression with five "
        "fields (minute hour day-of-month month day-of-week, in UTC), e.g. '0 3 * * 1'."
    )


def _cron_after(expression: str, moment: datetime) -> datetime:
    from croniter import croniter

    # croniter keeps the start's time zone: pass UTC so a cron expression means UTC.
    following: datetime = croniter(expression, utc(moment)).get_next(datetime)
    return utc(following)


def first_run_at(frequency: str, now: datetime, last_run_at: datetime | None = None) -> datetime:
    """When a task of `frequency` is first due: a new interval or once task at once, a cron task
    at its next fire time; after a change of frequency, one step after its last run (which may
    already be past: then it is due at once)."""
    now = utc(now)
    if frequency == ONCE:
        return now
    if frequency in INTERVALS:
        return now if last_run_at is None else utc(last_run_at) + INTERVALS[frequency]
    return _cron_after(frequency, last_run_at or now)


def next_run_after(frequency: str, scheduled: datetime, now: datetime) -> datetime:
    """The next scheduled time after a run that was due at `scheduled` and ended at `now`.

    Intervals step from the scheduled time, not from the end of the run (no drift), skipping the
    fire times already past; cron expressions fire at their next time after `now`. Either way
    missed runs collapse into one.
    """
    scheduled, now = utc(scheduled), utc(now)
    if frequency in INTERVALS:
        step = INTERVALS[frequency]
        steps = max(1, (now - scheduled) // step + 1)
        return scheduled + steps * step
    if frequency == ONCE:
        return scheduled
    return _cron_after(frequency, max(scheduled, now))


# -- the declared tasks ---------------------------------------------------------------------------
@dataclass(frozen=True)
class DeclaredTask:
    """One row of the declared tasks file."""

    task_id: str
    task_type: TaskType
    component_id: str
    frequency: str
    priority: int = 3
    config: Mapping[str, Any] = field(default_factory=dict)
    timeout_seconds: int | None = None
    enabled: bool = True
    description: str = ""

    @property
    def one_off(self) -> bool:
        return self.frequency == ONCE


def tasks_file(settings: Settings) -> Path:
    return settings.schedule_tasks_file or settings.project / DECLARED_FILE


def parse_config(text: str | None, where: str) -> dict[str, Any]:
    """A task's config: a JSON object; `params`, when present, a list of parameter names."""
    if text is None or not text.strip():
        return {}
    try:
        config = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: config is not JSON ({exc.msg}).") from None
    if not isinstance(config, dict):
        raise ConfigError(f'{where}: config must be a JSON object, e.g. {{"params": ["x"]}}.')
    names = config.get("params")
    if names is not None and not (
        isinstance(names, list) and all(isinstance(n, str) for n in names)
    ):
        raise ConfigError(f"{where}: config.params must be a list of parameter names.")
    return config


def check_task_type(value: str, where: str) -> TaskType:
    if value not in TASK_TYPES:
        raise ConfigError(f"{where}: task type {value!r} is not one of {', '.join(TASK_TYPES)}.")
    return value  # type: ignore[return-value]  # checked against the Literal's values


def check_priority(value: str | int, where: str) -> int:
    try:
        priority = int(value)
    except ValueError:
        raise ConfigError(f"{where}: priority {value!r} is not a whole number.") from None
    if priority < 1:
        raise ConfigError(f"{where}: priority must be 1 (most urgent) or more, not {priority}.")
    return priority


def check_timeout(value: str | int | None, where: str) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        seconds = int(value)
    except ValueError:
        raise ConfigError(f"{where}: timeout_seconds {value!r} is not a whole number.") from None
    if seconds < 1:
        raise ConfigError(f"{where}: timeout_seconds must be at least 1, not {seconds}.")
    return seconds


def _flag(value: str, where: str) -> bool:
    text = value.strip().lower()
    if text in ("", "true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise ConfigError(f"{where}: enabled {value!r} is not true or false.")


def read_declarations(path: Path) -> list[DeclaredTask] | None:
    """The tasks declared in `path` (None when the file does not exist), checked row by row:
    the first bad row is a ConfigError naming its line."""
    if not path.is_file():
        return None
    required = ("task_id", "task_type", "component_id", "frequency")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in required if c not in (reader.fieldnames or ())]
        if missing:
            raise ConfigError(f"{path.name} has no column {', '.join(missing)}.")
        declared: list[DeclaredTask] = []
        seen: set[str] = set()
        for row in reader:
            where = f"{path.name} line {reader.line_num}"
            task_id = (row.get("task_id") or "").strip()
            if not _TASK_ID.match(task_id) or task_id.startswith(
                (MANUAL_PREFIX, RECOMMENDATION_PREFIX)
            ):
                raise ConfigError(
                    f"{where}: task_id {task_id!r} must be lower-case letters, digits and _.:- "
                    f"and not start with {MANUAL_PREFIX} or {RECOMMENDATION_PREFIX}."
                )
            if task_id in seen:
                raise ConfigError(f"{where}: task_id {task_id!r} is declared twice.")
            seen.add(task_id)
            where = f"{path.name} line {reader.line_num} ({task_id})"
            component = (row.get("component_id") or "").strip()
            if not component:
                raise ConfigError(f"{where}: component_id is empty.")
            declared.append(
                DeclaredTask(
                    task_id=task_id,
                    task_type=check_task_type((row.get("task_type") or "").strip(), where),
                    component_id=component,
                    frequency=_frequency_at(row.get("frequency") or "", where),
                    priority=check_priority((row.get("priority") or "").strip() or 3, where),
                    config=parse_config(row.get("config"), where),
                    timeout_seconds=check_timeout(row.get("timeout_seconds"), where),
                    enabled=_flag(row.get("enabled") or "", where),
                    description=(row.get("description") or "").strip(),
                )
            )
    return declared


def _frequency_at(text: str, where: str) -> str:
    try:
        return validate_frequency(text)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


# -- warehouse helpers shared with queue.py ------------------------------------------------------
@contextmanager
def open_queue(settings: Settings, *, migrated: bool = False) -> Iterator[Warehouse]:
    """A warehouse connection for one step; migrates unless the caller already did."""
    with connect(settings) as wh:
        if not migrated:
            migrate(wh)
        yield wh


def db_now(wh: Warehouse) -> datetime:
    """The warehouse's clock (the transaction's start inside one): one clock for all runners."""
    row = wh.fetchone("select current_timestamp")
    assert row is not None
    return utc(row[0])


def serialise(wh: Warehouse, what: str) -> None:
    """On PostgreSQL, one runner at a time in this transaction (released at commit)."""
    if wh.dialect == "postgres":
        wh.execute(
            "select pg_advisory_xact_lock(hashtext(%(key)s))",
            {"key": f"tb:schedule:{what}:{wh.schema}"},
        )


def trail(wh: Warehouse, settings: Settings, run_id: str | None) -> AuditTrail:
    return AuditTrail(wh, run_id=run_id, secrets=settings.secrets())


def describe(task: OptimizationTask) -> str:
    return f"{task.task_type} task {task.task_id} for {task.component_id or 'no component'}"


def last_switches(wh: Warehouse, task_ids: Sequence[str]) -> dict[str, str]:
    """For each task, who switched it last: the `by` of its latest task_disabled, or
    'enabled' / 'circuit_breaker' when its latest switch was task_enabled / the breaker."""
    if not task_ids:
        return {}
    params: dict[str, Any] = {f"t{i}": t for i, t in enumerate(task_ids)}
    params |= {"disabled": TASK_DISABLED, "enabled": TASK_ENABLED, "opened": CIRCUIT_BREAKER_OPENED}
    rows = wh.fetchall(
        "select task_id, event_type, improvement_metrics from ("
        " select task_id, event_type, improvement_metrics, row_number() over ("
        "  partition by task_id order by event_timestamp desc, event_id desc) as rn"
        " from improvement_events"
        " where event_type in (%(disabled)s, %(enabled)s, %(opened)s)"
        f" and task_id in ({', '.join(f'%(t{i})s' for i in range(len(task_ids)))})"
        ") as last_switch where rn = 1",
        params,
    )
    found: dict[str, str] = {}
    for task_id, event_type, metrics in rows:
        if event_type == TASK_DISABLED:
            found[str(task_id)] = str(json.loads(metrics).get("by", BY_PERSON))
        else:
            found[str(task_id)] = "enabled" if event_type == TASK_ENABLED else "circuit_breaker"
    return found


# -- the sync ----------------------------------------------------------------------------------------
@dataclass
class SyncReport:
    """What the sync did (or, in a dry run, would do) to the declared tasks."""

    source: str
    added: list[str] = field(default_factory=list)
    updated: dict[str, dict[str, list[Any]]] = field(default_factory=dict)  # field: [old, new]
    enabled: list[str] = field(default_factory=list)  # turned back on by the declaration
    disabled: list[str] = field(default_factory=list)  # enabled=false, or gone from the file
    unchanged: int = 0
    dry_run: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.enabled or self.disabled)


def _declared_fields(decl: DeclaredTask) -> dict[str, Any]:
    return {
        "task_type": decl.task_type,
        "component_id": decl.component_id,
        "frequency": decl.frequency,
        "priority": decl.priority,
        "config": dict(decl.config),
        "timeout_seconds": decl.timeout_seconds,
        "one_off": decl.one_off,
    }


def _stored_fields(task: OptimizationTask) -> dict[str, Any]:
    return {
        "task_type": task.task_type,
        "component_id": task.component_id,
        "frequency": task.frequency,
        "priority": task.priority,
        "config": dict(task.config),
        "timeout_seconds": task.timeout_seconds,
        "one_off": task.one_off,
    }


def _switch(
    wh: Warehouse, task: OptimizationTask, enabled: bool, now: datetime, *, reset: bool = False
) -> None:
    """Turn a task on or off; a running task keeps status running until its runner finishes."""
    status = "pending" if enabled else "paused"
    wh.execute(
        "update optimization_queue set enabled = %(enabled)s,"
        " status = case when status = 'running' then status else %(status)s end,"
        + (" consecutive_failures = 0," if reset else "")
        + " updated_at = %(now)s where task_id = %(t)s",
        {"enabled": enabled, "status": status, "now": now, "t": task.task_id},
    )


def sync_tasks(
    settings: Settings, *, dry_run: bool = False, run_id: str | None = None
) -> SyncReport:
    """Bring the declared tasks into optimization_queue in one transaction.

    New tasks are inserted; the declared fields (type, component, frequency, priority, config,
    timeout) of existing ones are updated, next_run_at only when the frequency changed; runtime
    state (status, last run, failures, lease) is never touched. A task gone from the file is
    disabled, never deleted; `enabled=false` disables; the sync turns back on only what it turned
    off, so a task disabled by a person or by the circuit breaker waits for `schedule enable`.
    Without the file nothing changes (a project that declares no tasks).
    """
    path = tasks_file(settings)
    declared = read_declarations(path)
    if declared is None:
        return SyncReport(
            source=str(path),
            dry_run=dry_run,
            notes=[f"{path} does not exist: no declared tasks were synced."],
        )
    report = SyncReport(source=str(path), dry_run=dry_run)
    with open_queue(settings) as wh, wh.transaction():
        if not dry_run:
            serialise(wh, "sync")
        now = db_now(wh)
        stored = {
            t.task_id: t
            for t in read_optimization_tasks(wh)
            if t.source == "declared" and not t.task_id.startswith(MANUAL_PREFIX)
        }
        by_id = {d.task_id: d for d in declared}
        reopen = [
            d.task_id
            for d in declared
            if d.enabled and d.task_id in stored and not stored[d.task_id].enabled
        ]
        switches = last_switches(wh, reopen)
        inserts: list[OptimizationTask] = []
        events: list[Event] = []
        for decl in declared:
            task = stored.get(decl.task_id)
            if task is None:
                inserts.append(
                    OptimizationTask(
                        task_id=decl.task_id,
                        task_type=decl.task_type,
                        component_id=decl.component_id,
                        frequency=decl.frequency,
                        next_run_at=first_run_at(decl.frequency, now),
                        priority=decl.priority,
                        config=decl.config,
                        enabled=decl.enabled,
                        status="pending" if decl.enabled else "paused",
                        timeout_seconds=decl.timeout_seconds,
                        one_off=decl.one_off,
                    )
                )
                report.added.append(decl.task_id)
                events.append(
                    Event(
                        TASK_ADDED,
                        f"{decl.task_type} task {decl.task_id} for {decl.component_id} declared "
                        f"in {path.name} ({decl.frequency}, priority {decl.priority})",
                        {"by": BY_DECLARATION, **_declared_fields(decl), "enabled": decl.enabled},
                        component_id=decl.component_id,
                        task_id=decl.task_id,
                    )
                )
                continue
            old, new = _stored_fields(task), _declared_fields(decl)
            changes = {k: [old[k], new[k]] for k in new if old[k] != new[k]}
            if changes:
                report.updated[decl.task_id] = changes
                events.append(
                    Event(
                        TASK_UPDATED,
                        f"{describe(task)}: {', '.join(changes)} changed in {path.name}",
                        {"by": BY_DECLARATION, "changes": changes},
                        component_id=decl.component_id,
                        task_id=decl.task_id,
                    )
                )
                if not dry_run:
                    next_run = (
                        first_run_at(decl.frequency, now, task.last_run_at)
                        if "frequency" in changes
                        else task.next_run_at
                    )
                    wh.execute(
                        "update optimization_queue set task_type = %(task_type)s,"
                        " component_id = %(component_id)s, frequency = %(frequency)s,"
                        " priority = %(priority)s, config = %(config)s,"
                        " timeout_seconds = %(timeout_seconds)s, one_off = %(one_off)s,"
                        " next_run_at = %(next_run)s, updated_at = %(now)s"
                        " where task_id = %(t)s",
                        {
                            **new,
                            "config": to_json_text(new["config"]),
                            "next_run": next_run,
                            "now": now,
                            "t": decl.task_id,
                        },
                    )
            if not decl.enabled and task.enabled:
                report.disabled.append(decl.task_id)
                events.append(
                    Event(
                        TASK_DISABLED,
                        f"{describe(task)} disabled: enabled=false in {path.name}",
                        {"by": BY_DECLARATION},
                        component_id=decl.component_id,
                        task_id=decl.task_id,
                    )
                )
                if not dry_run:
                    _switch(wh, task, False, now)
            elif decl.enabled and not task.enabled and switches.get(task.task_id) in SYNC_SWITCHES:
                report.enabled.append(decl.task_id)
                events.append(
                    Event(
                        TASK_ENABLED,
                        f"{describe(task)} enabled again: declared enabled in {path.name}",
                        {"by": BY_DECLARATION},
                        component_id=decl.component_id,
                        task_id=decl.task_id,
                    )
                )
                if not dry_run:
                    _switch(wh, task, True, now)
            elif not changes:
                report.unchanged += 1
        for task_id, task in sorted(stored.items()):
            if task_id in by_id or not task.enabled:
                continue
            report.disabled.append(task_id)
            events.append(
                Event(
                    TASK_DISABLED,
                    f"{describe(task)} disabled: no longer declared in {path.name}",
                    {"by": BY_REMOVAL},
                    component_id=task.component_id,
                    task_id=task_id,
                )
            )
            if not dry_run:
                _switch(wh, task, False, now)
        report.notes.extend(_unknown_components(wh, [d for d in declared if d.enabled]))
        if not dry_run:
            insert_optimization_tasks(wh, inserts, now=now)
            if events:
                trail(wh, settings, run_id).record(events, at=now)
    return report


def _unknown_components(wh: Warehouse, declared: Sequence[DeclaredTask]) -> list[str]:
    """Notes for tasks whose component the components seed does not have (they would fail)."""
    if not declared or not wh.table_exists("components"):
        return []
    known = {str(r[0]) for r in wh.fetchall("select component_id from components")}
    return [
        f"Task {d.task_id}: component {d.component_id!r} is not in seeds/components.csv; "
        "it will fail until it is."
        for d in declared
        if d.component_id not in known
    ]


# -- recommendations become one-off tasks ----------------------------------------------------------
def add_recommendation_tasks(
    settings: Settings, *, dry_run: bool = False, run_id: str | None = None
) -> list[str]:
    """A one-off task (due now, the recommendation's priority) for each open recommendation of a
    task type that has none waiting, and whose last task ran more than
    `schedule_recommendation_retry_hours` ago (or never); returns the new task ids. The
    choice of recommendations is OPTIMIZE's (runner.optimize.targets.choose_targets)."""
    from runner.identify import latest_recommendations
    from runner.optimize.targets import choose_targets

    # A recommendation's search covers what the component's declared task of that type covers
    # (its config, e.g. the parameters worth searching), so a desk states it once.
    configs = {
        (d.component_id, d.task_type): d.config
        for d in read_declarations(tasks_file(settings)) or []
        if d.config
    }
    with open_queue(settings) as wh, wh.transaction():
        if not dry_run:
            serialise(wh, "recommendations")
        targets = [t for t in choose_targets(wh, None, None, TASK_TYPES) if t.recommendation_id]
        if not targets:
            return []
        priority = {r.recommendation_id: r.priority for r in latest_recommendations(wh)}
        ids = sorted({str(t.recommendation_id) for t in targets})
        params = {f"r{i}": r for i, r in enumerate(ids)}
        # Per recommendation: how many tasks it had, how many have not run yet, the last run.
        history = {
            str(row[0]): (int(row[1]), int(row[2]), row[3])
            for row in wh.fetchall(
                "select recommendation_id, count(*),"
                " sum(case when last_run_at is null then 1 else 0 end), max(last_run_at)"
                " from optimization_queue where recommendation_id in"
                f" ({', '.join(f'%(r{i})s' for i in range(len(ids)))})"
                " group by recommendation_id",
                params,
            )
        }
        now = db_now(wh)
        retry = timedelta(hours=settings.schedule_recommendation_retry_hours)
        tasks: list[OptimizationTask] = []
        events: list[Event] = []
        for target in targets:
            rec_id = str(target.recommendation_id)
            count, waiting, last_run = history.get(rec_id, (0, 0, None))
            # A recommendation still open after its task ran (rejected: too little evidence yet)
            # is looked at again once the retry interval has passed: the data has grown since.
            if waiting or (count and (last_run is None or utc(last_run) > now - retry)):
                continue
            history[rec_id] = (count + 1, 1, None)
            task = OptimizationTask(
                task_id=f"{RECOMMENDATION_PREFIX}{rec_id}" + (f"_{count + 1}" if count else ""),
                task_type=target.task_type,
                component_id=target.component_id,
                frequency=ONCE,
                next_run_at=now,
                priority=int(priority.get(rec_id, 3)),
                source="recommendation",
                recommendation_id=rec_id,
                one_off=True,
                config=dict(configs.get((target.component_id, target.task_type), {})),
            )
            tasks.append(task)
            events.append(
                Event(
                    TASK_ADDED,
                    f"One-off {describe(task)} (priority {task.priority}) from "
                    f"{target.trigger_reason}",
                    {
                        "by": "recommendation",
                        "task_type": task.task_type,
                        "priority": task.priority,
                    },
                    component_id=task.component_id,
                    task_id=task.task_id,
                    recommendation_id=rec_id,
                )
            )
        if tasks and not dry_run:
            insert_optimization_tasks(wh, tasks, now=now)
            trail(wh, settings, run_id).record(events, at=now)
    return [t.task_id for t in tasks]


# -- a person's verbs ----------------------------------------------------------------------------
def list_tasks(settings: Settings, *, component: str | None = None) -> list[OptimizationTask]:
    """Every task of the queue (enabled or not), most urgent first."""
    with open_queue(settings) as wh:
        return read_optimization_tasks(wh, component=component)


def _one(wh: Warehouse, task_id: str) -> OptimizationTask:
    found = read_optimization_tasks(wh, task_id=task_id)
    if not found:
        raise ConfigError(f"No task {task_id!r} in the queue; `runner schedule list` shows them.")
    return found[0]


def enable(settings: Settings, task_id: str, *, run_id: str | None = None) -> OptimizationTask:
    """Turn a task on and reset its failure count (closes an open circuit breaker). A declared
    task the seed says is disabled stays so: change the seed instead."""
    declared = read_declarations(tasks_file(settings)) or []
    if any(d.task_id == task_id and not d.enabled for d in declared):
        raise ConfigError(
            f"Task {task_id!r} is declared with enabled=false in {tasks_file(settings).name}; "
            "set it to true there."
        )
    with open_queue(settings) as wh, wh.transaction():
        task = _one(wh, task_id)
        now = db_now(wh)
        _switch(wh, task, True, now, reset=True)
        trail(wh, settings, run_id).record(
            [
                Event(
                    TASK_ENABLED,
                    f"{describe(task)} enabled by a person"
                    + (
                        f" (failure count {task.consecutive_failures} reset)"
                        if task.consecutive_failures
                        else ""
                    ),
                    {
                        "by": BY_PERSON,
                        "was_enabled": task.enabled,
                        "consecutive_failures_reset": task.consecutive_failures,
                    },
                    component_id=task.component_id,
                    task_id=task_id,
                    recommendation_id=task.recommendation_id,
                )
            ],
            at=now,
        )
        return _one(wh, task_id)


def disable(settings: Settings, task_id: str, *, run_id: str | None = None) -> OptimizationTask:
    """Turn a task off until `enable` (a running task finishes its current run)."""
    with open_queue(settings) as wh, wh.transaction():
        task = _one(wh, task_id)
        now = db_now(wh)
        _switch(wh, task, False, now)
        trail(wh, settings, run_id).record(
            [
                Event(
                    TASK_DISABLED,
                    f"{describe(task)} disabled by a person",
                    {"by": BY_PERSON, "was_enabled": task.enabled},
                    component_id=task.component_id,
                    task_id=task_id,
                    recommendation_id=task.recommendation_id,
                )
            ],
            at=now,
        )
        return _one(wh, task_id)


def add(
    settings: Settings,
    *,
    task_type: str,
    component_id: str,
    frequency: str,
    priority: int = 3,
    config: str | Mapping[str, Any] | None = None,
    timeout_seconds: int | None = None,
    run_id: str | None = None,
) -> OptimizationTask:
    """Queue a task outside the seed (id manual_…; the sync leaves it alone), due per its
    frequency (once: a one-off task due now)."""
    where = "runner schedule add"
    kind = check_task_type(task_type, where)
    cadence = validate_frequency(frequency)
    rank = check_priority(priority, where)
    task_config = (
        parse_config(config, where)
        if config is None or isinstance(config, str)
        else parse_config(json.dumps(dict(config)), where)
    )
    timeout = check_timeout(timeout_seconds, where)
    with open_queue(settings) as wh, wh.transaction():
        if wh.table_exists("components"):
            known = {str(r[0]) for r in wh.fetchall("select component_id from components")}
            if component_id not in known:
                raise ConfigError(
                    f"Unknown component {component_id!r}: it is not in seeds/components.csv."
                )
        now = db_now(wh)
        task = OptimizationTask(
            task_id=f"{MANUAL_PREFIX}{component_id}_{kind}_{uuid.uuid4().hex[:8]}",
            task_type=kind,
            component_id=component_id,
            frequency=cadence,
            next_run_at=first_run_at(cadence, now),
            priority=rank,
            config=task_config,
            timeout_seconds=timeout,
            one_off=cadence == ONCE,
        )
        insert_optimization_tasks(wh, [task], now=now)
        trail(wh, settings, run_id).record(
            [
                Event(
                    TASK_ADDED,
                    f"{describe(task)} added by a person ({cadence}, priority {rank})",
                    {
                        "by": BY_PERSON,
                        "task_type": kind,
                        "frequency": cadence,
                        "priority": rank,
                        "config": task_config,
                        "timeout_seconds": timeout,
                    },
                    component_id=component_id,
                    task_id=task.task_id,
                )
            ],
            at=now,
        )
        return _one(wh, task.task_id)
