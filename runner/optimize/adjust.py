"""One risk-adjustment run end to end (task type `risk_adjustment`).

Reads the component's production version and bars, lets runner.optimize.risk choose the risk
parameters on the walk-forward search blocks (bootstrapped drawdown under the component's
warning threshold of max drawdown, within the hard bounds of the configuration), checks on the
untouched holdout that the drawdown did not get worse, and records the outcome as
optimization_search does: an optimization_runs row, a candidate version when it passes, events.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from runner.audit import AuditTrail, Event
from runner.backtest import Costs
from runner.config import Settings
from runner.optimize import runs
from runner.optimize.data import load_bars
from runner.optimize.risk import RiskConfig, adjust_risk
from runner.optimize.search import Outcome, SearchOptions, same_params
from runner.optimize.targets import Target
from runner.optimize.versions import (
    add_candidate,
    production_version,
    read_components,
    seed_versions,
)
from runner.optimize.walkforward import WalkForwardPlan, holdout_returns, summary
from runner.redact import redact
from runner.strategies import load_strategy
from runner.thresholds import threshold
from runner.version import code_version
from runner.warehouse import Warehouse, connect
from runner.warehouse.migrations import migrate

DEFAULT_MAX_DRAWDOWN_WARNING = 0.10


def drawdown_warning(wh: Warehouse, component_id: str) -> float:
    """The component's warning threshold of max drawdown (its override row, else the default)."""
    value = threshold(wh, component_id, "max_drawdown", "warning_value").value
    return DEFAULT_MAX_DRAWDOWN_WARNING if value is None else value


def risk_config(
    settings: Settings, threshold: float, periods_per_year: int, seed: int | None
) -> RiskConfig:
    return RiskConfig(
        max_drawdown=threshold,
        confidence=settings.risk_confidence,
        bootstrap_samples=settings.risk_bootstrap_samples,
        seed=seed or 0,
        periods_per_year=periods_per_year,
        vol_target_bounds=(0.0, settings.risk_vol_target_max),
        kelly_cap_bounds=(settings.risk_kelly_cap_min, settings.risk_kelly_cap_max),
        max_position_bounds=(settings.risk_max_position_min, settings.risk_max_position_max),
        daily_loss_limit_bounds=(0.0, settings.risk_daily_loss_limit_max),
    )


def run_risk_target(settings: Settings, target: Target, options: SearchOptions) -> Outcome:
    started = datetime.now(UTC)
    clock = time.monotonic()
    run_id = f"risk_{started:%Y%m%dT%H%M%S}_{uuid.uuid4().hex[:8]}"
    costs = Costs(settings.optimize_fees_bps, settings.optimize_slippage_bps)
    with connect(settings) as wh:
        migrate(wh)
        trail = AuditTrail(wh, run_id=run_id, secrets=settings.secrets())
        component = read_components(wh, target.component_id)[0]
        with wh.transaction():
            trail.record(seed_versions(wh, [component]))
        incumbent = production_version(wh, component.component_id)
        bars = load_bars(
            wh, component.symbol, as_of=options.as_of, lookback_days=settings.optimize_lookback_days
        )
        threshold = drawdown_warning(wh, component.component_id)
        config = risk_config(settings, threshold, component.periods_per_year, options.seed)
        plan = WalkForwardPlan.build(
            bars, settings.optimize_folds, settings.optimize_holdout_fraction
        )
        with wh.transaction():
            runs.start_run(
                wh,
                {
                    "run_id": run_id,
                    "component_id": component.component_id,
                    "task_id": target.task_id,
                    "recommendation_id": target.recommendation_id,
                    "trigger_reason": redact(target.trigger_reason, settings.secrets()),
                    "study_name": run_id,
                    "storage_kind": "none",
                    "strategy": incumbent.strategy,
                    "search_space": {
                        "risk_bounds": {
                            "vol_target": config.vol_target_bounds,
                            "kelly_cap": config.kelly_cap_bounds,
                            "max_position": config.max_position_bounds,
                            "daily_loss_limit": config.daily_loss_limit_bounds,
                        }
                    },
                    "objective": "cagr_under_drawdown",
                    "seed": options.seed,
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
                            "task_type": "risk_adjustment",
                            "drawdown_threshold": threshold,
                            "confidence": config.confidence,
                            "incumbent_version": incumbent.version,
                        },
                        component_id=component.component_id,
                        recommendation_id=target.recommendation_id,
                        task_id=target.task_id,
                    )
                ]
            )

    strategy = load_strategy(incumbent.strategy)
    adjustment = adjust_risk(strategy, bars, incumbent.params, plan, costs, config=config)
    ppy = component.periods_per_year
    _, inc_daily, inc_trades = holdout_returns(strategy, bars, incumbent.params, plan, costs, ppy)
    _, cand_daily, cand_trades = holdout_returns(
        strategy, bars, adjustment.params, plan, costs, ppy
    )
    holdout = {
        "candidate": summary(cand_daily, cand_trades, ppy),
        "incumbent": summary(inc_daily, inc_trades, ppy),
    }
    # adjust_risk's reasons explain its choice; they are failures only when it did not adjust.
    reasons = [] if adjustment.verdict == "adjusted" else list(adjustment.reasons)
    if adjustment.verdict == "unchanged" or same_params(adjustment.params, incumbent.params):
        reasons.append(
            "The current risk parameters already meet the drawdown target: nothing to change."
        )
    cand_dd, inc_dd = holdout["candidate"]["max_drawdown"], holdout["incumbent"]["max_drawdown"]
    assert cand_dd is not None and inc_dd is not None  # a drawdown is always known
    worse = cand_dd > inc_dd + 1e-12
    if adjustment.verdict == "adjusted" and worse:
        reasons.append(
            f"On the untouched final block the adjusted version draws down more "
            f"({holdout['candidate']['max_drawdown']:.1%}) than production "
            f"({holdout['incumbent']['max_drawdown']:.1%})."
        )
    passed = adjustment.verdict == "adjusted" and not reasons
    gates: dict[str, Any] = {
        **adjustment.to_json(),
        "holdout_max_drawdown_candidate": holdout["candidate"]["max_drawdown"],
        "holdout_max_drawdown_incumbent": holdout["incumbent"]["max_drawdown"],
    }
    in_sample = {"before": asdict(adjustment.before), "after": asdict(adjustment.after)}
    duration = time.monotonic() - clock
    verdict = "candidate" if passed else "rejected"
    with connect(settings) as wh, wh.transaction():
        candidate_version = None
        if passed:
            candidate_version = add_candidate(
                wh,
                component.component_id,
                incumbent.strategy,
                adjustment.params,
                parent_version=incumbent.version,
                run_id=run_id,
                note=f"risk adjustment {run_id}",
            ).version
        runs.finish_run(
            wh,
            run_id,
            verdict,
            reasons,
            {
                "candidate_version": candidate_version,
                "n_trials": adjustment.candidates,
                "best_params": adjustment.params,
                "in_sample_metrics": in_sample,
                "out_of_sample_metrics": holdout,
                "gates": gates,
                "track_length": adjustment.days,
                "duration_seconds": duration,
            },
        )
        sentence = (
            f"Candidate version {candidate_version}: risk parameters "
            + ", ".join(f"{k}={v:.3g}" for k, v in adjustment.risk_params.items())
            + f" keep the {config.confidence:.0%} bootstrapped drawdown at "
            f"{adjustment.after.drawdown_quantile:.1%} (under {threshold:.0%}). "
            + " ".join(adjustment.reasons)
            if passed
            else "Rejected: " + " ".join(reasons)
        )
        AuditTrail(wh, run_id=run_id, secrets=settings.secrets()).record(
            [
                Event(
                    event_type="optimization_completed" if passed else "optimization_rejected",
                    trigger_reason=sentence,
                    metrics={
                        "run_id": run_id,
                        "task_type": "risk_adjustment",
                        "verdict": verdict,
                        "candidate_version": candidate_version,
                        "risk_params": adjustment.risk_params,
                        "gates": gates,
                        "out_of_sample": holdout,
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
        reasons=tuple(reasons),
        study_name=run_id,
        trigger_reason=target.trigger_reason,
        incumbent_version=incumbent.version,
        candidate_version=candidate_version,
        best_params=adjustment.params,
        gates=gates,
        in_sample=in_sample,
        out_of_sample=holdout,
        n_trials=adjustment.candidates,
        n_pruned=0,
        n_failed=0,
        duration_seconds=duration,
        task_type="risk_adjustment",
    )
