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
from runner.demo_loop import (
    COMPONENTS,
    FIRST_RUN_AFTER,
    HOURS_PER_RUN,
    PHASES,
    LoopDemo,
    Run,
    run_loop_demo,
)

DEFAULT_WORKSPACE = Path("tradebase-demo")
_MARK = {
    "alert_raised": "[red]alert[/]",
    "recommendation_created": "[yellow]recommendation[/]",
    "optimization_completed": "[green]candidate[/]",
    "optimization_rejected": "[dim]search rejected[/]",
    "deployment_staged": "staged",
    "smoke_tests_passed": "[green]smoke tests passed[/]",
    "smoke_tests_failed": "[red]smoke tests failed[/]",
    "ab_test_started": "[cyan]A/B test 10%[/]",
    "ab_stage_advanced": "[cyan]A/B test 50%[/]",
    "ab_stage_extended": "[yellow]A/B stage extended[/]",
    "ab_test_promoted": "[bold green]PROMOTED[/]",
    "ab_test_rolled_back": "[bold red]ROLLED BACK[/]",
    "ab_test_inconclusive": "[yellow]inconclusive[/]",
}
# Alerts and rejected searches repeat every full cycle: the timeline shows the first of each.
_ONCE = ("alert_raised", "recommendation_created", "optimization_rejected")


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
    workspace: Annotated[
        Path,
        typer.Option("--workspace", help="Folder (re)created for the loop demo."),
    ] = DEFAULT_WORKSPACE,
    loop: Annotated[
        bool,
        typer.Option(
            "--loop/--sample",
            help="The whole loop on simulated market hours (default, about 2 minutes), or the "
            "short sample-data version (ANALYZE, IDENTIFY, OPTIMIZE on real index bars).",
        ),
    ] = True,
    database: Annotated[
        Path,
        typer.Option("--database", help="DuckDB file to (re)create for the --sample demo."),
    ] = DEFAULT_DEMO_DB,
) -> None:
    """Run the whole improvement loop on simulated market hours.

    Example: [bold]runner demo[/bold]  (or [bold]runner demo --sample[/bold]: real index bars, no deploy)
    """
    if loop:
        _loop(settings_of(ctx), workspace)
        return
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


def _loop(settings: Any, workspace: Path) -> None:
    console.rule("The improvement loop, on simulated hours")
    momentum, reversal = (n // 24 for n, _ in PHASES["GBPUSD"][:2])
    before = FIRST_RUN_AFTER // 24
    console.print(
        "Market: 5,000 real EURUSD hours (2017-04 → 2018-02, backtesting.py's sample), then "
        f"generated weekday hours: {momentum} days of momentum, then a reversal regime. A second "
        "market (GBPUSD-like: EURUSD's real hours reshuffled by day) reverses too, and swings "
        f"back to momentum after {reversal} days of it, as the engine starts, "
        f"{before} trading days into the generated hours. Components: "
        + ", ".join(f"{c} ({s})" for c, s, _ in COMPONENTS)
        + f", both following the last hour's move. Each engine run sees {HOURS_PER_RUN} new "
        "hours through the paper-trading simulator; every 4th run is a full cycle "
        "(analyze → identify → optimize → deploy), the others run deploy alone.",
        highlight=False,
    )
    seen: set[tuple[str, str | None]] = set()

    def told(run: Run) -> None:
        steps = "full cycle" if len(run.cycle.steps) > 1 else "deploy"
        console.print(
            f"[bold]run {run.number:>2}[/]  data to {run.data_until:%Y-%m-%d %H:%M}  ({steps})"
        )
        for event in run.events:
            key = (event.event_type, event.component_id)
            if event.event_type in _ONCE and key in seen:
                continue
            seen.add(key)
            console.print(
                f"        {_MARK.get(event.event_type, event.event_type)} "
                f"[bold]{escape(event.component_id or '')}[/]: {escape(event.trigger_reason)}",
                highlight=False,
            )
        for step in run.cycle.steps:
            if step.status == "failed":
                console.print(f"        [red]{step.name} failed:[/] {escape(step.summary)}")

    with console.status("Running the engine…"):
        result = run_loop_demo(settings, workspace, on_run=told)
    _ending(result)


def _ending(result: LoopDemo) -> None:
    console.rule("What happened")
    for kind, words in (
        ("ab_test_promoted", "promoted after its A/B test"),
        ("ab_test_rolled_back", "rolled back by its A/B test"),
        ("ab_test_inconclusive", "kept the incumbent: its A/B test was inconclusive"),
    ):
        for event in result.events(kind):
            console.print(f"[bold]{escape(event.component_id or '')}[/]: {words}.")
    console.print(
        f"{len(result.runs)} engine runs in {result.seconds:.0f} s. Warehouse: {result.database}\n"
        f"Report: {result.report_html}\n"
        f"Explore: runner --duckdb-path {result.database} status | trace fx_trend",
        highlight=False,
        soft_wrap=True,
    )
