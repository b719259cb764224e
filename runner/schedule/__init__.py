"""SCHEDULE: the optimization queue. Declared tasks are synced from the repository, recommendations
add one-off tasks, and `run_due` runs what is due in priority order, leased so that no two runners
run one task, each under a timeout, behind a circuit breaker (docs/scheduling.md).
"""

from runner.schedule.queue import (
    RunDueReport,
    SchedulerBusy,
    TaskRun,
    run_due,
)
from runner.schedule.tasks import (
    SyncReport,
    add,
    add_recommendation_tasks,
    disable,
    enable,
    first_run_at,
    list_tasks,
    next_run_after,
    sync_tasks,
    validate_frequency,
)

__all__ = [
    "RunDueReport",
    "SchedulerBusy",
    "SyncReport",
    "TaskRun",
    "add",
    "add_recommendation_tasks",
    "disable",
    "enable",
    "first_run_at",
    "list_tasks",
    "next_run_after",
    "run_due",
    "sync_tasks",
    "validate_frequency",
]
