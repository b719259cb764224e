"""`runner analyze`: build the marts, record what IDENTIFY found, and print the latest metrics per
component, the open alerts and the prioritized recommendations."""

from __future__ import annotations

from dataclasses import asdict
from datetime import date, datetime
from typing import Annotated, Any

import typer

from runner.analyze import AnalysisResult, analyze
from runner.cli.app import console, settings_of
from runner.cli.render import (
    alerts_table,
    performance_tables,
    recommendations_table,
    section,
    to_json,
)
from runner.status import event_dict


def parse_date(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a date; use YYYY-MM-DD.") from None


def analyze_command(
    ctx: typer.Context,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of", help="Last date of every window (YYYY-MM-DD); default today (UTC)."
        ),
    ] = None,
    component: Annotated[
        str | None, typer.Option("--component", "-c", help="Only print this component.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print metrics, alerts and recommendations as JSON.")
    ] = False,
    full_refresh: Annotated[
        bool,
        typer.Option(
            "--full-refresh",
            help="Rebuild every model from the raw tables and run every data test on every row "
            "(`runner cycle` does it once a day; the default build is incremental).",
        ),
    ] = False,
) -> None:
    """Build the marts; print metrics, alerts and recommendations.

    Example: [bold]runner analyze --as-of 2018-12-31[/bold]
    """
    settings = settings_of(ctx)
    as_of_date = parse_date(as_of)
    if as_json:
        result = analyze(settings, as_of_date, component, full_refresh=full_refresh)
        typer.echo(to_json(result_dict(result)))
        return
    with console.status("Building the analytics marts (dbt build)…"):
        result = analyze(settings, as_of_date, component, full_refresh=full_refresh)
    if not result.performance:
        console.print(
            "No performance rows: ingest trades first (runner ingest trades FILE) and check that "
            "their components are declared in seeds/components.csv."
        )
    for table in performance_tables(result.performance):
        console.print(table)
    console.print(section(result.alerts, alerts_table, "No open alerts (warning or critical)."))
    console.print(section(result.recommendations, recommendations_table, "No recommendations."))
    for note in result.notes:
        console.print(f"[dim]Note: {note}[/]", highlight=False)


def result_dict(result: AnalysisResult) -> dict[str, Any]:
    """What `--json` prints: the metrics, open alerts, recommendations and this run's events."""
    return {
        "as_of": result.as_of,
        "run_id": result.run_id,
        "performance": result.performance,
        "alerts": [asdict(a) for a in result.alerts],
        "recommendations": [asdict(r) for r in result.recommendations],
        "events": [event_dict(e) for e in result.events],
        "notes": result.notes,
    }
