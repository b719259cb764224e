"""What `runner report` shows, read from the warehouse into typed values: the marts, the engine
tables, the Optuna studies of the latest runs and the A/B tests' confidence sequences.

It only reads (no migration, no event). A missing mart, table or study, or an empty one, leaves
its section empty with a sentence saying why (`ReportData.missing`); it never draws anything.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from runner.config import Settings
from runner.deploy.abtest import sequence_bounds
from runner.redact import redact
from runner.warehouse import Warehouse
from runner.warehouse.migrations import current_version

if TYPE_CHECKING:
    import optuna
    import pandas as pd

# Sections: the keys of ReportData.missing and of the charts built from them.
EQUITY = "equity"
ROLLING = "rolling"
REGIMES = "regimes"
OPTIMIZATION = "optimization"
IMPORTANCES = "importances"
AB_TESTS = "ab_tests"
EVENTS = "events"
SUMMARY = "summary"

LATEST_RUNS = 8  # rows of the optimization table and bars of the DSR/PBO chart
STUDY_RUNS = 4  # latest runs whose Optuna study is charted (history, importances)
MODEL_VERSIONS = 3  # latest model versions whose feature importances are charted
TESTS = 6  # latest A/B tests
EVENT_ROWS = 100  # the timeline's cap, newest first
METRICS = ("win_rate", "sharpe", "max_drawdown", "model_accuracy")
# The seed's default rows, used for the chart lines when the seed is not in the warehouse.
DEFAULT_THRESHOLDS: dict[str, tuple[str, float | None, float | None]] = {
    "win_rate": ("higher_is_better", 0.50, 0.45),
    "sharpe": ("higher_is_better", 1.0, 0.5),
    "max_drawdown": ("lower_is_better", 0.10, 0.15),
    "model_accuracy": ("higher_is_better", 0.60, 0.55),
}
_RUN_KINDS = {
    "opt": "parameter search",
    "risk": "risk adjustment",
    "retrain": "retrain",
    "feature": "feature selection",
}
_LOOK_EVENTS = (
    "ab_stage_advanced",
    "ab_stage_extended",
    "ab_test_paused",
    "ab_test_promoted",
    "ab_test_rolled_back",
    "ab_test_inconclusive",
)


# -- the records ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Threshold:
    """A component's alert levels for one metric (a component row of the seed overrides the
    default row)."""

    metric: str
    direction: str  # higher_is_better | lower_is_better
    warning: float | None
    critical: float | None


@dataclass(frozen=True)
class ComponentSummary:
    component_id: str
    production_version: int | None
    open_alerts: Mapping[str, int]  # status -> count (critical, warning)
    test: str | None  # the running test and its stage, else the latest test's outcome
    last_equity: float | None
    last_date: date | None


@dataclass(frozen=True)
class VersionMark:
    """When a component's trades of one version and variant first and last exited (fct_trades)."""

    component_id: str
    strategy_version: str | None
    variant: str | None
    first_date: date
    last_date: date
    n_trades: int


@dataclass(frozen=True)
class TrialPoint:
    number: int
    state: str  # complete | pruned | infeasible | failed | running
    value: float | None


@dataclass(frozen=True)
class RunInfo:
    """One optimization run: the row of optimization_runs and, for a search, its Optuna study."""

    run_id: str
    component_id: str
    kind: str  # parameter search, risk adjustment, retrain, feature selection
    verdict: str
    started_at: datetime | None
    study_name: str
    storage_kind: str
    objective: str
    n_trials: int
    n_pruned: int
    dsr: float | None
    pbo: float | None
    holdout_p: float | None
    dsr_min: float
    pbo_max: float
    alpha: float
    candidate_version: int | None
    reasons: tuple[str, ...]
    trials: tuple[TrialPoint, ...] = ()
    importances: Mapping[str, float] = field(default_factory=dict)
    study_note: str | None = None  # why the study's history or importances are missing


@dataclass(frozen=True)
class ModelImportance:
    model_id: str
    version: int
    component_id: str | None
    status: str
    measure: str  # permutation (out-of-sample log-loss increase) or gain (share of split gain)
    features: Mapping[str, float]  # the largest first


@dataclass(frozen=True)
class SequencePoint:
    """The confidence sequence after the trades that exited by `day` (end of day)."""

    day: date
    n_control: int
    n_treatment: int
    estimate: float
    lower: float | None
    upper: float | None


@dataclass(frozen=True)
class RecordedLook:
    """A look that moved the test (its improvement_events row), placed on the sequence."""

    event_type: str
    at: datetime
    day: date | None
    n_control: int | None
    n_treatment: int | None
    estimate: float | None
    lower: float | None
    upper: float | None


@dataclass(frozen=True)
class ABTestInfo:
    test_id: str
    test_name: str
    component_id: str
    control_version: str
    treatment_version: str
    status: str
    current_stage: int
    alpha: float
    planned_n: int
    margin: float
    n_control: int
    n_treatment: int
    estimate: float | None
    cs_lower: float | None
    cs_upper: float | None
    always_valid_p: float | None
    improvement_percent: float | None
    decision_reason: str | None
    started_at: datetime | None
    ended_at: datetime | None
    data_start: datetime | None
    look_count: int
    sequence: tuple[SequencePoint, ...] = ()
    looks: tuple[RecordedLook, ...] = ()


@dataclass(frozen=True)
class EventRow:
    event_timestamp: datetime
    event_type: str
    component_id: str | None
    trigger_reason: str
    links: str  # the ids that tie it to a run, test or deployment


@dataclass
class ReportData:
    generated_at: datetime
    source: str  # the warehouse, in words (no secret)
    component: str | None
    days: int | None
    data_start: date | None = None
    data_end: date | None = None
    components: list[str] = field(default_factory=list)
    summary: list[ComponentSummary] = field(default_factory=list)
    equity: pd.DataFrame | None = None  # component_id, date_day, equity_end, pnl, n_trades
    version_marks: list[VersionMark] = field(default_factory=list)
    periods: pd.DataFrame | None = None  # mart_underperforming_periods at its latest as_of
    rolling: pd.DataFrame | None = None  # fct_rolling_metrics_daily
    thresholds: dict[tuple[str, str], Threshold] = field(default_factory=dict)
    regimes: pd.DataFrame | None = None  # mart_regime_performance, latest as_of, longest window
    regime_window: int | None = None
    runs: list[RunInfo] = field(default_factory=list)
    models: list[ModelImportance] = field(default_factory=list)
    ab_tests: list[ABTestInfo] = field(default_factory=list)
    events: list[EventRow] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)  # section -> why it is empty
    notes: list[str] = field(default_factory=list)

    def threshold(self, component_id: str, metric: str) -> Threshold:
        found = self.thresholds.get((component_id, metric)) or self.thresholds.get(("", metric))
        if found is not None:
            return found
        direction, warning, critical = DEFAULT_THRESHOLDS.get(
            metric, ("higher_is_better", None, None)
        )
        return Threshold(metric, direction, warning, critical)


# -- reading -------------------------------------------------------------------------------------
def read_report_data(
    wh: Warehouse,
    settings: Settings,
    *,
    component: str | None = None,
    days: int | None = None,
    now: datetime | None = None,
) -> ReportData:
    """Every section, each on its own: one that cannot be read is noted, the others still are."""
    data = ReportData(
        generated_at=now or datetime.now(UTC),
        source=describe_source(settings),
        component=component,
        days=days,
    )
    readers: tuple[tuple[str, Callable[[Warehouse, Settings, ReportData], None]], ...] = (
        (EQUITY, _read_equity),
        (ROLLING, _read_rolling),
        (REGIMES, _read_regimes),
        (OPTIMIZATION, _read_runs),
        (IMPORTANCES, _read_models),
        (AB_TESTS, _read_ab_tests),
        (EVENTS, _read_events),
        (SUMMARY, _read_summary),
    )
    for section, reader in readers:
        try:
            reader(wh, settings, data)
        except Exception as exc:  # one unreadable section must not cost the others
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            detail = redact(f"{type(exc).__name__}: {first}", settings.secrets())
            data.missing.setdefault(section, f"This section could not be read ({detail}).")
    for section, sentence in data.missing.items():
        data.notes.append(f"{section}: {sentence}")
    return data


def describe_source(settings: Settings) -> str:
    if settings.dialect == "postgres":
        pg = settings.postgres
        return f"PostgreSQL {pg.host}:{pg.port}/{pg.dbname}, schema {settings.schema}"
    return f"DuckDB {settings.duckdb_file}"


def _component_filter(data: ReportData, column: str = "component_id") -> tuple[str, dict[str, Any]]:
    if data.component is None:
        return "", {}
    return f" and {column} = %(component)s", {"component": data.component}


def _latest_as_of(mart: str) -> str:
    # `mart` is one of this module's constant names, never user input.
    return f"as_of_date = (select max(as_of_date) from {mart})"


def _missing_mart(wh: Warehouse, data: ReportData, section: str, *marts: str) -> bool:
    absent = [m for m in marts if not wh.table_exists(m)]
    if absent:
        data.missing[section] = (
            f"{' and '.join(absent)} {'does' if len(absent) == 1 else 'do'} not exist yet: "
            "run `runner analyze` to build the marts."
        )
    return bool(absent)


def _engine_tables_missing(wh: Warehouse, data: ReportData, section: str, needs: int) -> bool:
    version = current_version(wh)
    if version < needs:
        data.missing[section] = (
            f"The engine's tables are at schema version {version} (this section needs {needs}): "
            "run `runner init`."
        )
        return True
    return False


def _read_equity(wh: Warehouse, settings: Settings, data: ReportData) -> None:
    if _missing_mart(wh, data, EQUITY, "fct_strategy_daily"):
        return
    where, params = _component_filter(data)
    bounds = wh.fetchone(
        f"select min(date_day), max(date_day) from fct_strategy_daily where 1 = 1{where}", params
    )
    if bounds is None or bounds[1] is None:
        data.missing[EQUITY] = (
            "fct_strategy_daily has no rows"
            + (f" for {data.component}" if data.component else "")
            + ": no trade has been ingested and analyzed yet."
        )
        return
    first, last = _as_date(bounds[0]), _as_date(bounds[1])
    assert first is not None and last is not None
    if data.days is not None:
        first = max(first, last - timedelta(days=data.days - 1))
    data.data_start, data.data_end = first, last
    params = {**params, "since": first}
    data.equity = wh.fetch_df(
        "select component_id, date_day, equity_end, pnl, daily_return, n_trades"
        f" from fct_strategy_daily where date_day >= %(since)s{where}"
        " order by component_id, date_day",
        params,
    )
    if wh.table_exists("fct_trades"):
        rows = wh.fetchall(
            "select component_id, strategy_version, variant, min(exit_date), max(exit_date),"
            f" count(*) from fct_trades where exit_date >= %(since)s{where}"
            " group by component_id, strategy_version, variant",
            params,
        )
        data.version_marks = sorted(
            (
                VersionMark(str(r[0]), _text(r[1]), _text(r[2]), d0, d1, int(r[5]))
                for r in rows
                if (d0 := _as_date(r[3])) is not None and (d1 := _as_date(r[4])) is not None
            ),
            key=lambda m: (m.component_id, m.first_date),
        )
    if wh.table_exists("mart_underperforming_periods"):
        data.periods = wh.fetch_df(
            "select component_id, metric, window_days, start_date, end_date, n_days,"
            " worst_value, has_critical, pnl, n_trades, dominant_regime, is_open"
            f" from mart_underperforming_periods where {_latest_as_of('mart_underperforming_periods')}"
            f" and end_date >= %(since)s{where} order by component_id, start_date",
            params,
        )


def _read_thresholds(wh: Warehouse, data: ReportData) -> None:
    if not wh.table_exists("alert_thresholds"):
        data.notes.append(
            "alert_thresholds is not seeded: the threshold lines use the seed's defaults."
        )
        return
    rows = wh.fetchall(
        "select metric, component_id, direction, warning_value, critical_value"
        " from alert_thresholds"
    )
    for metric, component_id, direction, warning, critical in rows:
        key = (_text(component_id) or "", str(metric))
        data.thresholds[key] = Threshold(
            str(metric), str(direction or "higher_is_better"), _num(warning), _num(critical)
        )


def _read_rolling(wh: Warehouse, settings: Settings, data: ReportData) -> None:
    _read_thresholds(wh, data)
    if _missing_mart(wh, data, ROLLING, "fct_rolling_metrics_daily"):
        return
    where, component = _component_filter(data)
    since, params = "", dict(component)
    if data.days is not None and data.data_start is not None:
        since, params["since"] = " and date_day >= %(since)s", data.data_start
    frame = wh.fetch_df(
        "select component_id, date_day, window_days, metric, value, status, evidence_count,"
        " min_evidence from fct_rolling_metrics_daily"
        f" where {_latest_as_of('fct_rolling_metrics_daily')}{since}{where}"
        " order by component_id, metric, window_days, date_day",
        params,
    )
    if frame.empty:
        data.missing[ROLLING] = "fct_rolling_metrics_daily has no rows for the report's window."
        return
    data.rolling = frame
    if data.periods is None and wh.table_exists("mart_underperforming_periods"):
        data.periods = wh.fetch_df(
            "select component_id, metric, window_days, start_date, end_date, n_days,"
            " worst_value, has_critical, pnl, n_trades, dominant_regime, is_open"
            f" from mart_underperforming_periods where {_latest_as_of('mart_underperforming_periods')}"
            f"{where} order by component_id, start_date",
            component or None,
        )


def _read_regimes(wh: Warehouse, settings: Settings, data: ReportData) -> None:
    if _missing_mart(wh, data, REGIMES, "mart_regime_performance"):
        return
    where, params = _component_filter(data)
    frame = wh.fetch_df(
        "select component_id, regime, window_days, n_trades, n_wins, n_losses, win_rate,"
        " avg_trade_return, sharpe_per_trade, is_insufficient_data, as_of_date"
        f" from mart_regime_performance where {_latest_as_of('mart_regime_performance')}{where}"
        " order by component_id, regime",
        params,
    )
    if frame.empty:
        data.missing[REGIMES] = "mart_regime_performance has no trades in any window."
        return
    window = int(frame["window_days"].max())
    data.regime_window = window
    data.regimes = frame[frame["window_days"] == window].reset_index(drop=True)


def _read_runs(wh: Warehouse, settings: Settings, data: ReportData) -> None:
    if _engine_tables_missing(wh, data, OPTIMIZATION, 3):
        return
    where, params = _component_filter(data)
    rows = wh.fetchall(
        "select run_id, component_id, verdict, started_at, study_name, storage_kind, n_trials,"
        " n_pruned, dsr, pbo, holdout_p, candidate_version, gates, reasons, objective"
        f" from optimization_runs where 1 = 1{where} order by started_at desc limit %(limit)s",
        {**params, "limit": LATEST_RUNS},
    )
    if not rows:
        data.missing[OPTIMIZATION] = (
            "No optimization has run yet: `runner optimize` (or the cycle) records its runs here."
        )
        return
    runs = [_run(r, settings) for r in rows]
    searched = [r for r in runs if r.storage_kind != "none"][:STUDY_RUNS]
    if searched:
        studies = _load_studies(settings, [r.study_name for r in searched])
        runs = [_with_study(r, studies.get(r.study_name)) if r in searched else r for r in runs]
    data.runs = runs


def _run(row: Sequence[Any], settings: Settings) -> RunInfo:
    gates = _json(row[12], {})
    reasons = _json(row[13], [])
    prefix = str(row[0]).split("_", 1)[0]
    return RunInfo(
        run_id=str(row[0]),
        component_id=str(row[1]),
        kind=_RUN_KINDS.get(prefix, prefix),
        verdict=str(row[2]),
        started_at=row[3] if isinstance(row[3], datetime) else None,
        study_name=str(row[4]),
        storage_kind=str(row[5]),
        objective=str(row[14]),
        n_trials=int(row[6] or 0),
        n_pruned=int(row[7] or 0),
        dsr=_num(row[8]),
        pbo=_num(row[9]),
        holdout_p=_num(row[10]),
        candidate_version=None if row[11] is None else int(row[11]),
        dsr_min=_num(gates.get("dsr_min")) or settings.optimize_dsr_min,
        pbo_max=_num(gates.get("pbo_max")) or settings.optimize_pbo_max,
        alpha=_num(gates.get("alpha")) or settings.optimize_alpha,
        reasons=tuple(str(r) for r in reasons) if isinstance(reasons, list) else (),
    )


@dataclass(frozen=True)
class _Study:
    trials: tuple[TrialPoint, ...]
    importances: Mapping[str, float]
    note: str | None


def _load_studies(settings: Settings, names: Iterable[str]) -> dict[str, _Study | str]:
    """Each study's trials and parameter importances, or a sentence saying why not."""
    from runner.optimize.study import open_storage, optuna_schema, storage_config

    wanted = list(dict.fromkeys(names))
    config = storage_config(settings)
    # Opening an RDB storage creates its tables: look before opening, so a report never does.
    if config.kind == "sqlite":
        path = Path(config.url.removeprefix("sqlite:///"))
        if not path.is_file():
            return dict.fromkeys(wanted, f"the Optuna storage {path.name} does not exist")
    elif config.kind == "postgres":
        from runner.warehouse import connect

        with connect(settings) as wh:
            found = wh.fetchone(
                "select count(*) from information_schema.tables"
                " where table_schema = %(s)s and table_name = 'studies'",
                {"s": optuna_schema(settings)},
            )
        if not found or not found[0]:
            return {
                n: f"the Optuna schema {optuna_schema(settings)} has no studies" for n in wanted
            }
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(config)
    try:
        result: dict[str, _Study | str] = {}
        for name in wanted:
            try:
                study = optuna.load_study(study_name=name, storage=storage)
            except KeyError:
                result[name] = f"the study {name} is not in the Optuna storage"
                continue
            result[name] = _study(study)
        return result
    finally:
        storage.remove_session()
        storage.engine.dispose()


def _study(study: optuna.Study) -> _Study:
    from optuna.trial import TrialState

    points = []
    for trial in study.get_trials(deepcopy=False):
        if trial.state == TrialState.COMPLETE:
            state = "complete"
        elif trial.state == TrialState.PRUNED:
            state = "infeasible" if "infeasible" in trial.user_attrs else "pruned"
        elif trial.state == TrialState.FAIL:
            state = "failed"
        else:
            state = "running"
        value = trial.value if trial.state == TrialState.COMPLETE else None
        points.append(TrialPoint(trial.number, state, _num(value)))
    importances, note = _importances(study)
    return _Study(tuple(points), importances, note)


def _importances(study: optuna.Study) -> tuple[dict[str, float], str | None]:
    """PED-ANOVA (Optuna's evaluator that needs no scikit-learn): how much each parameter's
    distribution differs between the top trials and all trials (Watanabe et al. 2023)."""
    import optuna
    from optuna.exceptions import ExperimentalWarning
    from optuna.importance import PedAnovaImportanceEvaluator

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < 2:
        return {}, f"{len(complete)} complete trial(s): too few for parameter importances"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        warnings.simplefilter("ignore", UserWarning)
        try:
            found = optuna.importance.get_param_importances(
                study, evaluator=PedAnovaImportanceEvaluator()
            )
        except (ValueError, RuntimeError) as exc:
            return {}, f"parameter importances could not be computed ({exc})"
    values = {str(k): float(v) for k, v in found.items() if math.isfinite(float(v))}
    if not values:
        return {}, "no parameter varied across the complete trials"
    return values, None


def _with_study(run: RunInfo, study: _Study | str | None) -> RunInfo:
    if study is None:
        return replace(run, study_note="the study was not read")
    if isinstance(study, str):
        return replace(run, study_note=study)
    return replace(run, trials=study.trials, importances=study.importances, study_note=study.note)


def _read_models(wh: Warehouse, settings: Settings, data: ReportData) -> None:
    if _engine_tables_missing(wh, data, IMPORTANCES, 4):
        return
    where, params = _component_filter(data)
    versions = wh.fetchall(
        "select model_id, version, component_id, status from model_versions"
        f" where 1 = 1{where} order by created_at desc limit %(limit)s",
        {**params, "limit": MODEL_VERSIONS},
    )
    for model_id, version, component_id, status in versions:
        rows = wh.fetchall(
            "select feature, gain, permutation_importance from feature_importances"
            " where model_id = %(m)s and version = %(v)s",
            {"m": model_id, "v": version},
        )
        perm = {str(r[0]): v for r in rows if (v := _num(r[2])) is not None}
        gain = {str(r[0]): v for r in rows if (v := _num(r[1])) is not None}
        measure, values = ("permutation", perm) if perm else ("gain", gain)
        if not values:
            continue
        top = dict(sorted(values.items(), key=lambda kv: -abs(kv[1]))[:12])
        data.models.append(
            ModelImportance(
                str(model_id), int(version), _text(component_id), str(status), measure, top
            )
        )


def _read_ab_tests(wh: Warehouse, settings: Settings, data: ReportData) -> None:
    if _engine_tables_missing(wh, data, AB_TESTS, 5):
        return
    where, params = _component_filter(data)
    rows = wh.fetchall(
        "select test_id, test_name, component_id, control_version, treatment_version, status,"
        " current_stage, alpha, planned_n, margin, n_control, n_treatment, estimate, cs_lower,"
        " cs_upper, always_valid_p, improvement_percent, decision_reason, started_at, ended_at,"
        f" data_start, look_count from ab_tests where 1 = 1{where}"
        " order by started_at desc limit %(limit)s",
        {**params, "limit": TESTS},
    )
    if not rows:
        data.missing[AB_TESTS] = (
            "No A/B test has started yet: `runner deploy` starts one for a candidate version "
            "that passes its smoke tests."
        )
        return
    for r in rows:
        test = ABTestInfo(
            test_id=str(r[0]),
            test_name=str(r[1]),
            component_id=str(r[2]),
            control_version=str(r[3]),
            treatment_version=str(r[4]),
            status=str(r[5]),
            current_stage=int(r[6]),
            alpha=float(r[7]),
            planned_n=int(r[8]),
            margin=float(r[9]),
            n_control=int(r[10] or 0),
            n_treatment=int(r[11] or 0),
            estimate=_num(r[12]),
            cs_lower=_num(r[13]),
            cs_upper=_num(r[14]),
            always_valid_p=_num(r[15]),
            improvement_percent=_num(r[16]),
            decision_reason=_text(r[17]),
            started_at=r[18] if isinstance(r[18], datetime) else None,
            ended_at=r[19] if isinstance(r[19], datetime) else None,
            data_start=r[20] if isinstance(r[20], datetime) else None,
            look_count=int(r[21] or 0),
        )
        sequence = _sequence_of(wh, test)
        looks = _recorded_looks(wh, test, sequence)
        data.ab_tests.append(replace(test, sequence=tuple(sequence), looks=tuple(looks)))


@dataclass(frozen=True)
class _ArmTrades:
    returns: np.ndarray
    days: np.ndarray  # exit date of each trade


def _arm(wh: Warehouse, test: ABTestInfo, arm: str, version: str) -> _ArmTrades:
    """The arm's trades exactly as the rollout reads them (runner/deploy/rollout.py
    `_arm_trades`): raw_trades of the arm's variant and version entered after the test started,
    in exit order; net return = signed price change × quantity − fees, over the notional."""
    rows = wh.fetchall(
        "select side, quantity, entry_price, exit_price, fees, exit_ts from raw_trades"
        " where component_id = %(c)s and variant = %(a)s and strategy_version = %(v)s"
        " and entry_ts > %(start)s order by exit_ts, trade_id",
        {"c": test.component_id, "a": arm, "v": version, "start": test.data_start},
    )
    if not rows:
        return _ArmTrades(np.array([], dtype=np.float64), np.array([], dtype="datetime64[D]"))
    side = np.array([1.0 if r[0] == "long" else -1.0 for r in rows])
    qty, entry, exit_, fees = (np.array([float(r[i]) for r in rows]) for i in (1, 2, 3, 4))
    pnl = side * (exit_ - entry) * qty - fees
    days = np.array([np.datetime64(r[5], "D") for r in rows], dtype="datetime64[D]")
    return _ArmTrades(pnl / (entry * qty), days)


def _sequence_of(wh: Warehouse, test: ABTestInfo) -> list[SequencePoint]:
    if test.data_start is None or not wh.table_exists("raw_trades"):
        return []
    control = _arm(wh, test, "control", test.control_version)
    treatment = _arm(wh, test, "treatment", test.treatment_version)
    # Only what the last recorded look saw: trades that closed after it belong to no look.
    if test.look_count:
        control = _ArmTrades(control.returns[: test.n_control], control.days[: test.n_control])
        treatment = _ArmTrades(
            treatment.returns[: test.n_treatment], treatment.days[: test.n_treatment]
        )
    return confidence_sequence(
        control.returns, control.days, treatment.returns, treatment.days, test.alpha, test.planned_n
    )


def confidence_sequence(
    control: np.ndarray,
    control_days: np.ndarray,
    treatment: np.ndarray,
    treatment_days: np.ndarray,
    alpha: float,
    planned_n: int,
) -> list[SequencePoint]:
    """The test's always-valid confidence sequence at the end of every day a trade closed, with
    the engine's own formula (runner.deploy.abtest.sequence_bounds, which its looks call). A confidence sequence holds at every n at once, so each point is one the engine
    would have found had it looked then; bounds are None until each arm has two trades with
    spread."""
    if not len(control) or not len(treatment):
        return []
    points: list[SequencePoint] = []
    for day in np.unique(np.concatenate([control_days, treatment_days])):
        c = control[control_days <= day]
        t = treatment[treatment_days <= day]
        if not len(c) or not len(t):
            continue
        estimate = float(t.mean() - c.mean())
        lower = upper = None
        bounds = sequence_bounds(c, t, alpha, planned_n)
        if bounds is not None:
            lower, upper = _num(bounds[0]), _num(bounds[1])
        points.append(SequencePoint(_np_date(day), len(c), len(t), estimate, lower, upper))
    return points


def _recorded_looks(
    wh: Warehouse, test: ABTestInfo, sequence: Sequence[SequencePoint]
) -> list[RecordedLook]:
    """The looks improvement_events kept: only those that moved the test (advanced, extended,
    paused or ended it; a look that held writes no event), placed on the day the sequence
    reached the look's trade counts."""
    rows = wh.fetchall(
        "select event_timestamp, event_type, improvement_metrics from improvement_events"
        " where test_id = %(t)s order by event_timestamp, event_id",
        {"t": test.test_id},
    )
    looks = []
    for at, kind, metrics_text in rows:
        if kind not in _LOOK_EVENTS:
            continue
        metrics = _json(metrics_text, {})
        n_c, n_t = _int(metrics.get("n_control")), _int(metrics.get("n_treatment"))
        day = None
        if n_c is not None and n_t is not None:
            day = next(
                (p.day for p in sequence if p.n_control >= n_c and p.n_treatment >= n_t), None
            )
        looks.append(
            RecordedLook(
                str(kind),
                at,
                day,
                n_c,
                n_t,
                _num(metrics.get("estimate")),
                _num(metrics.get("lower")),
                _num(metrics.get("upper")),
            )
        )
    return looks


def _read_events(wh: Warehouse, settings: Settings, data: ReportData) -> None:
    if not wh.table_exists("improvement_events"):
        data.missing[EVENTS] = "improvement_events does not exist: run `runner init`."
        return
    where, params = _component_filter(data)
    rows = wh.fetchall(
        "select event_timestamp, event_type, component_id, trigger_reason, run_id,"
        " recommendation_id, task_id, deployment_id, test_id from improvement_events"
        f" where 1 = 1{where} order by event_timestamp desc, event_id desc limit %(limit)s",
        {**params, "limit": EVENT_ROWS},
    )
    if not rows:
        data.missing[EVENTS] = "The engine has recorded no event yet."
        return
    names = ("run", "recommendation", "task", "deployment", "test")
    for r in rows:
        links = ", ".join(f"{n} {v}" for n, v in zip(names, r[4:9], strict=True) if v)
        data.events.append(EventRow(r[0], str(r[1]), _text(r[2]), str(r[3]), links))


def _read_summary(wh: Warehouse, settings: Settings, data: ReportData) -> None:
    where, params = _component_filter(data)
    names: list[str] = []
    if wh.table_exists("components"):
        names += [
            str(r[0])
            for r in wh.fetchall(f"select component_id from components where 1 = 1{where}", params)
        ]
    if data.equity is not None:
        names += [str(c) for c in data.equity["component_id"].unique()]
    if data.component is not None and not names:
        names = [data.component]
    data.components = list(dict.fromkeys(sorted(names)))
    if not data.components:
        data.missing[SUMMARY] = (
            "No component is declared (seeds/components.csv) and no trade has been analyzed."
        )
        return
    production: dict[str, int] = {}
    if current_version(wh) >= 3:
        production = {
            str(r[0]): int(r[1])
            for r in wh.fetchall(
                f"select component_id, version from strategy_versions where status = 'production'{where}",
                params,
            )
        }
    alerts: dict[str, dict[str, int]] = {}
    if wh.table_exists("mart_metric_alerts"):
        for cid, status, count in wh.fetchall(
            "select component_id, status, count(*) from mart_metric_alerts"
            f" where is_alert and {_latest_as_of('mart_metric_alerts')}{where}"
            " and component_id is not null group by component_id, status",
            params,
        ):
            alerts.setdefault(str(cid), {})[str(status)] = int(count)
    last: dict[str, tuple[float, date | None]] = {}
    if data.equity is not None and not data.equity.empty:
        tail = data.equity.groupby("component_id").tail(1)
        for cid, equity, day in zip(
            tail["component_id"], tail["equity_end"], tail["date_day"], strict=True
        ):
            last[str(cid)] = (float(equity), _as_date(day))
    for cid in data.components:
        tests = [t for t in data.ab_tests if t.component_id == cid]
        running = next((t for t in tests if t.status == "running"), None)
        if running is not None:
            test = f"v{running.treatment_version} vs v{running.control_version}: running at {running.current_stage}%"
        elif tests:
            latest = tests[0]
            test = f"v{latest.treatment_version} vs v{latest.control_version}: {latest.status.replace('_', ' ')}"
        else:
            test = None
        equity, day = last.get(cid, (None, None))
        data.summary.append(
            ComponentSummary(cid, production.get(cid), alerts.get(cid, {}), test, equity, day)
        )


# -- small conversions ---------------------------------------------------------------------------
def _num(value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _int(value: Any) -> int | None:
    number = _num(value)
    return None if number is None else int(number)


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value)
    return text if text else None


def _json(value: Any, default: Any) -> Any:
    if not isinstance(value, str) or not value:
        return default
    try:
        return json.loads(value)
    except ValueError:
        return default


def _as_date(value: Any) -> date | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, np.datetime64):
        return _np_date(value)
    if hasattr(value, "date"):  # pandas Timestamp
        result = value.date()
        return result if isinstance(result, date) else None
    return None


def _np_date(value: np.datetime64) -> date:
    return date.fromisoformat(str(value)[:10])
