"""One optimization run end to end: what to optimize, the search, the gates, the record.

Decides the targets (a queued task, the open hyperparameter recommendations, or a component
named by the user), runs the walk-forward Bayesian search for each, applies the gates and writes
the outcome: an optimization_runs row, a candidate strategy version when the gates pass, and the
audit events `optimization_started` then `optimization_completed` / `optimization_rejected`
(or `optimization_failed` when the engine itself failed).
"""

from __future__ import annotations

import hashlib
import math
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np

from runner.audit import AuditTrail, Event
from runner.backtest import RISK_PARAMETERS
from runner.config import Settings
from runner.errors import ConfigError
from runner.optimize import models, runs
from runner.optimize.data import load_bars, load_bars_between
from runner.optimize.gates import GateConfig, GateReport, evaluate_gates
from runner.optimize.probabilities import with_model
from runner.optimize.space import describe
from runner.optimize.study import (
    SearchContext,
    StorageConfig,
    StudyResult,
    StudySpec,
    collect,
    load_spec,
    open_storage,
    optuna_schema,
    run_study,
    storage_config,
    study_name_for,
)
from runner.optimize.targets import Target
from runner.optimize.versions import (
    StrategyVersion,
    add_candidate,
    production_version,
    read_components,
    seed_versions,
)
from runner.optimize.walkforward import holdout_returns, summary
from runner.redact import redact
from runner.strategies import load_strategy
from runner.version import code_version
from runner.warehouse import connect
from runner.warehouse.migrations import migrate

Progress = Callable[[str, int, int, float | None], None]


@dataclass(frozen=True)
class SearchOptions:
    trials: int | None = None
    timeout: float | None = None
    workers: int = 1
    seed: int | None = None
    storage_url: str | None = None
    as_of: date | None = None


@dataclass(frozen=True)
class Outcome:
    run_id: str
    component_id: str
    verdict: str  # candidate | rejected
    reasons: tuple[str, ...]
    study_name: str
    trigger_reason: str
    incumbent_version: int
    candidate_version: int | None
    best_params: Mapping[str, Any]
    gates: Mapping[str, Any]
    in_sample: Mapping[str, Any]
    out_of_sample: Mapping[str, Any]
    n_trials: int
    n_pruned: int
    n_failed: int
    duration_seconds: float
    trial_returns_path: str | None = None
    task_type: str = "hyperparameter"
    notes: tuple[str, ...] = field(default=())


# -- one run ------------------------------------------------------------------------------------
def _gate_config(settings: Settings) -> GateConfig:
    return GateConfig(
        dsr_min=settings.optimize_dsr_min,
        pbo_max=settings.optimize_pbo_max,
        pbo_blocks=settings.optimize_pbo_blocks,
        pbo_min_correlation=settings.optimize_pbo_min_correlation,
        alpha=settings.optimize_alpha,
    )


def _write_trial_returns(settings: Settings, run_id: str, result: StudyResult) -> tuple[str, str]:
    """Every complete trial's daily P&L on the grid, one column per trial: the gates' input,
    kept so that DSR and PBO can be recomputed and audited later."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = settings.artifacts / "optimization" / run_id
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "trial_returns.parquet"
    columns: dict[str, Any] = {"day": pa.array(result.days.astype("datetime64[D]").astype(object))}
    for j, number in enumerate(result.trial_numbers):
        columns[f"trial_{number:05d}"] = pa.array(result.returns[:, j])
    pq.write_table(pa.table(columns), path)
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return str(path), digest


def same_params(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Equal as the backtester runs them: an absent risk parameter is its default."""
    defaults = {p.name: p.default for p in RISK_PARAMETERS}
    return {**defaults, **a} == {**defaults, **b}


def _finite(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def run_target(
    settings: Settings,
    target: Target,
    options: SearchOptions,
    progress: Progress | None = None,
) -> Outcome:
    started = datetime.now(UTC)
    clock = time.monotonic()
    run_id = f"opt_{started:%Y%m%dT%H%M%S}_{uuid.uuid4().hex[:8]}"
    storage: StorageConfig = storage_config(settings, options.storage_url)

    with connect(settings) as wh:
        migrate(wh)
        trail = AuditTrail(wh, secrets=settings.secrets())
        if storage.kind == "postgres":
            # optuna_schema() is built from the validated schema name: safe to interpolate.
            wh.execute(f'create schema if not exists "{optuna_schema(settings)}"')
        component = read_components(wh, target.component_id)[0]
        with wh.transaction():
            trail.record(seed_versions(wh, [component]))
        incumbent: StrategyVersion = production_version(wh, component.component_id)
        bars = load_bars(
            wh, component.symbol, as_of=options.as_of, lookback_days=settings.optimize_lookback_days
        )
        # ml_signal: the out-of-sample probabilities of the model version the incumbent trades
        # (model_version is never searched, so candidate and incumbent see the same ones).
        bars = with_model(
            wh,
            bars,
            load_strategy(incumbent.strategy),
            incumbent.params,
            models.model_of(wh, component.component_id),
        )
        spec = StudySpec(
            study_name=study_name_for(component.component_id, started),
            run_id=run_id,
            component_id=component.component_id,
            strategy=incumbent.strategy,
            symbol=component.symbol,
            fixed_params=dict(incumbent.params),
            search=target.search or (),
            objective=settings.optimize_objective,
            periods_per_year=component.periods_per_year,
            folds=settings.optimize_folds,
            holdout_fraction=settings.optimize_holdout_fraction,
            fees_bps=settings.optimize_fees_bps,
            slippage_bps=settings.optimize_slippage_bps,
            data_start=str(bars.time[0]),
            data_end=str(bars.time[-1]),
            n_trials=options.trials or settings.optimize_trials,
            seed=options.seed,
        )
        context = SearchContext.build(spec, bars)
        with wh.transaction():
            runs.start_run(
                wh,
                {
                    "run_id": run_id,
                    "component_id": component.component_id,
                    "task_id": target.task_id,
                    "recommendation_id": target.recommendation_id,
                    "trigger_reason": redact(target.trigger_reason, settings.secrets()),
                    "study_name": spec.study_name,
                    "storage_kind": storage.kind,
                    "strategy": spec.strategy,
                    "search_space": {"params": describe(context.space)},
                    "objective": spec.objective,
                    "seed": spec.seed,
                    "incumbent_version": incumbent.version,
                    "data_start": bars.time[0].astype("datetime64[us]").item(),
                    "data_end": bars.time[-1].astype("datetime64[us]").item(),
                    "started_at": started,
                    "code_version": code_version(settings.project),
                },
            )
            trail.record(
                [
                    Event(
                        event_type="optimization_started",
                        trigger_reason=target.trigger_reason,
                        metrics={
                            "run_id": run_id,
                            "study_name": spec.study_name,
                            "trials": spec.n_trials,
                            "search": list(spec.search),
                            "incumbent_version": incumbent.version,
                            "days": len(np.unique(bars.time.astype("datetime64[D]"))),
                        },
                        component_id=component.component_id,
                        recommendation_id=target.recommendation_id,
                        task_id=target.task_id,
                    )
                ]
            )

    try:
        study = run_study(
            context,
            storage,
            workers=options.workers,
            timeout=options.timeout,
            progress=(
                (
                    lambda done, total, best: progress(
                        f"{component.component_id} · study {spec.study_name}", done, total, best
                    )
                )
                if progress is not None
                else None
            ),
        )
        result = collect(study)
        if result.n_complete == 0:
            raise ConfigError(
                f"No trial of study {spec.study_name} completed ({result.n_failed} failed, "
                f"{result.n_pruned} pruned); nothing to judge."
            )
        best_column = result.best_column
        best_params = dict(result.params[best_column])
        costs = context.costs
        _, cand_daily, cand_trades = holdout_returns(
            context.strategy, bars, best_params, context.plan, costs, spec.periods_per_year
        )
        _, inc_daily, inc_trades = holdout_returns(
            context.strategy, bars, incumbent.params, context.plan, costs, spec.periods_per_year
        )
        report: GateReport = evaluate_gates(
            trial_returns=result.returns,
            best_column=best_column,
            n_trials=result.n_complete + result.n_pruned,
            holdout_candidate=cand_daily,
            holdout_incumbent=inc_daily,
            same_as_incumbent=same_params(best_params, incumbent.params),
            config=_gate_config(settings),
        )
        path, digest = _write_trial_returns(settings, run_id, result)
    except BaseException as exc:
        _record_failure(
            settings, run_id, component.component_id, target, exc, time.monotonic() - clock
        )
        raise

    best_returns = result.returns[:, best_column]
    in_sample = {
        "objective": spec.objective,
        "value": float(result.values[best_column]),
        # The trial attribute keeps daily returns and a trade count, not each trade's return.
        **{
            k: v
            for k, v in summary(best_returns, [], spec.periods_per_year).items()
            if k != "win_rate"
        },
        "n_trades": result.n_trades[best_column],
    }
    out_of_sample = {
        "candidate": summary(cand_daily, cand_trades, spec.periods_per_year),
        "incumbent": summary(inc_daily, inc_trades, spec.periods_per_year),
    }
    duration = time.monotonic() - clock
    gates = {k: _finite(v) for k, v in report.values.items()}
    verdict = "candidate" if report.passed else "rejected"
    with connect(settings) as wh, wh.transaction():
        trail = AuditTrail(wh, run_id=run_id, secrets=settings.secrets())
        candidate_version = None
        if report.passed:
            candidate_version = add_candidate(
                wh,
                component.component_id,
                spec.strategy,
                best_params,
                parent_version=incumbent.version,
                run_id=run_id,
                note=f"optimization run {run_id}",
            ).version
        runs.finish_run(
            wh,
            run_id,
            verdict,
            report.reasons,
            {
                "candidate_version": candidate_version,
                "n_trials": result.n_complete,
                "n_pruned": result.n_pruned,
                "n_failed": result.n_failed,
                "best_trial": result.trial_numbers[best_column],
                "best_params": best_params,
                "in_sample_metrics": in_sample,
                "out_of_sample_metrics": out_of_sample,
                "dsr": gates.get("dsr"),
                "pbo": gates.get("pbo"),
                "min_trl": gates.get("min_trl"),
                "track_length": gates.get("track_length"),
                "holdout_p": gates.get("holdout_p"),
                "gates": gates,
                "trial_returns_path": path,
                "trial_returns_sha256": digest,
                "duration_seconds": duration,
            },
        )
        sentence = (
            f"Candidate version {candidate_version} passed every gate."
            if report.passed
            else "Rejected: " + " ".join(report.reasons)
        )
        trail.record(
            [
                Event(
                    event_type="optimization_completed"
                    if report.passed
                    else "optimization_rejected",
                    trigger_reason=sentence,
                    metrics={
                        "run_id": run_id,
                        "verdict": verdict,
                        "candidate_version": candidate_version,
                        "incumbent_version": incumbent.version,
                        "best_params": best_params,
                        "gates": gates,
                        "out_of_sample": out_of_sample,
                        "trials": result.n_complete + result.n_pruned,
                        "duration_seconds": round(duration, 3),
                    },
                    component_id=component.component_id,
                    recommendation_id=target.recommendation_id,
                    task_id=target.task_id,
                )
            ]
        )
    return Outcome(
        run_id=run_id,
        component_id=component.component_id,
        verdict=verdict,
        reasons=report.reasons,
        study_name=spec.study_name,
        trigger_reason=target.trigger_reason,
        incumbent_version=incumbent.version,
        candidate_version=candidate_version,
        best_params=best_params,
        gates=gates,
        in_sample=in_sample,
        out_of_sample=out_of_sample,
        n_trials=result.n_complete,
        n_pruned=result.n_pruned,
        n_failed=result.n_failed,
        duration_seconds=duration,
        trial_returns_path=path,
    )


def _record_failure(
    settings: Settings,
    run_id: str,
    component_id: str,
    target: Target,
    exc: BaseException,
    duration: float,
) -> None:
    """The engine failed mid-run: close the run row as failed and say why (redacted)."""
    message = redact(f"{type(exc).__name__}: {exc}", settings.secrets())
    with connect(settings) as wh, wh.transaction():
        runs.finish_run(wh, run_id, "failed", [message], {"duration_seconds": duration})
        AuditTrail(wh, run_id=run_id, secrets=settings.secrets()).record(
            [
                Event(
                    event_type="optimization_failed",
                    trigger_reason=f"The optimization run stopped: {message}",
                    metrics={"run_id": run_id},
                    component_id=component_id,
                    recommendation_id=target.recommendation_id,
                    task_id=target.task_id,
                )
            ]
        )


def join(
    settings: Settings,
    study_name: str,
    *,
    workers: int = 1,
    timeout: float | None = None,
    storage_url: str | None = None,
    progress: Progress | None = None,
) -> int:
    """Add this machine's workers to a running study (PostgreSQL storage); return the number of
    trials the study has finished. The coordinator that created it applies the gates."""
    storage = storage_config(settings, storage_url)
    spec = load_spec(open_storage(storage), study_name)
    with connect(settings) as wh:
        bars = load_bars_between(wh, spec.symbol, spec.data_start, spec.data_end)
        bars = with_model(
            wh,
            bars,
            load_strategy(spec.strategy),
            spec.fixed_params,
            models.model_of(wh, spec.component_id),
        )
    context = SearchContext.build(spec, bars)
    study = run_study(
        context,
        storage,
        workers=workers,
        timeout=timeout,
        create=False,
        progress=(
            (lambda done, total, best: progress(spec.component_id, done, total, best))
            if progress is not None
            else None
        ),
    )
    return collect(study).n_complete
