"""OPTIMIZE's entry point: choose the targets, run each with the procedure of its task type."""

from __future__ import annotations

from collections.abc import Callable

from runner.config import Settings
from runner.errors import ConfigError
from runner.optimize.adjust import run_risk_target
from runner.optimize.retraining import run_model_target
from runner.optimize.search import Outcome, Progress, SearchOptions, run_target
from runner.optimize.targets import Target, choose_targets
from runner.warehouse import connect
from runner.warehouse.migrations import migrate

Procedure = Callable[[Settings, Target, SearchOptions, Progress | None], Outcome]


def _hyperparameter(
    settings: Settings, target: Target, options: SearchOptions, progress: Progress | None
) -> Outcome:
    return run_target(settings, target, options, progress)


def _risk(
    settings: Settings, target: Target, options: SearchOptions, _: Progress | None
) -> Outcome:
    return run_risk_target(settings, target, options)


def _model(
    settings: Settings, target: Target, options: SearchOptions, _: Progress | None
) -> Outcome:
    return run_model_target(settings, target, options)


PROCEDURES: dict[str, Procedure] = {
    "hyperparameter": _hyperparameter,
    "retrain": _model,
    "feature_selection": _model,
    "risk_adjustment": _risk,
}


def optimize(
    settings: Settings,
    *,
    component: str | None = None,
    task_id: str | None = None,
    options: SearchOptions = SearchOptions(),  # noqa: B008 - frozen
    progress: Progress | None = None,
) -> list[Outcome]:
    """Run every chosen target in turn; an empty list when there is nothing to do."""
    with connect(settings) as wh:
        migrate(wh)
        targets = choose_targets(wh, component, task_id, task_types=tuple(PROCEDURES))
    for target in targets:
        if target.task_type not in PROCEDURES:
            raise ConfigError(
                f"Task {target.task_id!r} is a {target.task_type} task, which this runner cannot "
                f"run (it runs {', '.join(PROCEDURES)})."
            )
    return [PROCEDURES[target.task_type](settings, target, options, progress) for target in targets]
