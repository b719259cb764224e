"""`runner score`: the production model of each component predicts its new bars into
raw_predictions (and fills labels that have resolved), so mart_model_accuracy follows it."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from datetime import time as day_time
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from runner.cli.analyze import parse_date
from runner.cli.app import console, settings_of
from runner.cli.render import to_json
from runner.optimize.scoring import ScoreResult, score


def score_command(
    ctx: typer.Context,
    component: Annotated[
        str | None, typer.Option("--component", "-c", help="Score this component only.")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Score bars from this date (YYYY-MM-DD), not only new ones."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Score new bars with each production model; store predictions.

    Example: [bold]runner score --component trend_spx[/bold]
    """
    settings = settings_of(ctx)
    day = parse_date(since)
    start = None if day is None else datetime.combine(day, day_time.min)
    results = score(settings, component=component, since=start)
    if as_json:
        typer.echo(to_json({"results": [asdict(r) for r in results]}))
        return
    if not results:
        console.print("Nothing to score: no component in seeds/components.csv.")
    for result in results:
        console.print(result_table(result))


def result_table(result: ScoreResult) -> Table:
    table = Table(title=escape(result.component_id), title_justify="left", show_header=True)
    table.add_column("")
    table.add_column("value", justify="right")
    table.add_row("model", escape(result.model_id))
    if result.model_version is None:
        table.add_row("version", "[yellow]none in production[/]")
        table.add_row("note", escape(result.note or ""))
        return table
    table.add_row("version", escape(result.version_text or ""))
    table.add_row("symbol", escape(result.symbol))
    table.add_row("rows scored", str(result.rows_scored))
    table.add_row("labels filled", str(result.labels_filled))
    if result.first_bar is not None and result.last_bar is not None:
        table.add_row(
            "bars", f"{result.first_bar:%Y-%m-%d %H:%M} → {result.last_bar:%Y-%m-%d %H:%M}"
        )
    return table
