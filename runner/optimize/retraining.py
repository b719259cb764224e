"""One model run end to end (task types `retrain` and `feature_selection`).

Reads the component's feature rows from the warehouse (fct_bar_features of its symbol), the
production version of its model from the registry, retrains with runner.optimize.retrain (or
chooses features with runner.optimize.selection), and records the outcome like the parameter
search does: an optimization_runs row, a model version (candidate when the gate passes, rejected
otherwise, always with its importances), and the events.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from datetime import time as day_time
from typing import Any

import numpy as np

from runner.audit import AuditTrail, Event
from runner.config import Settings
from runner.optimize import models, runs
from runner.optimize.features import load_features
from runner.optimize.retrain import RetrainConfig, RetrainResult, retrain
from runner.optimize.search import Outcome, SearchOptions
from runner.optimize.selection import FeatureImportance, outer_importances, select_features
from runner.optimize.targets import Target
from runner.optimize.versions import read_components
from runner.redact import redact
from runner.version import code_version
from runner.warehouse import Warehouse, connect
from runner.warehouse.migrations import migrate


def run_model_target(settings: Settings, target: Target, options: SearchOptions) -> Outcome:
    started = datetime.now(UTC)
    clock = time.monotonic()
    run_id = f"{target.task_type}_{started:%Y%m%dT%H%M%S}_{uuid.uuid4().hex[:8]}"
    end = None if options.as_of is None else datetime.combine(options.as_of, day_time.max)
    with connect(settings) as wh:
        migrate(wh)
        component = read_components(wh, target.component_id)[0]
        model_id = models.model_of(wh, component.component_id)
        if not models.uses_a_model(wh, component.component_id, component.strategy, model_id):
            return _no_model(wh, settings, target, run_id, started, component.strategy, model_id)
        production = models.production_version(wh, model_id)
        incumbent = None if production is None else models.as_incumbent(production)
        frame = load_features(wh, component.symbol, end=end)
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
                    "strategy": f"lightgbm:{model_id}",
                    "search_space": {"features": list(frame.feature_names)},
                    "objective": "log_loss",
                    "seed": options.seed,
                    "incumbent_version": None if production is None else production.version,
                    "data_start": _time(frame.t0[0]) if len(frame.t0) else None,
                    "data_end": _time(frame.t0[-1]) if len(frame.t0) else None,
                    "started_at": started,
                    "code_version": code_version(settings.project),
                },
            )
            AuditTrail(wh, run_id=run_id, secrets=settings.secrets()).record(
                [
                    Event(
                        event_type="optimization_started",
                        trigger_reason=target.trigger_reason,
                        metrics={
                            "run_id": run_id,
                            "task_type": target.task_type,
                            "model_id": model_id,
                            "incumbent_version": None if production is None else production.version,
                            "rows": len(frame.t0),
                        },
                        component_id=component.component_id,
                        recommendation_id=target.recommendation_id,
                        task_id=target.task_id,
                    )
                ]
            )

    config = RetrainConfig(seed=options.seed or 0)
    as_of = None if end is None else np.datetime64(end.replace(tzinfo=None), "us")
    importances: tuple[FeatureImportance, ...] = ()
    if target.task_type == "feature_selection":
        selected = select_features(frame, config=config, incumbent=incumbent, as_of=as_of)
        result: RetrainResult = selected.retrain
        importances = selected.importances
    else:
        result = retrain(frame, config=config, incumbent=incumbent, as_of=as_of)
        if result.model is not None:
            importances = outer_importances(frame, result, seed=config.seed)
    duration = time.monotonic() - clock
    verdict = result.verdict
    reasons = list(result.gate.reasons)
    gates: dict[str, Any] = {
        "model_id": model_id,
        "baseline": result.gate.baseline,
        **dict(result.gate.values),
        "dropped_features": dict(result.dropped_features),
    }
    baseline = result.baseline_metrics
    out_of_sample = {
        "candidate": result.metrics.to_dict(),
        "baseline": None if baseline is None else baseline.to_dict(),
    }
    with connect(settings) as wh, wh.transaction():
        version = models.register_version(
            wh,
            settings.artifacts,
            model_id=model_id,
            result=result,
            component_id=component.component_id,
            code_version=code_version(settings.project),
            optimization_run_id=run_id,
            parent_version=None if production is None else production.version,
        )
        if importances:
            models.write_importances(wh, model_id, version.version, importances)
        runs.finish_run(
            wh,
            run_id,
            verdict,
            reasons,
            {
                "candidate_version": version.version if result.passed else None,
                "n_trials": len(result.folds),
                "best_params": {**dict(result.params), "features": list(result.features)},
                "in_sample_metrics": {
                    "training_start": _time(result.training_start),
                    "training_end": _time(result.training_end),
                    "excluded_unresolved": result.excluded_unresolved,
                    "embargo": result.embargo,
                },
                "out_of_sample_metrics": out_of_sample,
                "gates": gates,
                "track_length": result.metrics.n,
                "duration_seconds": duration,
            },
        )
        sentence = (
            f"Model {model_id} version {version.version} passed the non-regression gate against "
            f"{result.gate.baseline}."
            if result.passed
            else f"Model {model_id} version {version.version} rejected: " + " ".join(reasons)
        )
        trail = AuditTrail(wh, run_id=run_id, secrets=settings.secrets())
        trail.record(
            [
                models.version_event(version, sentence, task_id=target.task_id),
                Event(
                    event_type="optimization_completed"
                    if result.passed
                    else "optimization_rejected",
                    trigger_reason=sentence,
                    metrics={
                        "run_id": run_id,
                        "task_type": target.task_type,
                        "model_id": model_id,
                        "model_version": version.version,
                        "verdict": verdict,
                        "gates": gates,
                        "out_of_sample": out_of_sample,
                        "features": list(result.features),
                    },
                    component_id=component.component_id,
                    recommendation_id=target.recommendation_id,
                    task_id=target.task_id,
                ),
            ]
        )
    return Outcome(
        run_id=run_id,
        component_id=component.component_id,
        verdict=verdict,
        reasons=tuple(reasons),
        study_name=run_id,
        trigger_reason=target.trigger_reason,
        incumbent_version=0 if production is None else production.version,
        candidate_version=version.version if result.passed else None,
        best_params={**dict(result.params), "features": list(result.features)},
        gates=gates,
        in_sample={"training_end": _time(result.training_end), "rows": len(result.window)},
        out_of_sample=out_of_sample,
        n_trials=len(result.folds),
        n_pruned=0,
        n_failed=0,
        duration_seconds=duration,
        task_type=target.task_type,
    )


def _no_model(
    wh: Warehouse,
    settings: Settings,
    target: Target,
    run_id: str,
    started: datetime,
    strategy: str,
    model_id: str,
) -> Outcome:
    """A recorded refusal, without training: a model the component does not trade could pass
    every gate and still change nothing it does."""
    what = "retrain" if target.task_type == "retrain" else "select features for"
    reason = (
        f"{target.component_id} runs {strategy}, which trades no model: none is mapped to it "
        f"in seeds/component_models.csv and {model_id} has no versions or predictions. There is "
        f"nothing to {what}; a parameter search or a person has to act on this recommendation."
    )
    row: dict[str, Any] = {
        "run_id": run_id,
        "component_id": target.component_id,
        "task_id": target.task_id,
        "recommendation_id": target.recommendation_id,
        "trigger_reason": redact(target.trigger_reason, settings.secrets()),
        "study_name": run_id,
        "storage_kind": "none",
        "strategy": strategy,
        "search_space": {},
        "objective": "log_loss",
        "started_at": started,
        "code_version": code_version(settings.project),
    }
    with wh.transaction():
        runs.start_run(wh, row)
        runs.finish_run(wh, run_id, "rejected", [reason], {"duration_seconds": 0.0})
        AuditTrail(wh, run_id=run_id, secrets=settings.secrets()).record(
            [
                Event(
                    event_type="optimization_rejected",
                    trigger_reason=reason,
                    metrics={"run_id": run_id, "task_type": target.task_type, "model_id": None},
                    component_id=target.component_id,
                    recommendation_id=target.recommendation_id,
                    task_id=target.task_id,
                )
            ]
        )
    return Outcome(
        run_id=run_id,
        component_id=target.component_id,
        verdict="rejected",
        reasons=(reason,),
        study_name=run_id,
        trigger_reason=target.trigger_reason,
        incumbent_version=0,
        candidate_version=None,
        best_params={},
        gates={},
        in_sample={},
        out_of_sample={},
        n_trials=0,
        n_pruned=0,
        n_failed=0,
        duration_seconds=0.0,
        task_type=target.task_type,
    )


def _time(value: Any) -> datetime | None:
    if value is None or (isinstance(value, np.datetime64) and np.isnat(value)):
        return None
    moment = np.datetime64(value, "us").item()
    return moment if isinstance(moment, datetime) else None
