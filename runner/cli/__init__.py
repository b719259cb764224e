"""Command-line entry point `runner`: wires the command modules and maps errors to exit codes.

A handled failure prints one sentence and exits 1; anything else exits 2. `--debug` shows tracebacks.
"""

from __future__ import annotations

import sys

from rich.markup import escape

from runner.cli.analyze import analyze_command
from runner.cli.app import app, err_console, init
from runner.cli.backtest import backtest_command
from runner.cli.cycle import cycle_command
from runner.cli.demo import demo
from runner.cli.deploy import (
    allocation_command,
    deploy_command,
    rollback_command,
    route_command,
)
from runner.cli.ingest import ingest
from runner.cli.notify import notify_app
from runner.cli.optimize import optimize_command
from runner.cli.report import report_command
from runner.cli.schedule import schedule_app
from runner.cli.score import score_command
from runner.cli.simulate import simulate_command
from runner.cli.status import status
from runner.cli.trace import trace_command
from runner.errors import TradebaseError
from runner.redact import redact

__all__ = ["app", "main"]

# Registration order is the order of `runner --help`: the steps as a user takes them.
for command in (
    init,
    ingest,
    analyze_command,
    backtest_command,
    optimize_command,
    score_command,
    deploy_command,
    rollback_command,
    route_command,
    allocation_command,
    simulate_command,
    cycle_command,
    status,
    trace_command,
    report_command,
    demo,
):
    app.command(command.__name__.removesuffix("_command"))(command)
app.add_typer(schedule_app, name="schedule")
app.add_typer(notify_app, name="notify")


def main() -> None:
    debug = "--debug" in sys.argv[1:]
    try:
        app()
    except TradebaseError as exc:
        if debug:
            raise
        err_console.print(
            f"[bold red]Error:[/] {escape(redact(str(exc)))}", highlight=False, soft_wrap=True
        )
        sys.exit(exc.exit_code)
    except Exception as exc:  # a crash: still one line unless --debug
        if debug:
            raise
        err_console.print(
            f"[bold red]Unexpected error ({type(exc).__name__}):[/] {escape(redact(str(exc)))}\n"
            "Run again with --debug for the traceback.",
            highlight=False,
        )
        sys.exit(2)
