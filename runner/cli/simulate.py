"""`runner simulate --component C --until TS [--bars FILE]`: paper-trade a component forward.

Thin: parse the options, call runner.deploy.simulate, print the window, the counts per version
and arm, the positions left open and the policy exits as rich tables, or the report as JSON.
"""

from __future__ import annotations

from datetime import UTC, datetime, time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from runner.cli.app import console, settings_of
from runner.cli.render import to_json
from runner.deploy.simulate import SimulationReport, simulate


def parse_until(value: str) -> datetime:
    """An ISO time (naive = UTC, an offset is converted) or a date, meaning the end of that day."""
    text = value.strip()
    try:
        if len(text) == 10:
            return datetime.combine(datetime.strptime(text, "%Y-%m-%d").date(), time.max)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not a time; use YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS][+HH:MM]."
        ) from None
    return moment if moment.tzinfo is None else moment.astimezone(UTC).replace(tzinfo=None)


def simulate_command(
    ctx: typer.Context,
    component: Annotated[
        str,
        typer.Option("--component", "-c", help="The component to paper-trade.", show_default=False),
    ],
    until: Annotated[
        str,
        typer.Option(
            "--until",
            help="Replay bars up to this time (YYYY-MM-DD: the end of that day; UTC).",
            show_default=False,
        ),
    ],
    bars: Annotated[
        Path | None,
        typer.Option(
            "--bars",
            help="First ingest this bars file (CSV or Parquet), its rows up to --until only.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Paper-trade a component: replay bars through the allocation.

    Each version of the allocation trades its own book; a signal goes to control or treatment
    exactly as `runner route` sends it; trades land in raw_trades with their variant and version.

    Example: [bold]runner simulate --component trend_spx --bars spx.csv --until 2019-06-28[/bold]
    """
    settings = settings_of(ctx)
    report = simulate(settings, component, until=parse_until(until), bars_path=bars)
    if as_json:
        typer.echo(to_json(report.to_dict()))
        return
    for table in report_tables(report):
        console.print(table)
    for note in report.notes:
        console.print(f"[yellow]{escape(note)}[/]")


def _when(moment: datetime | None) -> str:
    return "—" if moment is None else f"{moment:%Y-%m-%d %H:%M}"


def report_tables(report: SimulationReport) -> list[Table]:
    summary = Table(title=escape(report.component_id), title_justify="left", show_header=False)
    summary.add_column("")
    summary.add_column("value", justify="right")
    summary.add_row("symbol", escape(report.symbol))
    summary.add_row("window", f"{_when(report.window_start)} → {_when(report.window_end)}")
    summary.add_row("bars replayed", str(report.bars_replayed))
    if report.test_id is None:
        summary.add_row("allocation", "production only")
    else:
        summary.add_row(
            "A/B test", f"{escape(report.test_id)} · treatment {report.treatment_share:.0%}"
        )
    summary.add_row("open-position policy", report.open_position_policy)
    if report.bars_ingest is not None:
        result = report.bars_ingest
        summary.add_row(
            "bars ingested",
            f"{result.inserted} new · {result.unchanged} unchanged · {result.rejected} rejected",
        )
    inserted = report.trades_inserted
    summary.add_row("trades written", f"{report.trades_written} ({inserted} new)")
    summary.add_row("open positions", str(len(report.open_positions)))
    if report.predictions_written:
        summary.add_row("predictions written", str(report.predictions_written))
    tables = [summary]
    if report.counts:
        counts = Table(title="versions", title_justify="left")
        for name in ("version", "arm", "entered", "not taken", "closed", "open"):
            counts.add_column(name, justify="left" if name == "arm" else "right")
        for c in report.counts:
            counts.add_row(
                f"v{c.version}",
                c.arm,
                str(c.entered),
                str(c.not_taken),
                str(c.closed),
                str(c.still_open),
            )
        tables.append(counts)
    if report.policy_exits:
        exits = Table(title="closed by the open-position policy", title_justify="left")
        for name in ("version", "arm", "entry", "exit", "reason", "price"):
            exits.add_column(name, justify="right" if name == "price" else "left")
        for e in report.policy_exits:
            exits.add_row(
                f"v{e.version}",
                e.arm,
                _when(e.entry_at),
                _when(e.exit_at),
                f"{e.policy}: {e.exit_reason}" if e.policy != e.exit_reason else e.policy,
                f"{e.exit_price:.4f}",
            )
        tables.append(exits)
    return tables
