"""`runner status`: the monitoring views (recent events, pending optimizations, running A/B
tests) and the open alerts and recommendations, as tables or as JSON for scripts."""

from __future__ import annotations

from typing import Annotated

import typer

from runner.cli.app import console, session, settings_of
from runner.cli.render import (
    ab_tests_table,
    alerts_table,
    allocation_table,
    events_table,
    queue_table,
    recommendations_table,
    runs_table,
    section,
    to_json,
)
from runner.status import report_dict, status_report


def status(
    ctx: typer.Context,
    component: Annotated[
        str | None, typer.Option("--component", "-c", help="Only show this component.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Show recent events, queue, A/B tests, alerts, recommendations.

    Example: [bold]runner status --component trend_spx[/bold]  (add --json for scripts)
    """
    with session(settings_of(ctx)) as wh:
        report = status_report(wh, component)
    if as_json:
        typer.echo(to_json(report_dict(report)))
        return
    days = report.days
    console.print(
        section(
            report.recent_events,
            lambda rows: events_table(rows, days),
            f"No improvement events in the last {days} days.",
        )
    )
    console.print(section(report.pending_optimizations, queue_table, "No pending optimizations."))
    console.print(section(report.running_ab_tests, ab_tests_table, "No A/B test is running."))
    console.print(
        section(report.allocation, allocation_table, "No deployment yet (`runner deploy`).")
    )
    console.print(section(report.optimization_runs, runs_table, "No optimization runs yet."))
    console.print(section(report.alerts, alerts_table, "No open alerts (warning or critical)."))
    console.print(section(report.recommendations, recommendations_table, "No recommendations."))
    for note in report.notes:
        console.print(f"[dim]Note: {note}[/]", highlight=False)
