"""SCHEDULE's running side: which due task runs next, who runs it, and what a failure does.

On PostgreSQL each task is leased row by row (SELECT … FOR UPDATE SKIP LOCKED, with an expiry
after which another runner takes it over); on DuckDB one runner at a time holds a lock file beside
the database. A task runs in a child process that is killed at its timeout; consecutive failures
open the circuit breaker. What a task does is OPTIMIZE's (runner.optimize); which tasks exist is
runner/schedule/tasks.py's.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Literal

from runner.audit import Event, new_run_id
from runner.config import Settings
from runner.engine_tables import OptimizationTask, read_optimization_tasks
from runner.errors import TradebaseError
from runner.redact import redact
from runner.schedule.tasks import (
    CIRCUIT_BREAKER_OPENED,
    SyncReport,
    add_recommendation_tasks,
    db_now,
    describe,
    next_run_after,
    open_queue,
    sync_tasks,
    trail,
)
from runner.warehouse import Warehouse

TASK_STARTED = "task_started"
TASK_SUCCEEDED = "task_succeeded"
TASK_FAILED = "task_failed"
TASK_LEASE_TAKEN_OVER = "task_lease_taken_over"
TASK_INTERRUPTED = "task_interrupted"

# The optimizer gets this share of the timeout as its own budget (it stops sampling and still
# evaluates its gates); the hard stop at the full timeout catches every procedure that overruns.
SOFT_BUDGET = 0.8
KILL_WAIT_SECONDS = 10.0
MAX_ERROR_CHARS = 2000

RunStatus = Literal["planned", "succeeded", "failed", "timed_out", "interrupted", "lost_lease"]
Stopped = Literal["no_due_tasks", "budget_spent", "dry_run"]


class SchedulerBusy(TradebaseError):
    """Another `runner schedule run-due` holds this DuckDB warehouse."""


@dataclass(frozen=True)
class TaskRun:
    """One task taken by run-due (or, in a dry run, one it would take), and what came of it."""

    task_id: str
    task_type: str
    component_id: str | None
    priority: int
    status: RunStatus
    started_at: datetime | None = None
    duration_seconds: float | None = None
    error: str | None = None
    took_over_from: str | None = None
    circuit_breaker_opened: bool = False
    consecutive_failures: int = 0
    next_run_at: datetime | None = None
    outcomes: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class RunDueReport:
    """What one run-due did: the tasks in the order taken, and why it stopped."""

    run_id: str
    runner_id: str
    dry_run: bool
    runs: list[TaskRun]
    stopped: Stopped
    elapsed_seconds: float
    sync: SyncReport | None = None
    recommendation_tasks: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[TaskRun]:
        return [r for r in self.runs if r.status in ("failed", "timed_out")]

    def summary(self) -> str:
        """One line for people: what ran and how it ended, or what a dry run would run."""
        if self.dry_run:
            due = ", ".join(r.task_id for r in self.runs)
            return f"Dry run: {len(self.runs)} task(s) due" + (f": {due}." if due else ".")
        if not self.runs:
            return "No task was due."
        counts: dict[str, int] = {}
        for run in self.runs:
            counts[run.status] = counts.get(run.status, 0) + 1
        done = ", ".join(f"{n} {status.replace('_', ' ')}" for status, n in sorted(counts.items()))
        opened = sum(1 for r in self.runs if r.circuit_breaker_opened)
        return (
            f"Ran {len(self.runs)} task(s): {done}"
            + (f"; circuit breaker opened for {opened}" if opened else "")
            + ("; budget spent." if self.stopped == "budget_spent" else ".")
        )


def new_runner_id() -> str:
    """host:pid:random: names the runner holding a lease or the lock, in events and messages."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


# -- DuckDB: one runner at a time ---------------------------------------------------------------
def lock_path(settings: Settings) -> Path:
    db = settings.duckdb_file
    return db.with_name(f"{db.name}.schedule.lock")


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
        info = json.loads(text)
        return (
            f"pid {info['pid']} on {info['host']}, runner {info['runner_id']}, "
            f"since {info['since']}"
        )
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown"


def _busy(path: Path, fd: int) -> SchedulerBusy:
    return SchedulerBusy(
        f"Another `runner schedule run-due` is running on this DuckDB warehouse ({_holder(fd)}); "
        f"this one exits without running anything. Wait for it to finish or stop it, then run "
        f"again (lock file {path})."
    )


@contextmanager
def runner_lock(settings: Settings, runner_id: str) -> Iterator[Path]:
    """Hold the DuckDB warehouse's scheduler lock, or raise SchedulerBusy naming its holder.

    An OS lock (flock) on a file beside the database: released when the holder closes it or
    dies, even by SIGKILL, so a crashed runner never leaves a lock behind.
    """
    import fcntl

    path = lock_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _busy(path, fd) from None
        host, pid = socket.gethostname(), os.getpid()
        since = f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}"
        info = {"runner_id": runner_id, "host": host, "pid": pid, "since": since}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)


def check_lock(settings: Settings) -> None:
    """Raise SchedulerBusy if a runner holds the DuckDB lock (takes and writes nothing)."""
    import fcntl

    path = lock_path(settings)
    if not path.exists():
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _busy(path, fd) from None
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


# -- one task in a child process ----------------------------------------------------------------
@dataclass(frozen=True)
class TaskResult:
    ok: bool
    outcomes: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    timed_out: bool = False


def execute_task(settings: Settings, task_id: str, soft_timeout: float) -> list[dict[str, Any]]:
    """Run one queued task with OPTIMIZE (called in the child); its outcomes in brief."""
    from runner.optimize import SearchOptions, optimize

    outcomes = optimize(
        settings,
        task_id=task_id,
        options=SearchOptions(timeout=soft_timeout, seed=settings.optimize_seed),
    )
    return [
        {
            "run_id": o.run_id,
            "component_id": o.component_id,
            "task_type": o.task_type,
            "verdict": o.verdict,
            "candidate_version": o.candidate_version,
            "reasons": list(o.reasons),
        }
        for o in outcomes
    ]


def _die_with_parent(parent_pid: int) -> None:
    """A runner killed mid-task must not leave its task running: on Linux the kernel kills the
    child with its parent (PR_SET_PDEATHSIG), so the task can be taken over once."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before the line above
        os._exit(1)


def _child_main(
    send: Connection, settings: Settings, task_id: str, soft_timeout: float, parent_pid: int
) -> None:
    _die_with_parent(parent_pid)
    os.setpgrp()  # its own process group: a timeout stops the task's worker processes too
    try:
        payload: tuple[str, Any] = ("ok", execute_task(settings, task_id, soft_timeout))
    except BaseException as exc:  # everything the task raises is its failure, reported once
        message = str(exc).strip() or type(exc).__name__
        if not isinstance(exc, TradebaseError):
            message = f"{type(exc).__name__}: {message}"
        payload = ("error", redact(message, settings.secrets()))
    try:
        send.send(payload)
    finally:
        send.close()


def _stop(process: Any) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        process.kill()  # not yet its own group leader
    process.join(KILL_WAIT_SECONDS)


def run_in_child(settings: Settings, task_id: str, timeout: float) -> TaskResult:
    """Run `task_id` in a child process and stop it (and its own workers) after `timeout` s.

    Forked where the platform can (Linux): the child starts with the runner's modules loaded;
    the runner holds no warehouse connection while it runs, so the child opens its own.
    """
    import multiprocessing

    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    context: Any = multiprocessing.get_context(method)
    receive, send = context.Pipe(duplex=False)
    process = context.Process(
        target=_child_main,
        args=(send, settings, task_id, max(1.0, timeout * SOFT_BUDGET), os.getpid()),
        name=f"tradebase-task-{task_id}",
    )
    process.start()
    send.close()
    deadline = time.monotonic() + timeout
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                _stop(process)
                return TaskResult(
                    False, error=f"timed out after {timeout:g} s and was stopped", timed_out=True
                )
            if receive.poll(min(remaining, 1.0)):
                break
        try:
            kind, payload = receive.recv()
        except EOFError:
            process.join(KILL_WAIT_SECONDS)
            return TaskResult(
                False,
                error=f"the task's process ended without a result (exit code {process.exitcode})",
            )
    except BaseException:
        _stop(process)
        raise
    finally:
        receive.close()
    process.join(KILL_WAIT_SECONDS)
    if process.is_alive():
        _stop(process)
    if kind == "ok":
        return TaskResult(True, outcomes=list(payload))
    return TaskResult(False, error=str(payload))


# -- leases --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Claim:
    """A task this runner holds: its row as claimed, when, and until when."""

    task: OptimizationTask
    started_at: datetime
    timeout: int
    lease_expires_at: datetime
    took_over_from: str | None


def _due(
    dialect: str, now: datetime, component: str | None, exclude: Sequence[str]
) -> tuple[str, dict[str, Any]]:
    conditions = ["enabled = true", "next_run_at <= %(now)s"]
    params: dict[str, Any] = {"now": now}
    if dialect == "postgres":
        # On DuckDB the lock file means no other runner is alive: any lease found is stale.
        conditions.append("(lease_expires_at is null or lease_expires_at < %(now)s)")
    if component is not None:
        conditions.append("component_id = %(component)s")
        params["component"] = component
    if exclude:
        names = [f"x{i}" for i in range(len(exclude))]
        conditions.append(f"task_id not in ({', '.join(f'%({n})s' for n in names)})")
        params |= dict(zip(names, exclude, strict=True))
    return " and ".join(conditions), params


ORDER = " order by priority, next_run_at, task_id"


def _event(
    task: OptimizationTask, event_type: str, reason: str, metrics: Mapping[str, Any]
) -> Event:
    return Event(
        event_type,
        reason,
        metrics,
        component_id=task.component_id,
        task_id=task.task_id,
        recommendation_id=task.recommendation_id,
    )


def claim_next(
    settings: Settings,
    *,
    runner_id: str,
    run_id: str,
    component: str | None = None,
    exclude: Sequence[str] = (),
) -> Claim | None:
    """Lease the most urgent due task in one short transaction (None when nothing is due)."""
    with open_queue(settings, migrated=True) as wh, wh.transaction():
        now = db_now(wh)
        where, params = _due(wh.dialect, now, component, exclude)
        sql = f"select task_id from optimization_queue where {where}{ORDER} limit 1"
        if wh.dialect == "postgres":
            sql += " for update skip locked"
        row = wh.fetchone(sql, params)
        if row is None:
            return None
        (task,) = read_optimization_tasks(wh, task_id=str(row[0]))
        timeout = task.timeout_seconds or settings.schedule_task_timeout_seconds
        expires = now + timedelta(seconds=timeout + settings.schedule_lease_grace_seconds)
        wh.execute(
            "update optimization_queue set status = 'running', lease_owner = %(owner)s,"
            " lease_expires_at = %(expires)s, updated_at = %(now)s where task_id = %(t)s",
            {"owner": runner_id, "expires": expires, "now": now, "t": task.task_id},
        )
        events = []
        if task.lease_owner:
            dead_runs = _interrupt_runs(wh, task.task_id, task.lease_owner, now)
            events.append(
                _event(
                    task,
                    TASK_LEASE_TAKEN_OVER,
                    f"The lease of {describe(task)} held by {task.lease_owner} expired "
                    f"({task.lease_expires_at or 'no expiry'}); taken over by {runner_id}"
                    + (
                        f"; its unfinished run(s) {', '.join(dead_runs)} are interrupted"
                        if dead_runs
                        else ""
                    ),
                    {
                        "previous_owner": task.lease_owner,
                        "previous_lease_expires_at": task.lease_expires_at,
                        "runner_id": runner_id,
                        "interrupted_runs": dead_runs,
                    },
                )
            )
        events.append(
            _event(
                task,
                TASK_STARTED,
                f"{describe(task)} started (priority {task.priority}, due {task.next_run_at:%Y-%m-%d %H:%M} UTC)",
                {
                    "runner_id": runner_id,
                    "priority": task.priority,
                    "due_at": task.next_run_at,
                    "timeout_seconds": timeout,
                    "lease_expires_at": expires,
                },
            )
        )
        trail(wh, settings, run_id).record(events, at=now)
        return Claim(task, now, timeout, expires, task.lease_owner)


def _interrupt_runs(wh: Warehouse, task_id: str, owner: str, now: datetime) -> list[str]:
    """The optimization runs a dead or stopped lease holder left `running` end as `interrupted`
    (in the transaction that takes the lease over or gives it back: no live process can still be
    writing them, the task's process dies with its runner)."""
    ids = [
        str(r[0])
        for r in wh.fetchall(
            "select run_id from optimization_runs where task_id = %(t)s and verdict = 'running'"
            " order by started_at, run_id",
            {"t": task_id},
        )
    ]
    if ids:
        reason = json.dumps([f"its runner ({owner}) stopped before the run finished"])
        wh.execute(
            "update optimization_runs set verdict = 'interrupted', reasons = %(r)s,"
            " finished_at = %(now)s where task_id = %(t)s and verdict = 'running'",
            {"r": reason, "now": now, "t": task_id},
        )
    return ids


def finish(
    settings: Settings, claim: Claim, result: TaskResult, *, runner_id: str, run_id: str
) -> TaskRun:
    """Record the result and free the lease, only if this runner still holds it."""
    with open_queue(settings, migrated=True) as wh, wh.transaction():
        now = db_now(wh)
        held = wh.fetchone(
            "select task_id from optimization_queue where task_id = %(t)s and lease_owner = %(o)s"
            + (" for update" if wh.dialect == "postgres" else ""),
            {"t": claim.task.task_id, "o": runner_id},
        )
        base = claim.task
        if held is None:
            return TaskRun(
                base.task_id,
                base.task_type,
                base.component_id,
                base.priority,
                "lost_lease",
                started_at=claim.started_at,
                error="another runner took the lease over before this run finished; "
                "its result was not recorded",
                took_over_from=claim.took_over_from,
            )
        (task,) = read_optimization_tasks(wh, task_id=base.task_id)
        duration = (now - claim.started_at).total_seconds()
        failures = 0 if result.ok else task.consecutive_failures + 1
        limit = settings.schedule_max_failures
        breaker = not result.ok and not task.one_off and task.enabled and failures >= limit
        if task.one_off:
            enabled, status = False, ("succeeded" if result.ok else "failed")
        else:
            enabled = task.enabled and not breaker
            status = ("succeeded" if result.ok else "failed") if enabled else "paused"
        next_run = (
            task.next_run_at
            if task.one_off
            else next_run_after(task.frequency, task.next_run_at, now)
        )
        error = None if result.error is None else redact(result.error, settings.secrets())
        error = error[:MAX_ERROR_CHARS] if error else error
        wh.execute(
            "update optimization_queue set enabled = %(enabled)s, status = %(status)s,"
            " next_run_at = %(next)s, last_run_at = %(started)s,"
            " consecutive_failures = %(failures)s, last_error = %(error)s,"
            " lease_owner = null, lease_expires_at = null, updated_at = %(now)s"
            " where task_id = %(t)s",
            {
                "enabled": enabled,
                "status": status,
                "next": next_run,
                "started": claim.started_at,
                "failures": failures,
                "error": error if not result.ok else None,
                "now": now,
                "t": task.task_id,
            },
        )
        shown_next = "none (one-off)" if task.one_off else f"{next_run:%Y-%m-%d %H:%M} UTC"
        events: list[Event] = []
        if result.ok:
            verdicts = ", ".join(str(o.get("verdict")) for o in result.outcomes) or "no run"
            events.append(
                _event(
                    task,
                    TASK_SUCCEEDED,
                    f"{describe(task)} succeeded in {duration:.1f} s ({verdicts}); "
                    f"next run {shown_next}",
                    {
                        "runner_id": runner_id,
                        "duration_seconds": duration,
                        "outcomes": result.outcomes,
                        "next_run_at": None if task.one_off else next_run,
                        "consecutive_failures_reset": task.consecutive_failures,
                    },
                )
            )
        else:
            events.append(
                _event(
                    task,
                    TASK_FAILED,
                    f"{describe(task)} failed ({failures} in a row, limit {limit}): {error}",
                    {
                        "runner_id": runner_id,
                        "duration_seconds": duration,
                        "error": error,
                        "timed_out": result.timed_out,
                        "timeout_seconds": claim.timeout,
                        "consecutive_failures": failures,
                        "max_failures": limit,
                        "next_run_at": None if task.one_off else next_run,
                    },
                )
            )
        if breaker:
            events.append(
                _event(
                    task,
                    CIRCUIT_BREAKER_OPENED,
                    f"{describe(task)} failed {failures} times in a row and is disabled; fix "
                    f"the cause, then `runner schedule enable {task.task_id}`",
                    {
                        "severity": "critical",
                        "consecutive_failures": failures,
                        "max_failures": limit,
                        "last_error": error,
                    },
                )
            )
        trail(wh, settings, run_id).record(events, at=now)
    return TaskRun(
        task.task_id,
        task.task_type,
        task.component_id,
        task.priority,
        "succeeded" if result.ok else ("timed_out" if result.timed_out else "failed"),
        started_at=claim.started_at,
        duration_seconds=duration,
        error=error if not result.ok else None,
        took_over_from=claim.took_over_from,
        circuit_breaker_opened=breaker,
        consecutive_failures=failures,
        next_run_at=None if task.one_off else next_run,
        outcomes=result.outcomes,
    )


def release(settings: Settings, claim: Claim, *, runner_id: str, run_id: str) -> None:
    """Give a task back after the runner itself was interrupted (not the task's failure)."""
    with open_queue(settings, migrated=True) as wh, wh.transaction():
        now = db_now(wh)
        previous = "pending" if claim.task.status == "running" else claim.task.status
        wh.execute(
            "update optimization_queue set status = %(status)s, lease_owner = null,"
            " lease_expires_at = null, updated_at = %(now)s"
            " where task_id = %(t)s and lease_owner = %(o)s",
            {"status": previous, "now": now, "t": claim.task.task_id, "o": runner_id},
        )
        _interrupt_runs(wh, claim.task.task_id, runner_id, now)
        trail(wh, settings, run_id).record(
            [
                Event(
                    TASK_INTERRUPTED,
                    f"{describe(claim.task)} was interrupted with its runner; it stays due",
                    {"runner_id": runner_id},
                    component_id=claim.task.component_id,
                    task_id=claim.task.task_id,
                    recommendation_id=claim.task.recommendation_id,
                )
            ],
            at=now,
        )


def due_tasks(settings: Settings, component: str | None = None) -> list[TaskRun]:
    """The tasks a run-due would take now, in order (the dry run's plan; nothing written)."""
    with open_queue(settings) as wh:
        now = db_now(wh)
        where, params = _due(wh.dialect, now, component, ())
        ids = [
            str(r[0])
            for r in wh.fetchall(
                f"select task_id from optimization_queue where {where}{ORDER}", params
            )
        ]
        tasks = {t.task_id: t for t in read_optimization_tasks(wh, component=component)}
    return [
        TaskRun(
            t.task_id,
            t.task_type,
            t.component_id,
            t.priority,
            "planned",
            took_over_from=t.lease_owner,
            consecutive_failures=t.consecutive_failures,
            next_run_at=t.next_run_at,
        )
        for t in (tasks[i] for i in ids)
    ]


# -- run-due ------------------------------------------------------------------------------------
def run_due(
    settings: Settings,
    *,
    budget_seconds: float | None = None,
    component: str | None = None,
    dry_run: bool = False,
    sync: bool = False,
    run_id: str | None = None,
) -> RunDueReport:
    """Run the due tasks, most urgent first (priority, then due time), one at a time, until none
    is due or `budget_seconds` is spent (a task started keeps its own timeout).

    `sync` first syncs the declared tasks and adds the recommendations' one-off tasks (the CLI
    does; the cycle calls those itself). A dry run decides and reports, and writes nothing: no
    lease, no event, no lock file (on DuckDB it still says so if another runner holds the lock).
    """
    run_id = run_id or new_run_id()
    runner_id = new_runner_id()
    clock = time.monotonic()
    if dry_run:
        if settings.dialect == "duckdb":
            check_lock(settings)
        sync_report = sync_tasks(settings, dry_run=True, run_id=run_id) if sync else None
        added = add_recommendation_tasks(settings, dry_run=True, run_id=run_id) if sync else []
        return RunDueReport(
            run_id,
            runner_id,
            True,
            due_tasks(settings, component),
            "dry_run",
            time.monotonic() - clock,
            sync=sync_report,
            recommendation_tasks=added,
            notes=["A dry run lists every due task; a real run stops when its budget is spent."]
            if budget_seconds is not None
            else [],
        )
    guard: AbstractContextManager[Any] = (
        runner_lock(settings, runner_id) if settings.dialect == "duckdb" else nullcontext()
    )
    with guard:
        sync_report = sync_tasks(settings, run_id=run_id) if sync else None
        added = add_recommendation_tasks(settings, run_id=run_id) if sync else []
        with open_queue(settings):
            pass  # migrated once; each step below opens a short connection of its own
        importlib.import_module("runner.optimize")  # loaded once: every forked task starts warm
        runs: list[TaskRun] = []
        stopped: Stopped = "no_due_tasks"
        while True:
            if budget_seconds is not None and time.monotonic() - clock >= budget_seconds:
                stopped = "budget_spent"
                break
            claim = claim_next(
                settings,
                runner_id=runner_id,
                run_id=run_id,
                component=component,
                exclude=[r.task_id for r in runs],
            )
            if claim is None:
                break
            try:
                result = run_in_child(settings, claim.task.task_id, claim.timeout)
            except BaseException:
                release(settings, claim, runner_id=runner_id, run_id=run_id)
                raise
            runs.append(finish(settings, claim, result, runner_id=runner_id, run_id=run_id))
    return RunDueReport(
        run_id,
        runner_id,
        False,
        runs,
        stopped,
        time.monotonic() - clock,
        sync=sync_report,
        recommendation_tasks=added,
    )
