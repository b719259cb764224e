"""The Typer application: global options, the shared session helper and the small commands.

Command groups live in their own modules and are registered in runner/cli/__init__.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from runner.config import Settings, load_settings
from runner.warehouse import Warehouse, connect
from runner.warehouse.migrations import LATEST, migrate

app = typer.Typer(
    name="runner",
    help="tradebase: analyze, identify, optimize and deploy improvements to trading strategies.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode="rich",
)
console = Console()
err_console = Console(stderr=True)


@app.callback()
def _global(
    ctx: typer.Context,
    duckdb_path: Annotated[
        Path | None,
        typer.Option(
            "--duckdb-path",
            help="DuckDB file to use when DATABASE_URL is unset (default ./tradebase.duckdb).",
            envvar="TRADEBASE_DUCKDB_PATH",
        ),
    ] = None,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the full traceback when a command fails.")
    ] = False,
) -> None:
    """Settings are read once here (environment, then flags) and handed to every command."""
    overrides: dict[str, object] = {}
    if duckdb_path is not None:
        overrides["duckdb_path"] = duckdb_path
    ctx.obj = load_settings(**overrides)


def settings_of(ctx: typer.Context) -> Settings:
    settings = ctx.find_root().obj
    assert isinstance(settings, Settings)
    return settings


@contextmanager
def session(settings: Settings) -> Iterator[Warehouse]:
    """An open warehouse with the engine's schema up to date (every command migrates implicitly)."""
    with connect(settings) as wh:
        migrate(wh)
        yield wh


def init(ctx: typer.Context) -> None:
    """Create or upgrade the engine's tables (idempotent).

    Example: [bold]runner init[/bold]  (PostgreSQL: DATABASE_URL=postgresql://… runner init)
    """
    settings = settings_of(ctx)
    with connect(settings) as wh:
        applied = migrate(wh)
    where = (
        f"PostgreSQL schema {settings.schema}"
        if settings.dialect == "postgres"
        else str(settings.duckdb_file)
    )
    if applied:
        console.print(f"Applied migrations {applied} to {where}; schema is at version {LATEST}.")
    else:
        console.print(f"{where} is up to date (schema version {LATEST}).")
