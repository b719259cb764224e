"""`runner trace COMPONENT [--version V]`: a version's history, from the recommendation that asked
for it to its promotion or rollback."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from runner.cli.app import console, session, settings_of
from runner.cli.render import to_json
from runner.trace import as_dict, trace


def trace_command(
    ctx: typer.Context,
    component: Annotated[str, typer.Argument(help="The component.")],
    version: Annotated[
        int | None, typer.Option("--version", help="The version (default: production).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the trace as JSON.")] = False,
) -> None:
    """Follow a version back to the run and recommendation behind it.

    Example: [bold]runner trace trend_spx --version 2[/bold]
    """
    with session(settings_of(ctx)) as wh:
        found = trace(wh, component, version)
    if as_json:
        typer.echo(to_json(as_dict(found)))
        return
    console.print(
        f"[bold]{escape(found.component_id)} v{found.version}[/] ({escape(found.status)}), "
        f"{escape(found.strategy)} {escape(str(found.params))}"
        + (f", parent v{found.parent_version}" if found.parent_version else ""),
        highlight=False,
    )
    if found.run:
        run = found.run
        console.print(
            f"made by optimization run {escape(str(run['run_id']))} ({escape(str(run['verdict']))})"
            f" on bars {run['data_start']} → {run['data_end']}: {escape(str(run['trigger_reason']))}",
            highlight=False,
        )
    table = Table(title="history (UTC)", title_justify="left")
    for column in ("time", "event", "why"):
        table.add_column(column, overflow="fold")
    for event in found.events:
        table.add_row(
            f"{event.event_timestamp:%Y-%m-%d %H:%M}",
            escape(event.event_type),
            escape(event.trigger_reason),
        )
    console.print(table)
