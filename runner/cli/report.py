"""`runner report`: write the self-contained HTML report and its PNG charts; print where they are."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from runner.cli.app import console, settings_of
from runner.cli.render import to_json


def report_command(
    ctx: typer.Context,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Directory for report.html and charts/ (default: report/ under the artifacts).",
        ),
    ] = None,
    component: Annotated[
        str | None, typer.Option("--component", "-c", help="Report on this component only.")
    ] = None,
    days: Annotated[
        int | None,
        typer.Option("--days", min=1, help="Chart only the last N days of data (default: all)."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the paths and notes as JSON.")
    ] = False,
) -> None:
    """Write the HTML report (one offline file) and its PNG charts.

    Performance, alerts, optimization runs, A/B tests and the event timeline.

    Example: [bold]runner report --out report --component trend_spx[/bold]
    """
    # Lazy: matplotlib and the report's modules load only when a report is made.
    from runner.report import build_report, default_out_dir, key_charts

    settings = settings_of(ctx)
    result = build_report(
        settings, out_dir=out or default_out_dir(settings), component=component, days=days
    )
    if as_json:
        typer.echo(to_json(result.to_dict()))
        return
    # soft_wrap: a path broken across lines cannot be pasted into a browser.
    console.print(f"Report: [bold]{escape(str(result.html_path))}[/bold]", soft_wrap=True)
    table = Table(title="Charts", title_justify="left")
    table.add_column("chart")
    table.add_column("file")
    table.add_column("Discord", justify="center")
    attached = set(key_charts(result))
    for name, path in result.chart_paths.items():
        table.add_row(escape(name), escape(str(path)), "✓" if path in attached else "")
    if result.chart_paths:
        console.print(table)
    for note in result.notes:
        console.print(f"[yellow]Note:[/] {escape(note)}")
