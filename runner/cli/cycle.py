"""`runner cycle`: one improvement cycle, the hourly job (ANALYZE → IDENTIFY → OPTIMIZE → DEPLOY)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from runner.cli.analyze import parse_date
from runner.cli.app import console, settings_of
from runner.cli.render import to_json
from runner.cycle import CycleReport, StepOutcome, parse_steps, run_cycle

_STATUS = {"ok": "[green]ok[/]", "failed": "[bold red]failed[/]", "skipped": "[yellow]skipped[/]"}


def cycle_command(
    ctx: typer.Context,
    steps: Annotated[
        str | None,
        typer.Option(
            "--steps", help="Comma-separated: analyze,identify,optimize,deploy (default all)."
        ),
    ] = None,
    component: Annotated[
        str | None,
        typer.Option("--component", "-c", help="Optimize and deploy this component only."),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Decide and report; write nothing but a dry-run event."),
    ] = False,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Last date of the analysis windows (YYYY-MM-DD).")
    ] = None,
    budget: Annotated[
        float | None,
        typer.Option("--budget", help="Seconds the cycle may take (OPTIMIZE stops in time)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Run one improvement cycle: analyze, identify, optimize, deploy.

    Exits 0 when the cycle ran (whatever it found), 1 when a step of the engine failed.

    Example: [bold]runner cycle --budget 1800[/bold]  (cron: [dim]0 * * * * cd /srv/tradebase && .venv/bin/runner cycle[/dim])
    """
    settings = settings_of(ctx)
    chosen = parse_steps(steps)
    day = parse_date(as_of)
    if as_json:
        report = run_cycle(
            settings,
            steps=chosen,
            component=component,
            dry_run=dry_run,
            as_of=day,
            budget_seconds=budget,
        )
        typer.echo(to_json(report.to_dict()))
    else:
        with console.status("Improvement cycle…") as status:

            def shown(outcome: StepOutcome) -> None:
                status.update(f"Improvement cycle… {outcome.name} {outcome.status}")

            report = run_cycle(
                settings,
                steps=chosen,
                component=component,
                dry_run=dry_run,
                as_of=day,
                budget_seconds=budget,
                on_step=shown,
            )
        console.print(summary_table(report))
        for note in report.notes:
            console.print(f"[dim]Note: {escape(note)}[/]", highlight=False)
        console.print(f"[dim]Log: {escape(str(report.log_path))}[/]", highlight=False)
    if report.engine_failed:
        raise typer.Exit(1)


def summary_table(report: CycleReport) -> Table:
    title = f"cycle {report.cycle_id}" + (" (dry run)" if report.dry_run else "")
    table = Table(title=escape(title), title_justify="left")
    table.add_column("step")
    table.add_column("status")
    table.add_column("seconds", justify="right")
    table.add_column("what happened", overflow="fold")
    for step in report.steps:
        table.add_row(step.name, _STATUS[step.status], f"{step.seconds:.1f}", escape(step.summary))
    return table
