"""`runner cycle`: one improvement cycle, the hourly job (ANALYZE → IDENTIFY → OPTIMIZE → DEPLOY)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from runner.cli.analyze import parse_date
from runner.cli.app import console, settings_of
from runner.cli.render import to_json
from runner.cycle import CycleReport, StepOutcome, parse_steps, run_cycle
from runner.cycle_loop import StopRequest, parse_period, repeat_cycles, stop_on_signals
from runner.dbt import DbtSession

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
    every: Annotated[
        str | None,
        typer.Option(
            "--every",
            help="Keep running: a cycle now and one every period (3600, 30m, 1h), in this one "
            "process, until SIGTERM or Ctrl-C (dbt parses the project once).",
        ),
    ] = None,
    max_cycles: Annotated[
        int | None,
        typer.Option("--max-cycles", min=1, help="With --every: stop after this many cycles."),
    ] = None,
) -> None:
    """Run one improvement cycle: analyze, identify, optimize, deploy.

    Exits 0 when the cycle ran (whatever it found), 1 when a step of the engine failed.
    With --every, the exit status is the last cycle's.

    Example: [bold]runner cycle --budget 1800[/bold]  (cron: [dim]0 * * * * cd /srv/tradebase && .venv/bin/runner cycle[/dim]; as a service: [dim]runner cycle --every 1h[/dim])
    """
    settings = settings_of(ctx)
    chosen = parse_steps(steps)
    day = parse_date(as_of)

    def one(session: DbtSession | None) -> CycleReport:
        kwargs: dict[str, Any] = {
            "steps": chosen,
            "component": component,
            "dry_run": dry_run,
            "as_of": day,
            "budget_seconds": budget,
            "session": session,
        }
        if as_json:
            return run_cycle(settings, **kwargs)
        with console.status("Improvement cycle…") as status:

            def shown(outcome: StepOutcome) -> None:
                status.update(f"Improvement cycle… {outcome.name} {outcome.status}")

            return run_cycle(settings, on_step=shown, **kwargs)

    if every is None:
        if max_cycles is not None:
            raise typer.BadParameter("--max-cycles goes with --every.")
        report = one(None)
        _show(report, as_json, lines=False)
    else:
        period = parse_period(every)
        stop = StopRequest()
        if not as_json:
            console.print(
                f"Running a cycle every {every.strip()} until SIGTERM or Ctrl-C"
                + (f" ({max_cycles} at most)." if max_cycles else "."),
                highlight=False,
            )
        with stop_on_signals(stop):
            reports = repeat_cycles(
                one,
                every=period,
                max_cycles=max_cycles,
                stop=stop,
                on_report=lambda r: _show(r, as_json, lines=True),
            )
        report = reports[-1]
    if report.engine_failed:
        raise typer.Exit(1)


def _show(report: CycleReport, as_json: bool, *, lines: bool) -> None:
    if as_json:
        # With --every, one JSON object a line (JSON Lines), a line per cycle.
        typer.echo(to_json(report.to_dict(), indent=None if lines else 2))
        return
    console.print(summary_table(report))
    for note in report.notes:
        console.print(f"[dim]Note: {escape(note)}[/]", highlight=False)
    console.print(f"[dim]Log: {escape(str(report.log_path))}[/]", highlight=False)


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
