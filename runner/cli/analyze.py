"""`runner analyze`: build the analytics marts and print the latest metrics per component."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

import typer

from runner.analyze import analyze
from runner.cli.app import console, settings_of
from runner.cli.render import performance_tables, to_json


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
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON.")] = False,
) -> None:
    """Build the marts with dbt and print the latest metrics.

    Example: [bold]runner analyze --as-of 2018-12-31[/bold]
    """
    settings = settings_of(ctx)
    as_of_date = parse_date(as_of)
    if as_json:
        result = analyze(settings, as_of_date, component)
        typer.echo(to_json(result.performance))
        return
    with console.status("Building the analytics marts (dbt build)…"):
        result = analyze(settings, as_of_date, component)
    if not result.performance:
        console.print(
            "No performance rows: ingest trades first (runner ingest trades FILE) and check that "
            "their components are declared in seeds/components.csv."
        )
        return
    for table in performance_tables(result.performance):
        console.print(table)
