"""`runner schedule list | add | enable | disable | run-due`: the optimization queue by hand.

Every command first syncs the declared tasks (seeds/optimization_tasks.csv) into the queue; the
work is runner.schedule's, this module parses, calls and prints.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from runner.cli.app import console, settings_of
from runner.cli.render import to_json
from runner.config import Settings
from runner.engine_tables import OptimizationTask
from runner.schedule import (
    RunDueReport,
    SyncReport,
    add,
    disable,
    enable,
    list_tasks,
    run_due,
    sync_tasks,
)

schedule_app = typer.Typer(
    name="schedule",
    help="List, add, enable, disable and run queued optimization tasks.\n\n"
    "Example: [bold]runner schedule run-due --budget 3000[/bold]",
    no_args_is_help=True,
    rich_markup_mode="rich",
)

_STATUS = {
    "succeeded": "green",
    "failed": "red",
    "timed_out": "red",
    "paused": "yellow",
    "running": "cyan",
    "lost_lease": "yellow",
    "interrupted": "yellow",
}


def _when(value: Any) -> str:
    return "[dim]—[/]" if value is None else f"{value:%m-%d %H:%M}"


def _styled(status: str) -> str:
    style = _STATUS.get(status)
    return f"[{style}]{escape(status)}[/]" if style else escape(status)


def _task_dict(task: OptimizationTask) -> dict[str, Any]:
    return asdict(task) | {"config": dict(task.config)}


def _print_sync(report: SyncReport | None) -> None:
    if report is None:
        return
    for label, ids in (
        ("added", report.added),
        ("updated", list(report.updated)),
        ("enabled", report.enabled),
        ("disabled", report.disabled),
    ):
        if ids:
            verb = f"would be {label}" if report.dry_run else label
            console.print(f"[dim]Declared tasks {verb}: {escape(', '.join(ids))}[/]")
    for note in report.notes:
        console.print(f"[dim]Note: {escape(note)}[/]", highlight=False)


def _synced(settings: Settings, *, quiet: bool = False) -> SyncReport:
    """Every command first brings the declared tasks into the queue (and says what changed)."""
    report = sync_tasks(settings)
    if not quiet:
        _print_sync(report)
    return report


def tasks_table(tasks: list[OptimizationTask]) -> Table:
    """One row per task: failures in the status, no next run when off; `--json` has every field."""
    table = Table(title="Optimization tasks (times UTC)", title_justify="left", box=box.SIMPLE)
    table.add_column("task", overflow="fold", ratio=3)
    table.add_column("type", no_wrap=True)
    table.add_column("component", overflow="fold", ratio=2)
    for column in ("frequency", "prio", "status", "next run"):
        table.add_column(column, no_wrap=True)
    for t in tasks:
        status = _styled(t.status)
        if t.consecutive_failures:
            status += f" ×{t.consecutive_failures}"
        if not t.enabled and t.status != "paused":
            status += " (off)"
        table.add_row(
            escape(t.task_id),
            t.task_type,
            escape(t.component_id or ""),
            escape(t.frequency),
            str(t.priority),
            status,
            _when(t.next_run_at) if t.enabled else "[dim]—[/]",
        )
    return table


def _errors(tasks: list[OptimizationTask]) -> None:
    for t in tasks:
        if t.last_error and t.consecutive_failures:
            console.print(
                f"[red]•[/] {escape(t.task_id)}: {escape(t.last_error[:300])}", highlight=False
            )


@schedule_app.command("list")
def list_command(
    ctx: typer.Context,
    component: Annotated[
        str | None, typer.Option("--component", "-c", help="Only this component's tasks.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the tasks as JSON.")] = False,
) -> None:
    """Show every task: schedule, state, failures and last error.

    Example: [bold]runner schedule list --component trend_spx[/bold]
    """
    settings = settings_of(ctx)
    report = _synced(settings, quiet=as_json)
    tasks = list_tasks(settings, component=component)
    if as_json:
        typer.echo(to_json({"sync": asdict(report), "tasks": [_task_dict(t) for t in tasks]}))
        return
    if not tasks:
        console.print("No optimization tasks; declare them in seeds/optimization_tasks.csv.")
        return
    console.print(tasks_table(tasks))
    _errors(tasks)


@schedule_app.command("add")
def add_command(
    ctx: typer.Context,
    task_type: Annotated[
        str,
        typer.Option(
            "--type", help="hyperparameter, retrain, feature_selection or risk_adjustment."
        ),
    ],
    component: Annotated[str, typer.Option("--component", "-c", help="The component.")],
    frequency: Annotated[
        str,
        typer.Option(
            "--frequency", help="hourly, daily, weekly, once, or a cron expression (UTC)."
        ),
    ],
    priority: Annotated[int, typer.Option("--priority", help="1 is the most urgent.")] = 3,
    config: Annotated[
        str | None,
        typer.Option("--config", help='JSON object, e.g. {"params": ["stop_loss"]}.'),
    ] = None,
    timeout: Annotated[
        int | None, typer.Option("--timeout", help="Seconds before the task is stopped.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the task as JSON.")] = False,
) -> None:
    """Queue a task that is not in the seed (its id starts with manual_).

    Example: [bold]runner schedule add --type hyperparameter --component trend_spx --frequency "0 3 * * 1"[/bold]
    """
    settings = settings_of(ctx)
    _synced(settings, quiet=as_json)
    task = add(
        settings,
        task_type=task_type,
        component_id=component,
        frequency=frequency,
        priority=priority,
        config=config,
        timeout_seconds=timeout,
    )
    if as_json:
        typer.echo(to_json(_task_dict(task)))
        return
    console.print(
        f"Added {escape(task.task_id)} ({task.frequency}, priority {task.priority}); "
        f"first run {task.next_run_at:%Y-%m-%d %H:%M} UTC.",
        highlight=False,
    )


@schedule_app.command("enable")
def enable_command(
    ctx: typer.Context,
    task_id: Annotated[str, typer.Argument(help="The task.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the task as JSON.")] = False,
) -> None:
    """Turn a task on and reset its failure count (closes its circuit breaker).

    Example: [bold]runner schedule enable trend_spx_stops[/bold]
    """
    settings = settings_of(ctx)
    _synced(settings, quiet=as_json)
    task = enable(settings, task_id)
    if as_json:
        typer.echo(to_json(_task_dict(task)))
        return
    console.print(
        f"Enabled {escape(task.task_id)}; due {task.next_run_at:%Y-%m-%d %H:%M} UTC.",
        highlight=False,
    )


@schedule_app.command("disable")
def disable_command(
    ctx: typer.Context,
    task_id: Annotated[str, typer.Argument(help="The task.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the task as JSON.")] = False,
) -> None:
    """Turn a task off until `runner schedule enable`.

    Example: [bold]runner schedule disable trend_spx_stops[/bold]
    """
    settings = settings_of(ctx)
    _synced(settings, quiet=as_json)
    task = disable(settings, task_id)
    if as_json:
        typer.echo(to_json(_task_dict(task)))
        return
    console.print(f"Disabled {escape(task.task_id)}.", highlight=False)


def runs_table(report: RunDueReport) -> Table:
    title = "Due tasks (dry run)" if report.dry_run else "run-due"
    table = Table(title=title, title_justify="left")
    for column in ("task", "type", "component", "prio", "result"):
        table.add_column(column, no_wrap=True)
    table.add_column("seconds", justify="right")
    table.add_column("due (UTC)" if report.dry_run else "next run (UTC)", no_wrap=True)
    table.add_column("why", overflow="fold", ratio=1)
    for r in report.runs:
        why = r.error or ", ".join(str(o.get("verdict")) for o in r.outcomes)
        if r.took_over_from:
            why = f"lease of {r.took_over_from} taken over; {why}".rstrip("; ")
        if r.circuit_breaker_opened:
            why = f"circuit breaker opened (disabled); {why}"
        table.add_row(
            escape(r.task_id),
            r.task_type,
            escape(r.component_id or ""),
            str(r.priority),
            _styled(r.status),
            "" if r.duration_seconds is None else f"{r.duration_seconds:.1f}",
            _when(r.next_run_at),
            escape(why),
        )
    return table


@schedule_app.command("run-due")
def run_due_command(
    ctx: typer.Context,
    budget: Annotated[
        float | None,
        typer.Option("--budget", min=1, help="Start no task after S seconds (default: none)."),
    ] = None,
    component: Annotated[
        str | None, typer.Option("--component", "-c", help="Only this component's tasks.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List what would run; write nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Run the due tasks, most urgent first, each under its timeout.

    Example: [bold]runner schedule run-due --budget 3000[/bold]
    """
    report = run_due(
        settings_of(ctx), budget_seconds=budget, component=component, dry_run=dry_run, sync=True
    )
    if as_json:
        typer.echo(to_json(asdict(report) | {"summary": report.summary()}))
    else:
        _print_sync(report.sync)
        if report.recommendation_tasks:
            verb = "would be added" if report.dry_run else "added"
            console.print(
                f"[dim]One-off tasks from recommendations {verb}: "
                f"{escape(', '.join(report.recommendation_tasks))}[/]"
            )
        if report.runs:
            console.print(runs_table(report))
        console.print(escape(report.summary()), highlight=False)
        for note in report.notes:
            console.print(f"[dim]Note: {escape(note)}[/]", highlight=False)
    if report.failed:
        raise typer.Exit(1)
