"""`runner demo`: the engine end to end on bundled real-market sample data, narrated."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from runner.cli.app import console, settings_of
from runner.cli.optimize import outcome_table
from runner.cli.render import (
    alerts_table,
    fmt,
    performance_tables,
    recommendations_table,
    section,
)
from runner.demo import DEFAULT_DEMO_DB, run_demo


def _verdict(row: dict[str, Any]) -> str:
    sharpe, n_trades = row["sharpe"], row["n_trades"]
    if n_trades < 20:
        return f"only {n_trades} trades in {row['window_days']} days: too few to judge"
    if sharpe is not None and sharpe < 0:
        return (
            f"[bold red]losing[/]: Sharpe {fmt('sharpe', sharpe)}, win rate "
            f"{fmt('win_rate', row['win_rate'])}, max drawdown {fmt('max_drawdown', row['max_drawdown'])}"
        )
    return f"[green]healthy[/]: Sharpe {fmt('sharpe', sharpe)}, win rate {fmt('win_rate', row['win_rate'])}"


def demo(
    ctx: typer.Context,
    database: Annotated[
        Path, typer.Option("--database", help="DuckDB file to (re)create for the demo.")
    ] = DEFAULT_DEMO_DB,
) -> None:
    """Run the engine on bundled sample data (fresh DuckDB).

    Example: [bold]runner demo[/bold]  (then: runner --duckdb-path tradebase-demo.duckdb analyze --as-of 2018-12-31)
    """
    with console.status(
        "Ingesting sample data, building the analytics (dbt build), optimizing what they flag…"
    ):
        result = run_demo(settings_of(ctx), database)

    console.rule("1. Ingest")
    for ingest in result.ingests:
        console.print(
            f"{ingest.kind:<12} {ingest.rows_in_file:>6} rows: {ingest.inserted} loaded, "
            f"{ingest.rejected} rejected"
        )
    console.rule("2. Analyze (dbt build)")
    nodes = result.analysis.nodes
    models = sum(1 for n in nodes if n.resource_type.endswith("model"))
    tests = sum(1 for n in nodes if n.resource_type.endswith("test"))
    console.print(f"{models} models built, {tests} data tests passed, as of {result.as_of}.")
    for table in performance_tables(result.performance):
        console.print(table)
    console.rule("3. What the numbers say (last 30 days)")
    for row in result.performance:
        if row["window_days"] == 30:
            console.print(f"[bold]{row['component_id']}[/]: {_verdict(row)}")
    console.rule("4. Identify: open alerts and recommendations")
    analysis = result.analysis
    console.print(section(analysis.alerts, alerts_table, "No open alerts (warning or critical)."))
    console.print(section(analysis.recommendations, recommendations_table, "No recommendations."))
    console.rule("5. Optimize what the recommendations ask for")
    if not result.optimizations:
        console.print("No hyperparameter recommendation: nothing to optimize.")
    for outcome in result.optimizations:
        console.print(outcome_table(outcome))
        for reason in outcome.reasons:
            console.print(f"  [red]•[/] {escape(reason)}", highlight=False)
    console.print(
        "A rejected search is the engine working: the best of many trials on real prices is "
        "usually what luck alone gives. Only a candidate that clears every gate goes on to DEPLOY."
    )
    console.print(
        f"\nThe marts are in {result.database}. Explore them with\n"
        f"  runner --duckdb-path {database} analyze --as-of {result.as_of}\n"
        f"  runner --duckdb-path {database} status\n"
        f"or any SQL client: select * from mart_recommendations;"
    )
