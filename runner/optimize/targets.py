"""What OPTIMIZE works on: a queued task, the open recommendations, or a component by name.

Each target names its task type (hyperparameter, retrain, feature_selection, risk_adjustment);
runner.optimize dispatches it to the procedure of that type.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, get_args

from runner.engine_tables import TaskType
from runner.errors import ConfigError
from runner.identify import latest_recommendations
from runner.warehouse import Warehouse

TASK_TYPES: tuple[str, ...] = get_args(TaskType)


@dataclass(frozen=True)
class Target:
    """One component to optimize and why."""

    component_id: str
    trigger_reason: str
    task_type: TaskType = "hyperparameter"
    recommendation_id: str | None = None
    task_id: str | None = None
    search: tuple[str, ...] | None = None  # hyperparameter: None searches every parameter
    config: dict[str, Any] | None = None  # the task's config, as declared


def _task_target(wh: Warehouse, task_id: str, component: str | None) -> Target:
    row = wh.fetchone(
        "select task_type, component_id, config, priority from optimization_queue"
        " where task_id = %(t)s",
        {"t": task_id},
    )
    if row is None:
        raise ConfigError(f"No task {task_id!r} in optimization_queue (see `runner status`).")
    task_type, task_component, config_text, priority = row
    chosen = component or task_component
    if chosen is None:
        raise ConfigError(f"Task {task_id!r} names no component; pass --component.")
    try:
        config = json.loads(config_text or "{}")
    except json.JSONDecodeError as exc:
        raise ConfigError(f"Task {task_id!r}: config is not JSON ({exc.msg}).") from exc
    if not isinstance(config, dict):
        raise ConfigError(f"Task {task_id!r}: config must be a JSON object.")
    names = config.get("params")
    if names is not None and not (
        isinstance(names, list) and all(isinstance(n, str) for n in names)
    ):
        raise ConfigError(f"Task {task_id!r}: config.params must be a list of parameter names.")
    return Target(
        component_id=chosen,
        trigger_reason=f"Task {task_id} ({task_type}, priority {priority}).",
        task_type=task_type,
        task_id=task_id,
        search=tuple(names) if names else None,
        config=config,
    )


def choose_targets(
    wh: Warehouse,
    component: str | None,
    task_id: str | None,
    task_types: tuple[str, ...] = TASK_TYPES,
) -> list[Target]:
    """A named task; else the open recommendations of `task_types` (the mart keeps at most one
    per component and type; most urgent first); else, for a named component with no
    recommendation, a manual hyperparameter run."""
    if task_id is not None:
        return [_task_target(wh, task_id, component)]
    targets = [
        Target(
            component_id=rec.component_id,
            trigger_reason=f"Recommendation {rec.recommendation_id} (priority {rec.priority}): {rec.reason}",
            task_type=rec.recommendation_type,  # type: ignore[arg-type]  # checked by the filter
            recommendation_id=rec.recommendation_id,
        )
        for rec in latest_recommendations(wh)
        if rec.recommendation_type in task_types
        and rec.component_id is not None
        and (component is None or rec.component_id == component)
    ]
    if not targets and component is not None:
        targets = [Target(component, f"Requested by the user for {component}.")]
    return targets
