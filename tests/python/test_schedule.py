"""SCHEDULE on both warehouses: declared tasks synced without losing runtime state, frequencies and
cron, priority order and budgets, leases that two PostgreSQL runners never share and that outlive
a killed runner only until they expire, the DuckDB lock, timeouts, the circuit breaker, the
recommendations' one-off tasks, the dry run, and the CLI.

Tasks run the real runner.optimize dispatch with a fast procedure put in place of the real ones
(`_procedure`): it logs each execution to a file (task, runner pid, child pid) and does what the
task's config says (mode ok, fail or hang).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from runner.audit import read_events
from runner.config import Settings
from runner.engine_tables import (
    OptimizationTask,
    insert_optimization_tasks,
    read_optimization_tasks,
)
from runner.errors import ConfigError
from runner.optimize import dispatch
from runner.optimize.search import Outcome, SearchOptions
from runner.optimize.targets import Target
from runner.schedule import (
    SchedulerBusy,
    add,
    add_recommendation_tasks,
    disable,
    enable,
    first_run_at,
    next_run_after,
    run_due,
    sync_tasks,
    validate_frequency,
)
from runner.schedule.queue import lock_path
from runner.schedule.tasks import read_declarations
from tests.python.scenarios import PROJECT_DIR, fresh_settings, open_warehouse
from tests.python.test_identify_events import recommendation, write_marts

pytestmark = pytest.mark.integration

HEADER = "task_id,task_type,component_id,frequency,priority,config,timeout_seconds,enabled\n"
PAST = datetime(2024, 1, 1, tzinfo=UTC)


# -- the fake procedure and the runner process ------------------------------------------------------
def _procedure(
    settings: Settings, target: Target, options: SearchOptions, progress: Any
) -> Outcome:
    """Log the execution, then do what the task's config (or TB_TEST_MODE) says."""
    config = target.config or {}
    mode = str(config.get("mode") or os.environ.get("TB_TEST_MODE", "ok"))
    with Path(os.environ["TB_TEST_LOG"]).open("a") as log:
        log.write(f"{target.task_id} {os.getppid()} {os.getpid()}\n")
    if mode == "hang":
        time.sleep(600)
    if mode == "fail":
        raise RuntimeError("the engine broke (postgresql://u:hunter2@db/x)")
    time.sleep(float(os.environ.get("TB_TEST_SLEEP", "0.05")))
    return Outcome(
        run_id=f"run_{target.task_id}",
        component_id=target.component_id,
        verdict="rejected",
        reasons=("a test procedure",),
        study_name="",
        trigger_reason=target.trigger_reason,
        incumbent_version=1,
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


def drive() -> None:
    """A `runner schedule …` process whose tasks run `_procedure` (the multi-process tests)."""
    import runner.cli as cli
    from runner.cli.schedule import schedule_app

    for name in dispatch.PROCEDURES:
        dispatch.PROCEDURES[name] = _procedure
    cli.app.add_typer(schedule_app, name="schedule")
    cli.main()


def _env(settings: Settings, log: Path, **extra: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "TB_TEST_LOG": str(log),
        "TRADEBASE_PROJECT_DIR": str(settings.project),
        "TRADEBASE_SCHEDULE_TASKS_FILE": str(settings.schedule_tasks_file),
        "TRADEBASE_SCHEDULE_LEASE_GRACE_SECONDS": str(settings.schedule_lease_grace_seconds),
        "TRADEBASE_ARTIFACT_DIR": str(settings.artifacts),
        "TRADEBASE_DUCKDB_PATH": str(settings.duckdb_file),
    }
    if settings.database_url is not None:
        env |= {
            "DATABASE_URL": settings.database_url.get_secret_value(),
            "TRADEBASE_SCHEMA": settings.schema,
        }
    return env | extra


def _runner(settings: Settings, log: Path, *args: str, **extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", "from tests.python.test_schedule import drive; drive()", *args],
        cwd=PROJECT_DIR,
        env=_env(settings, log, **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A terminal's runner hears Ctrl-C even when the suite itself was started in the
        # background of a script (which leaves SIGINT ignored, and children inherit that).
        preexec_fn=_hear_sigint,
    )


def _hear_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _executions(log: Path) -> list[tuple[str, int, int]]:
    if not log.exists():
        return []
    rows = [line.split() for line in log.read_text().splitlines() if line.strip()]
    return [(task, int(runner), int(child)) for task, runner, child in rows]


def _wait_for(predicate: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


# -- fixtures -------------------------------------------------------------------------------------
@pytest.fixture
def queue_settings(settings: Settings, tmp_path: Path) -> Settings:
    """A fresh warehouse of each kind, no declared tasks file yet, short leases."""
    return settings.model_copy(
        update={
            "schedule_tasks_file": tmp_path / "optimization_tasks.csv",
            "schedule_lease_grace_seconds": 1,
        }
    )


@pytest.fixture
def fake_tasks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Tasks run `_procedure` in this process's children; returns the execution log."""
    log = tmp_path / "executions.log"
    monkeypatch.setenv("TB_TEST_LOG", str(log))
    for name in list(dispatch.PROCEDURES):
        monkeypatch.setitem(dispatch.PROCEDURES, name, _procedure)
    return log


@pytest.fixture
def pg_settings(pg_url: str, tmp_path: Path) -> Iterator[Settings]:
    with fresh_settings("postgres", tmp_path, PROJECT_DIR, pg_url) as settings:
        yield settings.model_copy(
            update={
                "schedule_tasks_file": tmp_path / "optimization_tasks.csv",
                "schedule_lease_grace_seconds": 1,
            }
        )


def _declare(settings: Settings, rows: Sequence[str]) -> None:
    assert settings.schedule_tasks_file is not None
    settings.schedule_tasks_file.write_text(HEADER + "".join(f"{r}\n" for r in rows))


def _insert(settings: Settings, *tasks: OptimizationTask) -> None:
    with open_warehouse(settings) as wh:
        insert_optimization_tasks(wh, tasks)


def _task(task_id: str, **changes: Any) -> OptimizationTask:
    values: dict[str, Any] = {
        "task_id": task_id,
        "task_type": "risk_adjustment",
        "component_id": "trend_spx",
        "frequency": "hourly",
        "next_run_at": PAST,
    }
    return OptimizationTask(**(values | changes))


def _row(settings: Settings, task_id: str) -> OptimizationTask:
    with open_warehouse(settings) as wh:
        (task,) = read_optimization_tasks(wh, task_id=task_id)
    return task


def _sql(settings: Settings, sql: str, params: Mapping[str, Any] | None = None) -> None:
    with open_warehouse(settings) as wh:
        wh.execute(sql, params)


def _events(settings: Settings, *types: str) -> list[Any]:
    with open_warehouse(settings) as wh:
        return read_events(wh, event_types=types)


def _make_due(settings: Settings, task_id: str) -> None:
    _sql(
        settings,
        "update optimization_queue set next_run_at = %(past)s where task_id = %(t)s",
        {"past": PAST, "t": task_id},
    )


# -- frequencies ----------------------------------------------------------------------------------
def _at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("frequency", "scheduled", "now", "expected"),
    [
        ("hourly", "2024-01-01 10:00", "2024-01-01 10:20", "2024-01-01 11:00"),
        # a run that overran: the missed 11:00 and 12:00 collapse into 13:00, no drift
        ("hourly", "2024-01-01 10:00", "2024-01-01 12:30", "2024-01-01 13:00"),
        ("daily", "2024-01-01 03:00", "2024-01-01 03:45", "2024-01-02 03:00"),
        ("weekly", "2024-01-01 03:00", "2024-01-01 09:00", "2024-01-08 03:00"),
        ("weekly", "2024-01-01 03:00", "2024-01-20 09:00", "2024-01-22 03:00"),
        # cron: Monday 03:00 UTC; */15: every quarter hour; @daily: midnight
        ("0 3 * * 1", "2024-01-01 03:00", "2024-01-01 03:10", "2024-01-08 03:00"),
        ("*/15 * * * *", "2024-01-01 10:00", "2024-01-01 10:07", "2024-01-01 10:15"),
        ("@daily", "2024-01-01 00:00", "2024-01-01 10:00", "2024-01-02 00:00"),
        ("0 3 * * 1", "2024-01-01 03:00", "2024-01-22 04:00", "2024-01-29 03:00"),
    ],
)
def test_next_run_steps_from_the_scheduled_time_and_cron_fires_on_its_schedule(
    frequency: str, scheduled: str, now: str, expected: str
) -> None:
    assert next_run_after(frequency, _at(scheduled), _at(now)) == _at(expected)


def test_first_run_is_at_once_for_intervals_and_at_the_next_fire_for_cron() -> None:
    now = _at("2024-01-03 10:30")  # a Wednesday
    assert first_run_at("hourly", now) == now
    assert first_run_at("once", now) == now
    assert first_run_at("0 3 * * 1", now) == _at("2024-01-08 03:00")
    # after a change of frequency: one step after the last run
    assert first_run_at("hourly", now, _at("2024-01-03 10:00")) == _at("2024-01-03 11:00")
    assert first_run_at("daily", now, _at("2024-01-01 10:00")) == _at("2024-01-02 10:00")
    naive = datetime(2024, 1, 3, 10, 30)  # taken as UTC
    assert first_run_at("hourly", naive) == now


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        (" Daily ", "daily"),
        ("HOURLY", "hourly"),
        ("0  3 * * 1", "0 3 * * 1"),
        ("@weekly", "@weekly"),
    ],
)
def test_frequencies_are_normalised(text: str, stored: str) -> None:
    assert validate_frequency(text) == stored


@pytest.mark.parametrize("text", ["every day", "61 * * * *", "* * * * * *", "", "@reboot"])
def test_a_bad_frequency_is_one_clear_line(text: str) -> None:
    with pytest.raises(ConfigError, match="cron expression with five fields") as caught:
        validate_frequency(text)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("t1,guess,trend_spx,daily,1,,,", r"line 2 \(t1\): task type 'guess'"),
        ("t1,retrain,trend_spx,sometimes,1,,,", r"line 2 \(t1\): Frequency 'sometimes'"),
        ("t1,retrain,trend_spx,daily,0,,,", "priority must be 1"),
        ('t1,retrain,trend_spx,daily,1,"{""params"": 3}",,', "config.params must be a list"),
        ("t1,retrain,trend_spx,daily,1,[1],,", "config must be a JSON object"),
        ("t1,retrain,trend_spx,daily,1,,0,", "timeout_seconds must be at least 1"),
        ("manual_x,retrain,trend_spx,daily,1,,,", "not start with manual_"),
        ("t1,retrain,,daily,1,,,", "component_id is empty"),
    ],
)
def test_a_bad_declaration_names_its_line(tmp_path: Path, row: str, message: str) -> None:
    path = tmp_path / "tasks.csv"
    path.write_text(HEADER + row + "\n")
    with pytest.raises(ConfigError, match=message):
        read_declarations(path)


def test_a_task_declared_twice_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tasks.csv"
    path.write_text(HEADER + "t1,retrain,a,daily,1,,,\nt1,retrain,b,daily,1,,,\n")
    with pytest.raises(ConfigError, match="line 3: task_id 't1' is declared twice"):
        read_declarations(path)


def test_the_committed_seed_declares_valid_tasks() -> None:
    declared = read_declarations(PROJECT_DIR / "seeds" / "optimization_tasks.csv")
    assert declared and all(d.component_id for d in declared)


# -- the sync -------------------------------------------------------------------------------------
def test_sync_updates_declared_fields_and_keeps_runtime_state(queue_settings: Settings) -> None:
    """A priority/config change keeps status, failures, last run and next run; a frequency
    change moves next run to one step after the last run; a second sync changes nothing."""
    settings = queue_settings
    _declare(
        settings,
        [
            't_a,hyperparameter,trend_spx,daily,3,"{""params"": [""stop_loss""]}",,',
            "t_b,retrain,trend_spx,weekly,3,,,",
        ],
    )
    first = sync_tasks(settings)
    assert first.added == ["t_a", "t_b"] and not first.updated
    last_run, next_run = _at("2024-03-01 10:00"), _at("2024-03-02 10:00")
    _sql(
        settings,
        "update optimization_queue set status = 'failed', consecutive_failures = 2,"
        " last_error = 'boom', last_run_at = %(last)s, next_run_at = %(next)s",
        {"last": last_run, "next": next_run},
    )
    _declare(
        settings,
        [
            't_a,hyperparameter,trend_spx,daily,1,"{""params"": [""take_profit""]}",600,',
            "t_b,retrain,trend_spx,hourly,3,,,",
        ],
    )
    second = sync_tasks(settings)
    assert second.updated == {
        "t_a": {
            "priority": [3, 1],
            "config": [{"params": ["stop_loss"]}, {"params": ["take_profit"]}],
            "timeout_seconds": [None, 600],
        },
        "t_b": {"frequency": ["weekly", "hourly"]},
    }
    a, b = _row(settings, "t_a"), _row(settings, "t_b")
    assert (a.priority, dict(a.config), a.timeout_seconds) == (1, {"params": ["take_profit"]}, 600)
    for task in (a, b):
        assert (task.status, task.consecutive_failures, task.last_error) == ("failed", 2, "boom")
        assert task.last_run_at == last_run and task.enabled
    assert a.next_run_at == next_run  # frequency unchanged: next run kept
    assert b.next_run_at == last_run + timedelta(hours=1)
    assert [e.task_id for e in _events(settings, "task_updated")] == ["t_a", "t_b"]
    third = sync_tasks(settings)
    assert not third.changed and third.unchanged == 2


def test_sync_disables_what_disappears_and_only_reopens_what_it_closed(
    queue_settings: Settings,
) -> None:
    """Removed → disabled (row kept), re-declared → enabled again; a person's disable survives
    removal and re-declaration; enabled=false disables, and `enable` refuses it; tasks of
    `schedule add` are not the sync's."""
    settings = queue_settings
    rows = [f"t_{x},risk_adjustment,trend_spx,daily,3,,," for x in "abc"]
    _declare(settings, rows)
    sync_tasks(settings)
    manual = add(settings, task_type="retrain", component_id="trend_spx", frequency="daily")
    disable(settings, "t_b")  # a person
    _declare(settings, [rows[2].replace(",,,", ",,,false")])
    report = sync_tasks(settings)
    assert sorted(report.disabled) == ["t_a", "t_c"]  # t_b was already off
    assert [_row(settings, i).enabled for i in ("t_a", "t_b", "t_c")] == [False, False, False]
    assert _row(settings, "t_a").status == "paused"
    assert _row(settings, manual.task_id).enabled
    with pytest.raises(ConfigError, match="enabled=false"):
        enable(settings, "t_c")
    _declare(settings, rows)
    back = sync_tasks(settings)
    assert sorted(back.enabled) == ["t_a", "t_c"]
    assert [_row(settings, i).enabled for i in ("t_a", "t_b", "t_c")] == [True, False, True]
    bys = [(e.task_id, e.metrics["by"]) for e in _events(settings, "task_disabled")]
    assert sorted(bys) == [("t_a", "removed"), ("t_b", "person"), ("t_c", "declaration")]
    enable(settings, "t_b")
    assert _row(settings, "t_b").enabled


def test_without_a_tasks_file_the_sync_changes_nothing(queue_settings: Settings) -> None:
    _insert(queue_settings, _task("t_a"))
    report = sync_tasks(queue_settings)
    assert not report.changed and "does not exist" in report.notes[0]
    assert _row(queue_settings, "t_a").enabled


# -- running due tasks --------------------------------------------------------------------------------
def test_due_tasks_run_most_urgent_first_and_reschedule_without_drift(
    queue_settings: Settings, fake_tasks: Path
) -> None:
    settings = queue_settings
    later = PAST + timedelta(minutes=5)
    _insert(
        settings,
        _task("t_low", priority=3),
        _task("t_urgent_late", priority=1, next_run_at=later),
        _task("t_urgent", priority=1),
        _task("t_mid", priority=2, frequency="daily"),
        _task("t_future", priority=1, next_run_at=datetime.now(UTC) + timedelta(hours=1)),
        _task("t_off", priority=1, enabled=False),
    )
    report = run_due(settings)
    order = ["t_urgent", "t_urgent_late", "t_mid", "t_low"]
    assert [r.task_id for r in report.runs] == order
    assert [t for t, _, _ in _executions(fake_tasks)] == order
    assert report.stopped == "no_due_tasks" and report.summary() == "Ran 4 task(s): 4 succeeded."
    mid = _row(settings, "t_mid")
    assert mid.status == "succeeded" and mid.lease_owner is None and mid.last_run_at is not None
    assert mid.next_run_at > datetime.now(UTC) and mid.next_run_at.time() == PAST.time()
    started = _events(settings, "task_started", "task_succeeded")
    assert Counter(e.event_type for e in started) == {"task_started": 4, "task_succeeded": 4}
    assert run_due(settings).runs == []


def test_a_spent_budget_starts_no_further_task(
    queue_settings: Settings, fake_tasks: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TB_TEST_SLEEP", "0.3")
    _insert(queue_settings, _task("t_1", priority=1), _task("t_2", priority=2))
    report = run_due(queue_settings, budget_seconds=0.2)
    assert [r.task_id for r in report.runs] == ["t_1"] and report.stopped == "budget_spent"
    assert _row(queue_settings, "t_2").status == "pending"


def test_component_filter_runs_only_that_components_tasks(
    queue_settings: Settings, fake_tasks: Path
) -> None:
    _insert(queue_settings, _task("t_a"), _task("t_b", component_id="meanrev_ndx"))
    report = run_due(queue_settings, component="meanrev_ndx")
    assert [r.task_id for r in report.runs] == ["t_b"]


def test_five_failures_open_the_circuit_breaker_and_enable_resets_it(
    queue_settings: Settings, fake_tasks: Path
) -> None:
    """Each failure counts (error redacted); the fifth disables the task with a critical
    circuit_breaker_opened event; enable resets the count and turns it back on."""
    settings = queue_settings
    _insert(settings, _task("t_bad", config={"mode": "fail"}))
    for attempt in range(1, 6):
        (run,) = run_due(settings).runs
        assert run.status == "failed" and run.consecutive_failures == attempt
        assert run.circuit_breaker_opened == (attempt == 5)
        task = _row(settings, "t_bad")
        assert task.consecutive_failures == attempt and task.enabled == (attempt < 5)
        _make_due(settings, "t_bad")
    assert task.status == "paused" and task.last_error is not None
    assert "hunter2" not in task.last_error and "RuntimeError: the engine broke" in task.last_error
    failed = _events(settings, "task_failed")
    assert [e.metrics["consecutive_failures"] for e in failed] == [1, 2, 3, 4, 5]
    assert all("hunter2" not in json.dumps(e.metrics) + e.trigger_reason for e in failed)
    (opened,) = _events(settings, "circuit_breaker_opened")
    assert opened.task_id == "t_bad" and opened.metrics["severity"] == "critical"
    assert "runner schedule enable t_bad" in opened.trigger_reason
    assert run_due(settings).runs == []  # disabled: not run although due
    enabled = enable(settings, "t_bad")
    assert enabled.enabled and enabled.consecutive_failures == 0 and enabled.status == "pending"
    (event,) = _events(settings, "task_enabled")
    assert event.metrics["consecutive_failures_reset"] == 5


def test_a_success_resets_the_failure_count(queue_settings: Settings, fake_tasks: Path) -> None:
    settings = queue_settings
    _insert(settings, _task("t_flaky", config={"mode": "fail"}))
    for _ in range(2):
        run_due(settings)
        _make_due(settings, "t_flaky")
    assert _row(settings, "t_flaky").consecutive_failures == 2
    _sql(settings, 'update optimization_queue set config = \'{"mode": "ok"}\'')
    (run,) = run_due(settings).runs
    task = _row(settings, "t_flaky")
    assert run.status == "succeeded"
    assert (task.consecutive_failures, task.last_error, task.status) == (0, None, "succeeded")
    (event,) = _events(settings, "task_succeeded")
    assert event.metrics["consecutive_failures_reset"] == 2


def test_a_task_over_its_timeout_is_stopped_and_counts_as_a_failure(
    queue_settings: Settings, fake_tasks: Path
) -> None:
    settings = queue_settings
    _insert(settings, _task("t_slow", config={"mode": "hang"}, timeout_seconds=1))
    clock = time.monotonic()
    (run,) = run_due(settings).runs
    assert time.monotonic() - clock < 10
    assert run.status == "timed_out" and "timed out after 1 s" in (run.error or "")
    ((_, _, child),) = _executions(fake_tasks)
    _wait_for(lambda: not _alive(child), 5, "the stopped task's process to end")
    task = _row(settings, "t_slow")
    assert (task.status, task.consecutive_failures, task.lease_owner) == ("failed", 1, None)
    (failed,) = _events(settings, "task_failed")
    assert failed.metrics["timed_out"] is True and failed.metrics["timeout_seconds"] == 1


def test_recommendations_become_one_off_tasks_retried_only_after_an_interval(
    queue_settings: Settings, fake_tasks: Path
) -> None:
    settings = queue_settings
    risk = recommendation("rec_risk", "meanrev_ndx", priority=1) | {
        "recommendation_type": "risk_adjustment"
    }
    with open_warehouse(settings) as wh:
        write_marts(wh, [], [recommendation("rec_tune", priority=2), risk])
    added = add_recommendation_tasks(settings)
    assert added == ["rec_rec_risk", "rec_rec_tune"]
    tune = _row(settings, "rec_rec_tune")
    assert (tune.source, tune.recommendation_id, tune.priority) == ("recommendation", "rec_tune", 2)
    assert tune.one_off and tune.frequency == "once" and tune.next_run_at <= datetime.now(UTC)
    assert add_recommendation_tasks(settings) == []
    report = run_due(settings)
    assert [r.task_id for r in report.runs] == ["rec_rec_risk", "rec_rec_tune"]
    for task_id in added:
        task = _row(settings, task_id)
        assert (task.enabled, task.status) == (False, "succeeded")
    assert add_recommendation_tasks(settings) == []  # ran; not again within the retry interval
    events = _events(settings, "task_added")
    assert [e.recommendation_id for e in events] == ["rec_risk", "rec_tune"]
    assert run_due(settings).runs == []
    # Still open once the interval has passed: the data has grown, it is looked at again.
    again = settings.model_copy(update={"schedule_recommendation_retry_hours": 0.0})
    assert add_recommendation_tasks(again) == ["rec_rec_risk_2", "rec_rec_tune_2"]
    assert add_recommendation_tasks(again) == []  # one waiting task per recommendation
    assert [r.task_id for r in run_due(again).runs] == ["rec_rec_risk_2", "rec_rec_tune_2"]


def test_a_recommendations_task_searches_what_the_declared_task_of_its_type_searches(
    queue_settings: Settings, fake_tasks: Path
) -> None:
    settings = queue_settings
    _declare(
        settings,
        [
            't_tune,hyperparameter,trend_spx,"0 6 * * 1",3,"{""params"": [""fast""]}",,true,',
            "t_risk,risk_adjustment,meanrev_ndx,weekly,3,,,true,",
        ],
    )
    risk = recommendation("rec_risk", "meanrev_ndx") | {"recommendation_type": "risk_adjustment"}
    with open_warehouse(settings) as wh:
        write_marts(wh, [], [recommendation("rec_tune"), risk])
    assert add_recommendation_tasks(settings) == ["rec_rec_risk", "rec_rec_tune"]
    assert dict(_row(settings, "rec_rec_tune").config) == {"params": ["fast"]}
    assert dict(_row(settings, "rec_rec_risk").config) == {}  # its declared task has none


def test_a_dry_run_decides_and_writes_nothing(queue_settings: Settings, fake_tasks: Path) -> None:
    settings = queue_settings
    _insert(settings, _task("t_due"), _task("t_later", next_run_at=PAST + timedelta(days=9999)))
    _declare(settings, ["t_new,retrain,trend_spx,daily,1,,,"])
    with open_warehouse(settings) as wh:
        write_marts(wh, [], [recommendation("rec_tune")])
        before = (
            wh.fetchall("select * from optimization_queue order by task_id"),
            wh.fetchall("select count(*) from improvement_events"),
        )
    report = run_due(settings, dry_run=True, sync=True)
    assert report.dry_run and [r.task_id for r in report.runs] == ["t_due"]
    assert report.runs[0].status == "planned"
    assert report.sync is not None and report.sync.added == ["t_new"]
    assert report.recommendation_tasks == ["rec_rec_tune"]
    assert report.summary() == "Dry run: 1 task(s) due: t_due."
    with open_warehouse(settings) as wh:
        after = (
            wh.fetchall("select * from optimization_queue order by task_id"),
            wh.fetchall("select count(*) from improvement_events"),
        )
    assert after == before
    assert _executions(fake_tasks) == []
    assert not lock_path(settings).exists()


# -- several runners ----------------------------------------------------------------------------------
@pytest.mark.postgres
def test_two_runners_on_postgres_run_each_of_40_tasks_exactly_once(
    pg_settings: Settings, tmp_path: Path
) -> None:
    """Two `runner schedule run-due` processes start together on 40 declared due tasks: both
    sync (one adds them), both run tasks, and every task runs exactly once."""
    settings = pg_settings
    task_ids = [f"t_{i:02d}" for i in range(40)]
    _declare(
        settings,
        [f"{t},risk_adjustment,trend_spx,hourly,{1 + i % 3},,," for i, t in enumerate(task_ids)],
    )
    log = tmp_path / "executions.log"
    runners = [_runner(settings, log, "schedule", "run-due", "--json") for _ in range(2)]
    outputs = [r.communicate(timeout=300) for r in runners]
    for runner, (_, err) in zip(runners, outputs, strict=True):
        assert runner.returncode == 0, err
    executions = _executions(log)
    assert Counter(t for t, _, _ in executions) == Counter(task_ids)
    by_runner = Counter(pid for _, pid, _ in executions)
    assert set(by_runner) == {r.pid for r in runners}, by_runner  # both did work
    reports = [json.loads(out) for out, _ in outputs]
    assert sorted(run["task_id"] for rep in reports for run in rep["runs"]) == task_ids
    with open_warehouse(settings) as wh:
        tasks = read_optimization_tasks(wh)
        counts = Counter(e.event_type for e in read_events(wh))
    assert {t.status for t in tasks} == {"succeeded"} and {t.lease_owner for t in tasks} == {None}
    assert counts["task_added"] == 40 and counts["task_started"] == 40
    assert counts["task_succeeded"] == 40 and counts["task_lease_taken_over"] == 0


def test_a_killed_runners_lease_is_taken_over_after_it_expires(
    queue_settings: Settings, fake_tasks: Path
) -> None:
    """SIGKILL a runner mid-task: its task process dies with it and the row stays leased. On
    PostgreSQL another runner leaves it until the lease expires, then takes it over (with an
    event); on DuckDB the lock died with the runner, so the next runner takes it over at once."""
    settings = queue_settings
    _insert(settings, _task("t_hang", config={"mode": "hang"}, timeout_seconds=5))
    first = _runner(settings, fake_tasks, "schedule", "run-due")
    _wait_for(lambda: _executions(fake_tasks), 60, "the first runner to start the task")
    ((_, runner_pid, child),) = _executions(fake_tasks)
    assert runner_pid == first.pid
    os.kill(first.pid, signal.SIGKILL)
    first.communicate(timeout=30)
    _wait_for(lambda: not _alive(child), 5, "the task's process to die with its runner")
    leased = _row(settings, "t_hang")
    assert leased.status == "running" and leased.lease_owner is not None
    assert f":{first.pid}:" in leased.lease_owner
    _sql(settings, 'update optimization_queue set config = \'{"mode": "ok"}\'')
    if settings.dialect == "postgres":
        assert run_due(settings).runs == []  # the lease (5 s + 1 s grace) still holds
        assert leased.lease_expires_at is not None
        _wait_for(
            lambda: datetime.now(UTC) > leased.lease_expires_at + timedelta(seconds=0.2),  # type: ignore[operator]
            30,
            "the lease to expire",
        )
    (run,) = run_due(settings).runs
    assert run.status == "succeeded" and run.took_over_from == leased.lease_owner
    (event,) = _events(settings, "task_lease_taken_over")
    assert event.task_id == "t_hang" and event.metrics["previous_owner"] == leased.lease_owner
    assert _row(settings, "t_hang").lease_owner is None
    assert [t for t, _, _ in _executions(fake_tasks)] == ["t_hang", "t_hang"]


def test_an_interrupted_runner_gives_its_task_back_at_once(
    queue_settings: Settings, fake_tasks: Path
) -> None:
    """Ctrl-C (SIGINT) on a runner mid-task: the task's process is stopped, the lease freed at
    once with a task_interrupted event, and no failure is counted."""
    settings = queue_settings
    _insert(settings, _task("t_hang", config={"mode": "hang"}, timeout_seconds=60))
    runner = _runner(settings, fake_tasks, "schedule", "run-due")
    _wait_for(lambda: _executions(fake_tasks), 60, "the runner to start the task")
    ((_, _, child),) = _executions(fake_tasks)
    runner.send_signal(signal.SIGINT)
    runner.communicate(timeout=60)
    assert not _alive(child)
    task = _row(settings, "t_hang")
    assert (task.status, task.lease_owner, task.consecutive_failures) == ("pending", None, 0)
    assert [e.task_id for e in _events(settings, "task_interrupted")] == ["t_hang"]
    assert _events(settings, "task_failed") == []


def test_a_second_duckdb_runner_exits_with_a_clear_message(
    tmp_path: Path, fake_tasks: Path
) -> None:
    """While one run-due holds the DuckDB lock, a second exits 1 naming the holder, runs nothing."""
    with fresh_settings("duckdb", tmp_path, PROJECT_DIR) as base:
        settings = base.model_copy(update={"schedule_tasks_file": tmp_path / "none.csv"})
        _insert(settings, _task("t_hang", config={"mode": "hang"}, timeout_seconds=60))
        first = _runner(settings, fake_tasks, "schedule", "run-due")
        try:
            _wait_for(lambda: _executions(fake_tasks), 60, "the first runner to start the task")
            second = _runner(settings, fake_tasks, "schedule", "run-due")
            out, err = second.communicate(timeout=60)
            assert second.returncode == 1, out + err
            message = " ".join(err.split())
            assert "Traceback" not in err
            assert (
                "Another `runner schedule run-due` is running on this DuckDB warehouse" in message
            )
            assert f"pid {first.pid}" in message
            with pytest.raises(SchedulerBusy):
                run_due(settings, dry_run=True)
        finally:
            first.kill()
            first.communicate(timeout=30)
        assert len(_executions(fake_tasks)) == 1


# -- the CLI --------------------------------------------------------------------------------------
def _cli(settings: Settings, *args: str) -> Any:
    from runner.cli.schedule import schedule_app

    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """A stand-in for `runner` until the schedule group is registered."""

    app.add_typer(schedule_app, name="schedule")
    return CliRunner().invoke(app, ["schedule", *args], obj=settings, terminal_width=200)


def test_the_cli_lists_adds_switches_and_runs_tasks(
    queue_settings: Settings, fake_tasks: Path
) -> None:
    settings = queue_settings
    _declare(settings, ["t_decl,risk_adjustment,trend_spx,hourly,2,,,"])
    listed = _cli(settings, "list", "--json")
    assert listed.exit_code == 0, listed.output
    payload = json.loads(listed.output)
    assert payload["sync"]["added"] == ["t_decl"]
    assert [t["task_id"] for t in payload["tasks"]] == ["t_decl"]

    bad = _cli(settings, "add", "--type", "retrain", "-c", "trend_spx", "--frequency", "soon")
    assert isinstance(bad.exception, ConfigError) and "cron expression" in str(bad.exception)
    bad_json = _cli(
        settings, "add", "--type", "retrain", "-c", "trend_spx", "--frequency", "daily",
        "--config", "{nope",
    )  # fmt: skip
    assert isinstance(bad_json.exception, ConfigError) and "not JSON" in str(bad_json.exception)

    added = _cli(
        settings, "add", "--type", "hyperparameter", "-c", "trend_spx", "--frequency",
        "0 3 * * 1", "--priority", "1", "--config", '{"params": ["stop_loss"]}',
        "--timeout", "120", "--json",
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    task = json.loads(added.output)
    assert task["task_id"].startswith("manual_trend_spx_hyperparameter_")
    assert (task["frequency"], task["priority"], task["timeout_seconds"]) == ("0 3 * * 1", 1, 120)
    assert task["config"] == {"params": ["stop_loss"]}

    assert _cli(settings, "disable", "t_decl").exit_code == 0
    shown = _cli(settings, "list")
    assert shown.exit_code == 0 and "Optimization tasks" in shown.output
    listed_after = json.loads(_cli(settings, "list", "--json").output)["tasks"]
    assert [(t["task_id"][:7], t["enabled"]) for t in listed_after] == [
        ("manual_", True),
        ("t_decl", False),
    ]
    assert "Enabled t_decl" in _cli(settings, "enable", "t_decl").output
    missing = _cli(settings, "enable", "nope")
    assert isinstance(missing.exception, ConfigError)

    dry = _cli(settings, "run-due", "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    plan = json.loads(dry.output)
    assert plan["dry_run"] and [r["task_id"] for r in plan["runs"]] == ["t_decl"]
    ran = _cli(settings, "run-due")
    assert ran.exit_code == 0, ran.output
    assert "Ran 1 task(s): 1 succeeded." in ran.output
    assert "Example:" in _cli(settings, "--help").output
    for command in ("list", "add", "enable", "disable", "run-due"):
        assert "Example:" in _cli(settings, command, "--help").output


def test_run_due_exits_1_when_a_task_failed(queue_settings: Settings, fake_tasks: Path) -> None:
    _insert(queue_settings, _task("t_bad", config={"mode": "fail"}))
    result = _cli(queue_settings, "run-due")
    assert result.exit_code == 1 and "1 failed" in result.output
