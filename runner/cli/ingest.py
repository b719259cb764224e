"""`runner ingest KIND PATH`: validate and load one file, then show what was loaded and rejected.

Thin: parsing arguments, calling runner.ingest, rendering the result (rich table or JSON).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from runner.cli.app import console, err_console, session, settings_of
from runner.errors import RowsRejected
from runner.ingest import IngestResult, Kind, load, prepare


def ingest(
    ctx: typer.Context,
    kind: Annotated[Kind, typer.Argument(help="What the file holds.", show_default=False)],
    path: Annotated[Path, typer.Argument(help="A CSV (with a header) or Parquet file.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the result as JSON, for scripts.")
    ] = False,
) -> None:
    """Validate a trades/predictions/bars file; load valid rows.

    Invalid rows go to ingest_rejects with a row number (1 = first data row) and a reason; exit 1.

    Loading the same file again changes nothing. Unknown extra columns are ignored (a warning).

    Example: [bold]runner ingest trades exports/trades_2024-06.csv[/bold]  (add --json for scripts)
    """
    settings = settings_of(ctx)
    prepared = prepare(settings, kind, path)  # file errors surface before the warehouse opens
    with session(settings) as wh:
        result = load(wh, prepared)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        _print_summary(result)
    if result.rejected:
        raise RowsRejected(
            f"{result.rejected} of {result.rows_in_file} rows of {path} were rejected; they are "
            f"in ingest_rejects (ingest_id {result.ingest_id})."
        )


def _print_summary(result: IngestResult) -> None:
    counts = Table(title=f"{result.kind}: {escape(result.source_file)}", title_justify="left")
    for column in ("rows", "loaded", "inserted", "unchanged", "updated", "rejected"):
        counts.add_column(column, justify="right")
    counts.add_row(
        *(
            str(n)
            for n in (
                result.rows_in_file,
                result.loaded,
                result.inserted,
                result.unchanged,
                result.updated,
                result.rejected,
            )
        )
    )
    console.print(counts)
    if result.rejects_by_reason:
        reasons = Table(title="Rejected rows by reason", title_justify="left")
        reasons.add_column("reason")
        reasons.add_column("rows", justify="right")
        reasons.add_column("first row numbers")
        for r in result.rejects_by_reason:
            more = ", …" if r.rows > len(r.first_rows) else ""
            reasons.add_row(r.reason, str(r.rows), ", ".join(map(str, r.first_rows)) + more)
        console.print(reasons)
    for warning in result.warnings:
        err_console.print(f"[yellow]Warning:[/] {escape(warning)}", highlight=False)
