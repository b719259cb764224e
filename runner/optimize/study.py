"""The Optuna study behind a search: its storage, its objective and the processes that run it.

Storage: SQLite beside the DuckDB file (one machine, several processes), or Optuna's RDB storage
inside the PostgreSQL warehouse, in its own schema `<schema>_optuna`, so workers on other
machines can join with `runner optimize --join STUDY`. Both are RDB storages, so heartbeats work:
a worker killed mid-trial leaves a RUNNING trial that the next worker (or the coordinator, after
the grace period) marks FAIL instead of leaving it running forever.

Everything a worker needs is in the study's `spec` user attribute; a joining worker rebuilds the
same objective from it and the warehouse's bars.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import numpy as np
from numpy.typing import NDArray

from runner.backtest import Costs
from runner.config import Settings
from runner.optimize.space import searched_params, suggest
from runner.optimize.walkforward import Objective, WalkForwardPlan, evaluate
from runner.strategies import Bars, Param, Strategy, load_strategy

if TYPE_CHECKING:
    import optuna

# A complete trial's walk-forward result: daily P&L on the grid, fold scores, trades.
RESULT_ATTR = "walk_forward"
# Pruning compares fold scores with the best trial's (paired); 0.1 as Optuna recommends.
PRUNE_P_THRESHOLD = 0.1


@dataclass(frozen=True)
class StudySpec:
    """What defines a search; stored on the study so that any worker can rebuild it."""

    study_name: str
    run_id: str
    component_id: str
    strategy: str
    symbol: str
    fixed_params: Mapping[str, Any]
    search: tuple[str, ...]
    objective: Objective
    periods_per_year: int
    folds: int
    holdout_fraction: float
    fees_bps: float
    slippage_bps: float
    data_start: str
    data_end: str
    n_trials: int
    seed: int | None = None

    def to_json(self) -> dict[str, Any]:
        value = asdict(self)
        value["fixed_params"] = dict(self.fixed_params)
        value["search"] = list(self.search)
        return value

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> StudySpec:
        return cls(**{**value, "search": tuple(value["search"])})


@dataclass(frozen=True)
class SearchContext:
    """A spec made runnable: the strategy, the bars and the walk-forward plan."""

    spec: StudySpec
    strategy: Strategy
    bars: Bars
    plan: WalkForwardPlan
    space: tuple[Param, ...] = field(default=())

    @classmethod
    def build(cls, spec: StudySpec, bars: Bars) -> SearchContext:
        strategy = load_strategy(spec.strategy)
        plan = WalkForwardPlan.build(bars, spec.folds, spec.holdout_fraction)
        return cls(spec, strategy, bars, plan, searched_params(strategy, spec.search or None))

    @property
    def costs(self) -> Costs:
        return Costs(fees_bps=self.spec.fees_bps, slippage_bps=self.spec.slippage_bps)


@dataclass(frozen=True)
class StorageConfig:
    url: str
    kind: str  # sqlite | postgres | custom
    heartbeat_seconds: int
    grace_seconds: int


def storage_config(settings: Settings, override: str | None = None) -> StorageConfig:
    """Where studies live: an explicit URL, SQLite beside the DuckDB file, or the PG warehouse."""
    beat, grace = settings.optimize_heartbeat_seconds, settings.optimize_grace_seconds
    explicit = override or (
        settings.optimize_storage_url.get_secret_value() if settings.optimize_storage_url else None
    )
    if explicit:
        return StorageConfig(explicit, "custom", beat, grace)
    if settings.dialect == "duckdb":
        path = settings.duckdb_file.with_name(settings.duckdb_file.name + ".optuna.sqlite")
        return StorageConfig(f"sqlite:///{path}", "sqlite", beat, grace)
    pg = settings.postgres
    options = quote(f"-csearch_path={optuna_schema(settings)}", safe="")
    url = (
        f"postgresql+psycopg://{quote(pg.user, safe='')}:{quote(pg.password, safe='')}"
        f"@{pg.host}:{pg.port}/{quote(pg.dbname, safe='')}?options={options}"
    )
    return StorageConfig(url, "postgres", beat, grace)


def optuna_schema(settings: Settings) -> str:
    """Optuna's 13 tables and 4 enum types stay out of the engine's schema (pitfalls.md)."""
    return f"{settings.schema}_optuna"


def open_storage(config: StorageConfig) -> optuna.storages.RDBStorage:
    import optuna
    from sqlalchemy.exc import IntegrityError, ProgrammingError
    from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_fixed

    engine_kwargs: dict[str, Any] = {}
    if config.url.startswith("sqlite"):
        # Several worker processes write one file: wait for the lock instead of failing.
        engine_kwargs["connect_args"] = {"timeout": 60}
    else:
        engine_kwargs["pool_pre_ping"] = True
    # Two processes creating the storage's tables and enum types at once (a coordinator and a
    # joining worker on a new schema) collide on the catalog; the loser finds them made and
    # succeeds on retry.
    for attempt in Retrying(
        retry=retry_if_exception_type((IntegrityError, ProgrammingError)),
        stop=stop_after_attempt(4),
        wait=wait_fixed(0.5),
        reraise=True,
    ):
        with attempt, _experimental_ok():
            return optuna.storages.RDBStorage(
                config.url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=config.heartbeat_seconds,
                grace_period=config.grace_seconds,
            )
    raise AssertionError("unreachable: Retrying re-raises the last error")


@contextmanager
def _experimental_ok() -> Iterator[None]:
    """Heartbeats and the Wilcoxon pruner are marked experimental; we rely on them knowingly."""
    from optuna.exceptions import ExperimentalWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        yield


def _quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


def create_study(context: SearchContext, storage: optuna.storages.RDBStorage) -> optuna.Study:
    import optuna

    _quiet_optuna()
    study = optuna.create_study(
        study_name=context.spec.study_name,
        storage=storage,
        direction="maximize",
        load_if_exists=True,
    )
    study.set_user_attr("spec", context.spec.to_json())
    study.set_user_attr("grid", [str(d) for d in _grid(context)])
    return study


def _grid(context: SearchContext) -> NDArray[np.datetime64]:
    days = context.bars.time[context.plan.folds[0].start : context.plan.search_stop]
    return np.unique(days.astype("datetime64[D]"))


def load_spec(storage: optuna.storages.RDBStorage, study_name: str) -> StudySpec:
    import optuna

    _quiet_optuna()
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError as exc:
        from runner.errors import ConfigError

        raise ConfigError(f"No study named {study_name!r} in the Optuna storage.") from exc
    return StudySpec.from_json(study.user_attrs["spec"])


def objective_for(context: SearchContext) -> Callable[[optuna.Trial], float]:
    """The objective: mean walk-forward fold score; folds reported for Wilcoxon pruning; the
    trial's daily P&L on the grid kept as a user attribute (the gates need every trial's)."""
    import optuna

    spec = context.spec

    def objective(trial: optuna.Trial) -> float:
        # Which process ran the trial: how a killed worker's trial is traced (set before work).
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        params = suggest(trial, context.space, spec.fixed_params)
        problems = context.strategy.problems(params)
        if problems:
            # Not a look at the data: marked so the gates do not count it as a trial.
            trial.set_user_attr("infeasible", "; ".join(problems))
            raise optuna.TrialPruned()

        def after_fold(k: int, value: float) -> None:
            trial.report(value, k)
            if trial.should_prune():
                raise optuna.TrialPruned()

        result = evaluate(
            context.strategy,
            context.bars,
            params,
            context.plan,
            context.costs,
            spec.objective,
            spec.periods_per_year,
            after_fold=after_fold,
        )
        # One attribute, one storage commit (the storage, not the backtest, bounds trials/s).
        trial.set_user_attr(
            RESULT_ATTR,
            {
                "daily_returns": [float(x) for x in result.returns],
                "fold_scores": list(result.fold_scores),
                "n_trades": result.n_trades,
            },
        )
        return result.score

    return objective


def run_trials(
    context: SearchContext,
    storage_config: StorageConfig,
    *,
    timeout: float | None,
    worker: int = 0,
    callback: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None = None,
) -> None:
    """Run trials of the study in this process until the study has `n_trials` finished ones."""
    import optuna
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    _quiet_optuna()
    seed = None if context.spec.seed is None else context.spec.seed + worker
    with _experimental_ok():
        study = optuna.load_study(
            study_name=context.spec.study_name,
            storage=open_storage(storage_config),
            sampler=optuna.samplers.TPESampler(seed=seed),
            pruner=optuna.pruners.WilcoxonPruner(p_threshold=PRUNE_P_THRESHOLD),
        )
    callbacks: list[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]] = [
        MaxTrialsCallback(context.spec.n_trials, states=(TrialState.COMPLETE, TrialState.PRUNED))
    ]
    if callback is not None:
        callbacks.append(callback)
    if _finished(study) >= context.spec.n_trials:
        return
    study.optimize(
        objective_for(context),
        n_trials=context.spec.n_trials,  # the callback stops the shared total earlier
        timeout=timeout,
        callbacks=callbacks,
        catch=(ArithmeticError, ValueError),
        gc_after_trial=False,
    )


def _finished(study: optuna.Study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def _worker_main(
    spec: dict[str, Any],
    bars: Bars,
    storage_config: StorageConfig,
    timeout: float | None,
    worker: int,
) -> None:
    context = SearchContext.build(StudySpec.from_json(spec), bars)
    run_trials(context, storage_config, timeout=timeout, worker=worker)


Progress = Callable[[int, int, float | None], None]


def run_study(
    context: SearchContext,
    storage_config: StorageConfig,
    *,
    workers: int,
    timeout: float | None,
    progress: Progress | None = None,
    create: bool = True,
) -> optuna.Study:
    """Create the study (or join it) and run it with `workers` processes (1: in this process);
    wait for every trial to finish, failing the trials of workers that died (after the grace
    period)."""
    import optuna

    storage = open_storage(storage_config)
    if create:
        study = create_study(context, storage)
    else:
        _quiet_optuna()
        study = optuna.load_study(study_name=context.spec.study_name, storage=storage)
        expected = [str(d) for d in _grid(context)]
        if study.user_attrs.get("grid") != expected:
            from runner.errors import ConfigError

            raise ConfigError(
                f"This warehouse's bars for {context.spec.symbol} between {context.spec.data_start} "
                f"and {context.spec.data_end} differ from the study's; join from the same warehouse."
            )
    total = context.spec.n_trials

    def report(study: optuna.Study, _: optuna.trial.FrozenTrial) -> None:
        if progress is not None:
            progress(_finished(study), total, _best_value(study))

    if workers <= 1:
        run_trials(context, storage_config, timeout=timeout, callback=report)
    else:
        spawn = multiprocessing.get_context("spawn")
        processes = [
            spawn.Process(
                target=_worker_main,
                args=(context.spec.to_json(), context.bars, storage_config, timeout, k),
                name=f"tradebase-optimize-{k}",
            )
            for k in range(workers)
        ]
        for process in processes:
            process.start()
        while any(p.is_alive() for p in processes):
            report(study, None)  # type: ignore[arg-type]
            time.sleep(0.5)
        for process in processes:
            process.join()
    settle(study, storage_config)
    report(study, None)  # type: ignore[arg-type]
    return study


def settle(study: optuna.Study, storage_config: StorageConfig) -> None:
    """Wait until no trial is RUNNING: live workers finish theirs; a dead worker's trial is
    failed once its heartbeat is older than the grace period."""
    from optuna.storages import fail_stale_trials
    from optuna.trial import TrialState

    deadline = (
        time.monotonic() + storage_config.grace_seconds + storage_config.heartbeat_seconds + 60
    )
    while study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        fail_stale_trials(study)
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)


def _best_value(study: optuna.Study) -> float | None:
    from optuna.trial import TrialState

    values = [
        t.value
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.value is not None
    ]
    return max(values) if values else None


@dataclass(frozen=True)
class StudyResult:
    """The finished trials as the gates need them."""

    n_complete: int
    n_pruned: int
    n_infeasible: int
    n_failed: int
    trial_numbers: tuple[int, ...]
    returns: NDArray[np.float64]  # days × complete trials
    days: NDArray[np.datetime64]
    values: NDArray[np.float64]
    params: tuple[Mapping[str, Any], ...]
    n_trades: tuple[int, ...]

    @property
    def best_column(self) -> int:
        return int(np.argmax(self.values))


def collect(study: optuna.Study) -> StudyResult:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE and RESULT_ATTR in t.user_attrs]
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    infeasible = sum(1 for t in pruned if "infeasible" in t.user_attrs)
    failed = sum(1 for t in trials if t.state == TrialState.FAIL)
    grid = np.array(study.user_attrs["grid"], dtype="datetime64[D]")
    columns = [
        np.asarray(t.user_attrs[RESULT_ATTR]["daily_returns"], dtype=np.float64) for t in complete
    ]
    matrix = np.column_stack(columns) if columns else np.empty((len(grid), 0))
    return StudyResult(
        n_complete=len(complete),
        n_pruned=len(pruned) - infeasible,
        n_infeasible=infeasible,
        n_failed=failed,
        trial_numbers=tuple(t.number for t in complete),
        returns=matrix,
        days=grid,
        values=np.array([float(t.value or 0.0) for t in complete]),
        params=tuple(_full_params(study, t.params) for t in complete),
        n_trades=tuple(int(t.user_attrs[RESULT_ATTR]["n_trades"]) for t in complete),
    )


def _full_params(study: optuna.Study, sampled: Mapping[str, Any]) -> dict[str, Any]:
    spec = study.user_attrs["spec"]
    return {**spec["fixed_params"], **sampled}


def study_name_for(component_id: str, started: datetime) -> str:
    return f"tb-{component_id}-{started:%Y%m%dT%H%M%S}"
