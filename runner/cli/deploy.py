"""`runner deploy`, `runner rollback` and `runner route`: move rollouts, undo one, ask who trades
a signal."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from runner.cli.app import console, settings_of
from runner.cli.render import allocation_table, to_json
from runner.deploy.engine import Engine
from runner.deploy.rollout import StepResult

_STYLE = {
    "promote": "green",
    "test_started": "green",
    "advance": "green",
    "rollback": "red",
    "smoke_failed": "red",
    "pause": "yellow",
    "inconclusive": "yellow",
    "extend": "yellow",
    "busy": "yellow",
}


def deploy_command(
    ctx: typer.Context,
    component: Annotated[
        str | None, typer.Option("--component", "-c", help="Deploy this component only.")
    ] = None,
    version: Annotated[
        int | None,
        typer.Option("--version", help="Deploy this candidate version (default: the newest)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Decide and report; write nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """One step of each rollout: stage, smoke-test, ramp or roll back.

    Stage and smoke-test the newest candidate, or evaluate the running A/B test. Run it again (the hourly cycle does) to advance 10% → 50% → 100%, roll back or end a test.

    Example: [bold]runner deploy --component trend_spx[/bold]
    """
    results = Engine(settings_of(ctx)).deploy(component=component, version=version, dry_run=dry_run)
    if as_json:
        typer.echo(to_json({"results": [asdict(r) for r in results]}))
        return
    if not results:
        console.print("No component with a strategy and a symbol in seeds/components.csv.")
        return
    console.print(steps_table(results))


def steps_table(results: list[StepResult]) -> Table:
    table = Table(title="deploy", title_justify="left")
    for column in ("component", "action", "version", "stage", "test", "why"):
        table.add_column(column, overflow="fold")
    for r in results:
        style = _STYLE.get(r.action)
        action = f"[{style}]{r.action}[/]" if style else r.action
        table.add_row(
            escape(r.component_id),
            action,
            "" if r.version is None else str(r.version),
            "" if r.stage is None else f"{r.stage}%",
            escape(r.test_id or ""),
            escape(r.summary),
        )
    return table


def rollback_command(
    ctx: typer.Context,
    deployment_id: Annotated[str, typer.Argument(help="The deployment to roll back.")],
    reason: Annotated[
        str, typer.Option("--reason", help="Why, for the audit trail.")
    ] = "manual rollback",
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Send all traffic back to the previous production version.

    Example: [bold]runner rollback dep_20261126T101500_1a2b3c4d --reason "desk request"[/bold]
    """
    result = Engine(settings_of(ctx)).rollback(deployment_id, reason)
    if as_json:
        typer.echo(to_json(asdict(result)))
        return
    colour = "green" if result.rolled_back else "yellow"
    console.print(f"[{colour}]{escape(result.summary)}[/]", highlight=False)


def route_command(
    ctx: typer.Context,
    component: Annotated[str, typer.Argument(help="The component.")],
    unit_key: Annotated[str, typer.Argument(help="The unit (a signal id) to route.")],
    record: Annotated[
        bool,
        typer.Option("--record", help="Log the assignment for the sample-ratio check."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the route as JSON.")] = False,
) -> None:
    """Which version trades this signal (a deterministic hash).

    Example: [bold]runner route trend_spx "trend_spx:SPX:2024-05-02T14:30:00"[/bold]
    """
    route = Engine(settings_of(ctx)).route(component, unit_key, record=record)
    if as_json:
        typer.echo(to_json(asdict(route)))
        return
    console.print(
        f"{escape(component)} · {escape(unit_key)} → version {route.version} ({route.arm}"
        + (
            f", test {escape(route.test_id)} at {route.treatment_share:.0%}"
            if route.test_id
            else ""
        )
        + ")",
        highlight=False,
    )


def allocation_command(
    ctx: typer.Context,
    component: Annotated[
        str | None, typer.Option("--component", "-c", help="This component only.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the allocation as JSON.")] = False,
) -> None:
    """What to trade: each component's versions, shares and parameters.

    Example: [bold]runner allocation --json > allocation.json[/bold]
    """
    rows = [asdict(r) for r in Engine(settings_of(ctx)).allocation(component)]
    if as_json:
        typer.echo(to_json({"allocation": rows}))
        return
    if not rows:
        console.print(
            "No deployment yet: `runner deploy` puts each component's version 1 in production."
        )
        return
    console.print(allocation_table(rows))
