"""One improvement cycle: ANALYZE → IDENTIFY → OPTIMIZE → DEPLOY → summary.

Each step runs in its own try block: a step that fails is recorded (a `cycle_step_failed` event
and a log line, the error redacted) and the steps that do not depend on it still run. IDENTIFY
needs ANALYZE's marts; OPTIMIZE runs the due tasks either way (the recommendations of a failed
IDENTIFY just add no tasks); DEPLOY reads trades and tests, not marts. The cycle's exit status
says whether the engine worked, not whether the strategies did: a rejected candidate or a
rollback is a result, an exception is a failure.

Every step that starts is an event (`cycle_step_started`) and ends as one (`cycle_step_completed`
or `cycle_step_failed`). A cycle killed mid-way (SIGKILL, a lost machine) leaves a step started
and never ended: the next cycle that finds no other cycle running records it as
`cycle_step_interrupted` and closes the dead cycle with `cycle_interrupted` (once each).

Every cycle writes `improvement_cycle_YYYYMMDD_HHMMSS.log` (one JSON object per line: the
steps, and every audit event the cycle recorded) with secrets redacted.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TextIO

from runner.audit import AuditTrail, Event, StoredEvent, read_events
from runner.config import Settings
from runner.dbt import DbtSession
from runner.errors import ConfigError
from runner.redact import redact
from runner.warehouse import Warehouse, connect
from runner.warehouse.migrations import migrate

STEPS: tuple[str, ...] = ("analyze", "identify", "optimize", "deploy")
# A step is skipped when one it needs failed in this cycle.
NEEDS: dict[str, tuple[str, ...]] = {"identify": ("analyze",)}
DEPLOY_RESERVE_SECONDS = 120.0  # of the budget, kept for DEPLOY and the summary

StepStatus = Literal["ok", "failed", "skipped"]


@dataclass(frozen=True)
class StepOutcome:
    name: str
    status: StepStatus
    seconds: float
    summary: str
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class CycleReport:
    cycle_id: str
    started_at: datetime
    finished_at: datetime
    dry_run: bool
    steps: list[StepOutcome]
    log_path: Path
    notes: list[str] = field(default_factory=list)
    charts: list[str] = field(default_factory=list)  # PNGs attached to the Discord summary

    @property
    def engine_failed(self) -> bool:
        return any(s.status == "failed" for s in self.steps)

    def to_dict(self) -> dict[str, Any]:
        value = asdict(self)
        value["log_path"] = str(self.log_path)
        value["engine_failed"] = self.engine_failed
        return value


class CycleLog:
    """The cycle's structured log: one JSON object per line, every string redacted."""

    def __init__(self, path: Path, secrets: tuple[str, ...]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.secrets = secrets
        self._handle: TextIO = path.open("a", encoding="utf-8")

    def write(self, kind: str, **fields: Any) -> None:
        record = {"ts": datetime.now(UTC).isoformat(), "kind": kind, **fields}
        text = json.dumps(record, default=str, sort_keys=False)
        self._handle.write(redact(text, self.secrets) + "\n")
        self._handle.flush()

    def event(self, event: StoredEvent) -> None:
        self.write(
            "event",
            event_id=event.event_id,
            event_type=event.event_type,
            component_id=event.component_id,
            reason=event.trigger_reason,
            metrics=event.metrics,
            run_id=event.run_id,
            deployment_id=event.deployment_id,
            test_id=event.test_id,
            task_id=event.task_id,
            recommendation_id=event.recommendation_id,
        )

    def close(self) -> None:
        self._handle.close()


# -- the steps ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Context:
    settings: Settings
    component: str | None
    as_of: date | None
    dry_run: bool
    deadline: float | None  # time.monotonic() by which OPTIMIZE must hand over
    session: DbtSession | None = None  # the process's parse of the dbt project, when long-lived

    def optimize_budget(self) -> float | None:
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.monotonic() - DEPLOY_RESERVE_SECONDS)


def _analyze(ctx: _Context) -> tuple[str, dict[str, Any]]:
    from runner.analyze import build_analytics

    if ctx.dry_run:
        return "Would rebuild the marts with dbt build (skipped in a dry run).", {}
    full = _full_refresh_due(ctx.settings)
    nodes = build_analytics(ctx.settings, ctx.as_of, full_refresh=full, session=ctx.session)
    errors = [n for n in nodes if n.status == "error"]
    failures = [n for n in nodes if n.status in ("fail", "warn")]
    if errors:
        names = ", ".join(n.name for n in errors[:5])
        raise ConfigError(f"dbt build failed on {len(errors)} node(s): {names}.")
    built = sum(1 for n in nodes if n.resource_type == "model" and n.status == "success")
    summary = f"Built {built} models" + (" from the raw tables (full refresh)" if full else "")
    if failures:
        summary += f"; {len(failures)} data test(s) failed or warned"
    return summary + ".", {
        "models_built": built,
        "tests_failed": [n.name for n in failures],
        "full_refresh": full,
    }


def _full_refresh_due(settings: Settings) -> bool:
    """Whether this cycle's build is the periodic one from scratch: the hourly builds are
    incremental and test only the rows loaded since (docs/benchmarks.md, "Scale"), so every
    `cycle_full_refresh_hours` every model is rebuilt and every row tested. A build after the
    project's files changed is a full one anyway (build_analytics): it counts as the day's."""
    from runner.analyze import needs_full_build

    hours = settings.cycle_full_refresh_hours
    if hours == 0:
        return True
    since = datetime.now(UTC) - timedelta(hours=hours)
    with connect(settings) as wh:
        if needs_full_build(wh, settings.project):
            return True
        done = read_events(wh, event_types=["cycle_step_completed"], since=since)
    return not any(
        e.metrics.get("step") == "analyze" and e.metrics.get("full_refresh") for e in done
    )


def _identify(ctx: _Context) -> tuple[str, dict[str, Any]]:
    from runner.identify import identify, latest_alerts, latest_recommendations, open_alerts

    with connect(ctx.settings) as wh:
        if ctx.dry_run:
            alerts = open_alerts(latest_alerts(wh))
            recommendations = latest_recommendations(wh)
            return (
                f"{len(alerts)} open alert(s), {len(recommendations)} recommendation(s) "
                "(read only).",
                {"open_alerts": len(alerts), "recommendations": len(recommendations)},
            )
        trail = AuditTrail(wh, secrets=ctx.settings.secrets())
        found = identify(wh, trail, models_built=0)
    critical = sum(1 for a in found.alerts if a.status == "critical")
    return (
        f"{len([a for a in found.alerts if a.is_open])} open alert(s) ({critical} critical), "
        f"{len(found.recommendations)} recommendation(s).",
        {
            "open_alerts": len([a for a in found.alerts if a.is_open]),
            "critical_alerts": critical,
            "recommendations": [r.recommendation_id for r in found.recommendations],
        },
    )


def _optimize(ctx: _Context, identified: bool) -> tuple[str, dict[str, Any]]:
    from runner.schedule import add_recommendation_tasks, run_due, sync_tasks

    details: dict[str, Any] = {"sync": asdict(sync_tasks(ctx.settings, dry_run=ctx.dry_run))}
    if identified:
        details["recommendation_tasks"] = add_recommendation_tasks(
            ctx.settings, dry_run=ctx.dry_run
        )
    report = run_due(
        ctx.settings,
        budget_seconds=ctx.optimize_budget(),
        component=ctx.component,
        dry_run=ctx.dry_run,
    )
    details["run_due"] = asdict(report)
    return report.summary(), details


def _deploy(ctx: _Context) -> tuple[str, dict[str, Any]]:
    from runner.deploy.rollout import deploy

    results = deploy(ctx.settings, component=ctx.component, dry_run=ctx.dry_run)
    moved = [r for r in results if r.action not in ("nothing", "hold")]
    summary = (
        " ".join(f"{r.component_id}: {r.action} ({r.summary})" for r in moved)
        if moved
        else f"{len(results)} component(s), no rollout moved."
    )
    return summary, {"results": [asdict(r) for r in results]}


# -- the cycle ----------------------------------------------------------------------------------
def parse_steps(text: str | None) -> tuple[str, ...]:
    if text is None or not text.strip():
        return STEPS
    chosen = tuple(s.strip().lower() for s in text.split(",") if s.strip())
    unknown = [s for s in chosen if s not in STEPS]
    if unknown:
        raise ConfigError(
            f"Unknown step(s) {', '.join(map(repr, unknown))}; the steps are {', '.join(STEPS)}."
        )
    return tuple(s for s in STEPS if s in chosen)  # always in the loop's order


def run_cycle(
    settings: Settings,
    *,
    steps: Sequence[str] = STEPS,
    component: str | None = None,
    dry_run: bool = False,
    as_of: date | None = None,
    budget_seconds: float | None = None,
    on_step: Callable[[StepOutcome], None] | None = None,
    session: DbtSession | None = None,
) -> CycleReport:
    """Run the chosen steps in order; never raises for a step's failure (see the report).
    A process that runs many cycles passes one `session`: dbt parses the project once."""
    started = datetime.now(UTC)
    clock = time.monotonic()
    cycle_id = f"cycle_{started:%Y%m%dT%H%M%S}_{uuid.uuid4().hex[:8]}"
    budget = budget_seconds if budget_seconds is not None else settings.cycle_budget_seconds
    ctx = _Context(settings, component, as_of, dry_run, clock + budget, session)
    log = CycleLog(
        settings.logs / f"improvement_cycle_{started:%Y%m%d_%H%M%S}.log", settings.secrets()
    )
    log.write(
        "cycle_started",
        cycle_id=cycle_id,
        steps=list(steps),
        component=component,
        dry_run=dry_run,
        as_of=as_of,
        budget_seconds=budget,
    )
    notes: list[str] = []
    with _presence(settings, active=not dry_run) as presence:
        with connect(settings) as wh:
            migrate(wh)
            if not dry_run:
                if presence.alone:
                    notes += recover_interrupted(wh, settings, cycle_id)
                presence.share()  # from here on, this cycle counts as running
                with wh.transaction():
                    AuditTrail(wh, run_id=cycle_id, secrets=settings.secrets()).record(
                        [
                            Event(
                                "cycle_started",
                                f"Improvement cycle {cycle_id}: {', '.join(steps)}.",
                                {"steps": list(steps), "budget_seconds": budget},
                                component_id=component,
                            )
                        ]
                    )
        outcomes = _run_steps(ctx, cycle_id, steps, log, on_step)
        finished = datetime.now(UTC)
        report = CycleReport(cycle_id, started, finished, dry_run, outcomes, log.path, notes)
        if not dry_run and settings.cycle_report:
            report.charts.extend(_charts(settings, report, log))
        _finish(settings, report, log)
    log.close()
    return report


def _run_steps(
    ctx: _Context,
    cycle_id: str,
    steps: Sequence[str],
    log: CycleLog,
    on_step: Callable[[StepOutcome], None] | None,
) -> list[StepOutcome]:
    settings = ctx.settings
    outcomes: list[StepOutcome] = []
    failed: set[str] = set()
    for name in STEPS:
        if name not in steps:
            continue
        step_clock = time.monotonic()
        since = datetime.now(UTC)
        missing = [n for n in NEEDS.get(name, ()) if n in failed]
        if missing:
            outcome = StepOutcome(
                name, "skipped", 0.0, f"Skipped: {', '.join(missing)} failed in this cycle."
            )
        else:
            if not ctx.dry_run:
                _record_start(settings, cycle_id, name)
            try:
                if name == "analyze":
                    summary, details = _analyze(ctx)
                elif name == "identify":
                    summary, details = _identify(ctx)
                elif name == "optimize":
                    identified = "identify" in steps and "identify" not in failed
                    summary, details = _optimize(ctx, identified)
                else:
                    summary, details = _deploy(ctx)
                outcome = StepOutcome(name, "ok", time.monotonic() - step_clock, summary, details)
            except Exception as exc:  # any failure of a step is the engine's, recorded, not raised
                error = redact(f"{type(exc).__name__}: {exc}", settings.secrets())
                failed.add(name)
                outcome = StepOutcome(
                    name, "failed", time.monotonic() - step_clock, error, error=error
                )
        outcomes.append(outcome)
        _record_step(settings, cycle_id, outcome, ctx.dry_run, log, since)
        if on_step is not None:
            on_step(outcome)
    return outcomes


# -- cycles that died ---------------------------------------------------------------------------
CYCLE_ENDS = ("cycle_completed", "cycle_failed", "cycle_interrupted")
STEP_EVENTS = (
    "cycle_step_started",
    "cycle_step_completed",
    "cycle_step_failed",
    "cycle_step_interrupted",
)


class _Presence:
    """Which cycles are alive: each running cycle holds a shared lock for its whole life (a
    PostgreSQL session advisory lock, or flock on a file beside the DuckDB file), released by
    the OS or the server when its process dies, even by SIGKILL. A cycle that gets the lock
    exclusively at its start knows every other started cycle without an end is dead."""

    def __init__(self, settings: Settings, active: bool) -> None:
        self.alone = False
        self._wh: Warehouse | None = None
        self._fd: int | None = None
        if not active:  # a dry run writes nothing: it neither recovers nor needs recovering
            return
        if settings.dialect == "postgres":
            self._key = {"k": f"tb:cycle:{settings.schema}"}
            self._wh = connect(settings)
            row = self._wh.fetchone("select pg_try_advisory_lock(hashtext(%(k)s))", self._key)
            self.alone = bool(row and row[0])
        else:
            import fcntl

            db = settings.duckdb_file
            db.parent.mkdir(parents=True, exist_ok=True)
            path = db.with_name(f"{db.name}.cycle.lock")
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self.alone = True
            except BlockingIOError:
                self.alone = False

    def share(self) -> None:
        """Hold the lock shared from now on (waits out another cycle's short recovery)."""
        if self._wh is not None:
            if self.alone:
                self._wh.execute("select pg_advisory_unlock(hashtext(%(k)s))", self._key)
            self._wh.execute("select pg_advisory_lock_shared(hashtext(%(k)s))", self._key)
        elif self._fd is not None:
            import fcntl

            fcntl.flock(self._fd, fcntl.LOCK_SH)

    def close(self) -> None:
        if self._wh is not None:
            self._wh.close()
        if self._fd is not None:
            os.close(self._fd)


@contextmanager
def _presence(settings: Settings, *, active: bool) -> Iterator[_Presence]:
    presence = _Presence(settings, active)
    try:
        yield presence
    finally:
        presence.close()


def recover_interrupted(wh: Warehouse, settings: Settings, cycle_id: str) -> list[str]:
    """Close every earlier cycle that started and never ended (call it only when no other cycle
    is alive): each step it started and never ended gets `cycle_step_interrupted`, the cycle
    `cycle_interrupted`, under the dead cycle's run id, in one transaction. A cycle closed once
    is never found again. Returns one note per cycle closed."""
    notes: list[str] = []
    with wh.transaction():
        ends = _sql_strings(CYCLE_ENDS)
        step_events = _sql_strings(STEP_EVENTS)
        dead = wh.fetchall(
            "select s.run_id from improvement_events as s where s.event_type = 'cycle_started'"
            " and not exists (select 1 from improvement_events as e"
            f" where e.run_id = s.run_id and e.event_type in ({ends}))"
            " order by s.event_timestamp, s.run_id"
        )
        for (run_id,) in dead:
            rows = wh.fetchall(
                "select event_type, improvement_metrics from improvement_events"
                f" where run_id = %(r)s and event_type in ({step_events})"
                " order by event_timestamp, event_id",
                {"r": run_id},
            )
            started = [json.loads(m).get("step") for kind, m in rows if kind == STEP_EVENTS[0]]
            ended = {json.loads(m).get("step") for kind, m in rows if kind != STEP_EVENTS[0]}
            open_steps = [step for step in started if step not in ended]
            events = [
                Event(
                    "cycle_step_interrupted",
                    f"The {step} step of cycle {run_id} started and never ended: the cycle was "
                    f"stopped (killed, or its machine or database lost); found by {cycle_id}.",
                    {"step": step, "found_by": cycle_id},
                )
                for step in open_steps
            ]
            where = f"during its {open_steps[-1]} step" if open_steps else "between its steps"
            events.append(
                Event(
                    "cycle_interrupted",
                    f"Cycle {run_id} stopped {where} and never finished; found by {cycle_id}. "
                    "What it committed stays; the next steps run again in this cycle.",
                    {
                        "interrupted_steps": open_steps,
                        "completed_steps": sorted(s for s in ended if s is not None),
                        "found_by": cycle_id,
                    },
                )
            )
            AuditTrail(wh, run_id=str(run_id), secrets=settings.secrets()).record(events)
            notes.append(f"Cycle {run_id} was interrupted {where}; recorded in the audit trail.")
    return notes


def _sql_strings(values: Sequence[str]) -> str:
    """Fixed event names of this module as SQL literals (never user data)."""
    return ", ".join(f"'{v}'" for v in values)


def _record_start(settings: Settings, cycle_id: str, step: str) -> None:
    with connect(settings) as wh, wh.transaction():
        AuditTrail(wh, run_id=cycle_id, secrets=settings.secrets()).record(
            [
                Event(
                    "cycle_step_started",
                    f"The {step} step of cycle {cycle_id} started.",
                    {"step": step},
                )
            ]
        )


def _charts(settings: Settings, report: CycleReport, log: CycleLog) -> list[str]:
    """The report's key charts for the Discord summary. A report that cannot be drawn is a note
    in the log, never a failed cycle: the decisions are already recorded."""
    from runner.report import build_report, default_out_dir, key_charts

    try:
        result = build_report(settings, out_dir=default_out_dir(settings))
    except Exception as exc:  # the report is a view; the cycle's work is done
        error = redact(f"{type(exc).__name__}: {exc}", settings.secrets())
        report.notes.append(f"The report could not be built: {error}")
        log.write("report_failed", error=error)
        return []
    log.write(
        "report", html=str(result.html_path), charts=[str(p) for p in result.chart_paths.values()]
    )
    return [str(path) for path in key_charts(result)]


def _record_step(
    settings: Settings,
    cycle_id: str,
    outcome: StepOutcome,
    dry_run: bool,
    log: CycleLog,
    since: datetime,
) -> None:
    log.write(
        "step",
        step=outcome.name,
        status=outcome.status,
        seconds=round(outcome.seconds, 3),
        summary=outcome.summary,
        details=outcome.details,
    )
    with connect(settings) as wh:
        # Every audit event this step recorded, one line each (the cycle's trail in the file).
        for event in read_events(wh, since=since):
            log.event(event)
        if dry_run or outcome.status == "skipped":
            return  # a skipped step never started: the cycle's end event lists it
        if outcome.status == "failed":
            end = Event(
                "cycle_step_failed",
                f"The {outcome.name} step of cycle {cycle_id} failed: {outcome.error}",
                {"step": outcome.name, "seconds": outcome.seconds},
            )
        else:
            metrics: dict[str, Any] = {"step": outcome.name, "seconds": outcome.seconds}
            if outcome.details.get("full_refresh"):
                metrics["full_refresh"] = True  # the next one is due a day later
            end = Event(
                "cycle_step_completed",
                f"The {outcome.name} step of cycle {cycle_id} completed: {outcome.summary}",
                metrics,
            )
        with wh.transaction():
            stored = AuditTrail(wh, run_id=cycle_id, secrets=settings.secrets()).record([end])
        for item in stored:
            log.event(item)


def _finish(settings: Settings, report: CycleReport, log: CycleLog) -> None:
    statuses = {s.name: s.status for s in report.steps}
    summary = ", ".join(f"{s.name} {s.status}" for s in report.steps) or "no step"
    metrics = {
        "steps": statuses,
        "seconds": (report.finished_at - report.started_at).total_seconds(),
        "log": report.log_path.name,
        "summaries": {s.name: s.summary for s in report.steps},
    }
    with connect(settings) as wh, wh.transaction():
        trail = AuditTrail(wh, run_id=report.cycle_id, secrets=settings.secrets())
        if report.dry_run:
            stored = trail.record(
                [Event("cycle_dry_run", f"Dry run of cycle {report.cycle_id}: {summary}.", metrics)]
            )
        else:
            stored = trail.record(
                [
                    Event(
                        "cycle_failed" if report.engine_failed else "cycle_completed",
                        f"Cycle {report.cycle_id}: {summary}.",
                        metrics,
                    )
                ]
            )
    for event in stored:
        log.event(event)
    if not report.dry_run:
        report.notes.extend(_notify(settings, report, metrics, log))
    log.write("cycle_finished", cycle_id=report.cycle_id, engine_failed=report.engine_failed)


def _notify(
    settings: Settings, report: CycleReport, metrics: dict[str, Any], log: CycleLog
) -> list[str]:
    """Queue the cycle's summary, then deliver the backlog (events queued during the cycle
    included). Discord being down is not the engine failing: what is not delivered now waits
    in the outbox for the next run."""
    from runner.notify import CycleSummary, SummaryStep, deliver, enqueue_summary

    summary = CycleSummary(
        cycle_id=report.cycle_id,
        started_at=report.started_at,
        finished_at=report.finished_at,
        steps=[SummaryStep(s.name, s.status, s.summary, s.seconds) for s in report.steps],
        metrics={"seconds": round(float(metrics["seconds"]), 1)},
        notes=list(report.notes),
    )
    with connect(settings) as wh:
        with wh.transaction():
            enqueue_summary(wh, summary, charts=report.charts, secrets=settings.secrets())
        delivery = deliver(wh, settings)
        if delivery.error is not None or delivery.failed:
            # In the audit trail too; not announced on Discord (that is what failed).
            with wh.transaction():
                AuditTrail(wh, run_id=report.cycle_id, secrets=settings.secrets()).record(
                    [
                        Event(
                            "notification_failed",
                            f"Notifications of cycle {report.cycle_id}: {delivery.summary()}",
                            {
                                "sent": delivery.sent,
                                "failed": delivery.failed,
                                "pending": delivery.pending,
                                "retries": delivery.retries,
                            },
                        )
                    ]
                )
    log.write("notifications", **delivery.to_dict())
    return [delivery.note] if delivery.note else ([delivery.summary()] if delivery.error else [])
