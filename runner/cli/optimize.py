"""`runner optimize`: walk-forward Bayesian search for what IDENTIFY flagged, gated against
overfitting; prints each run's verdict with the gate values and the reasons in words."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from runner.cli.analyze import parse_date
from runner.cli.app import console, settings_of
from runner.cli.render import to_json
from runner.optimize import Outcome, SearchOptions, join, optimize


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("best {task.fields[best]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def optimize_command(
    ctx: typer.Context,
    component: Annotated[
        str | None, typer.Option("--component", "-c", help="Optimize this component.")
    ] = None,
    task: Annotated[
        str | None, typer.Option("--task", help="Run this optimization_queue task.")
    ] = None,
    trials: Annotated[
        int | None, typer.Option("--trials", min=2, help="Trials per study (default from config).")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option("--timeout", min=1, help="Stop sampling after S seconds.")
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Worker processes sharing the study.")
    ] = 1,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Seed of the TPE sampler (reproducible runs).")
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            "--storage",
            help="Optuna storage URL (default: SQLite beside DuckDB, or the PostgreSQL warehouse).",
        ),
    ] = None,
    join_study: Annotated[
        str | None,
        typer.Option(
            "--join", metavar="STUDY", help="Add workers to a study another runner started."
        ),
    ] = None,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="Use bars up to this date (YYYY-MM-DD).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the outcomes as JSON.")] = False,
) -> None:
    """Search better parameters; promote only what beats overfitting.

    Without --task or --component it works through the open hyperparameter recommendations.

    Example: [bold]runner optimize --component trend_spx --trials 200 --seed 7[/bold]
    """
    settings = settings_of(ctx)
    if join_study is not None:
        with _progress() as bar:
            handle = bar.add_task(f"joining {join_study}", total=None, best="–")

            def show_join(_: str, done: int, total: int, best: float | None) -> None:
                bar.update(handle, completed=done, total=total, best=_best(best))

            finished = join(
                settings,
                join_study,
                workers=workers,
                timeout=timeout,
                storage_url=storage,
                progress=None if as_json else show_join,
            )
        console.print(f"Study {escape(join_study)} has {finished} complete trials.")
        return
    options = SearchOptions(
        trials=trials,
        timeout=timeout,
        workers=workers,
        seed=seed,
        storage_url=storage,
        as_of=parse_date(as_of),
    )
    if as_json:
        outcomes = optimize(settings, component=component, task_id=task, options=options)
        typer.echo(to_json({"runs": [asdict(o) for o in outcomes]}))
        return
    with _progress() as bar:
        handles: dict[str, Any] = {}

        def show(name: str, done: int, total: int, best: float | None) -> None:
            if name not in handles:
                handles[name] = bar.add_task(name, total=total, best="–")
            bar.update(handles[name], completed=done, total=total, best=_best(best))

        outcomes = optimize(
            settings, component=component, task_id=task, options=options, progress=show
        )
    if not outcomes:
        console.print(
            "Nothing to optimize: no open hyperparameter recommendation. "
            "Name a component with --component to search anyway."
        )
    for outcome in outcomes:
        console.print(outcome_table(outcome))
        for reason in outcome.reasons:
            console.print(f"  [red]•[/] {escape(reason)}", highlight=False)


def _param(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _best(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _num(value: Any, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def outcome_table(outcome: Outcome) -> Table:
    colour = "green" if outcome.verdict == "candidate" else "red"
    what = f"{escape(outcome.component_id)} ({outcome.task_type})"
    title = f"{what}: [{colour}]{outcome.verdict}[/]" + (
        f" → version {outcome.candidate_version}" if outcome.candidate_version else ""
    )
    table = Table(title=title, title_justify="left", show_header=True)
    table.add_column("")
    table.add_column("value", justify="right")
    gates = outcome.gates
    cand = outcome.out_of_sample.get("candidate", {})
    inc = outcome.out_of_sample.get("incumbent", {})
    if outcome.task_type == "risk_adjustment":
        before, after = outcome.in_sample.get("before", {}), outcome.in_sample.get("after", {})
        confidence = gates.get("confidence", 0.95)
        rows = [
            ("settings tried", str(outcome.n_trials)),
            (
                "risk parameters",
                escape(
                    ", ".join(f"{k}={_param(v)}" for k, v in gates.get("risk_params", {}).items())
                ),
            ),
            (
                f"drawdown at {confidence:.0%}, 1 year (< {gates.get('threshold')})",
                f"{_num(before.get('drawdown_quantile'))} → {_num(after.get('drawdown_quantile'))}",
            ),
            (
                "CAGR on the search blocks",
                f"{_num(before.get('cagr'))} → {_num(after.get('cagr'))}",
            ),
            (
                "holdout max drawdown candidate / production",
                f"{_num(cand.get('max_drawdown'))} / {_num(inc.get('max_drawdown'))}",
            ),
        ]
    else:
        rows = [
            (
                "trials (complete / pruned / failed)",
                f"{outcome.n_trials} / {outcome.n_pruned} / {outcome.n_failed}",
            ),
            (
                "best parameters",
                escape(", ".join(f"{k}={_param(v)}" for k, v in outcome.best_params.items())),
            ),
            ("walk-forward score", _num(outcome.in_sample.get("value"))),
            (f"deflated Sharpe (≥ {gates.get('dsr_min')})", _num(gates.get("dsr"))),
            (
                f"PBO, S = {gates.get('pbo_blocks')} (≤ {gates.get('pbo_max')})",
                _num(gates.get("pbo")),
            ),
            (
                "track length / MinTRL (days)",
                f"{gates.get('track_length')} / {_num(gates.get('min_trl'), 0)}",
            ),
            (
                "holdout Sharpe candidate / production",
                f"{_num(cand.get('sharpe'), 2)} / {_num(inc.get('sharpe'), 2)}",
            ),
            (f"holdout paired p (< {gates.get('alpha')})", _num(gates.get("holdout_p"))),
        ]
    rows += [("run", escape(outcome.run_id)), ("seconds", f"{outcome.duration_seconds:.1f}")]
    for label, value in rows:
        table.add_row(label, value)
    return table
