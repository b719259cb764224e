"""The IDENTIFY marts (alerts, rolling series, trends, underperforming periods, recommendations)
on named scenarios with known answers, on DuckDB and PostgreSQL.

One dataset holds every scenario as its own component (or model). Per warehouse dbt builds it
once on AS_OF (models and dbt tests), re-runs the identify marts on the same data, then runs
the models again on LATER with twenty more days of trades for the component that recovers
(`dbt run`: the dbt tests were exercised by the first build); each test reads its frames.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from runner.dbt import NodeResult, run_dbt
from runner.warehouse import connect
from tests.python.scenarios import (
    PROJECT_DIR,
    Bar,
    Dataset,
    Prediction,
    copy_dbt_project,
    fresh_settings,
    open_warehouse,
)

pytestmark = pytest.mark.integration

AS_OF = date(2024, 6, 30)
LATER = AS_OF + timedelta(days=20)
WINDOWS = [7, 14, 30]
CAPITAL = 10_000.0
RELATIONS = (
    "mart_metric_alerts",
    "fct_rolling_metrics_daily",
    "mart_metric_trends",
    "mart_underperforming_periods",
    "mart_recommendations",
    "mart_performance",
)
COMPONENT_MODELS = {
    "healthy": "good_model",
    "retrain_me": "bad_model",
    "winrate_below_target": "warn_model",
    "model_drift": "drifting",
}
THRESHOLDS = {  # metric: (direction, target, warning, critical, min_evidence)
    "win_rate": ("higher", 0.55, 0.50, 0.45, 20),
    "sharpe": ("higher", 1.5, 1.0, 0.5, 5),
    "max_drawdown": ("lower", 0.10, 0.10, 0.15, 5),
    "model_accuracy": ("higher", 0.60, 0.60, 0.55, 50),
}


def day(n: int) -> date:
    return AS_OF - timedelta(days=n)


def history(n_days: int = 90) -> list[date]:
    return [day(k) for k in range(n_days - 1, -1, -1)]


def healthy_pnls(k: int) -> list[float]:
    """Three wins, one loss and a loss or break-even: win rate 0.6 to 0.75, positive every day."""
    return [6.0, 5.0, 4.0, -3.0, (-2.0, -1.0, 0.0)[k % 3]]


def cycle_wins(wins: tuple[int, ...], win: float = 5.0, loss: float = -3.0):
    def pnls(k: int) -> list[float]:
        w = wins[k % len(wins)]
        return [win + 0.1 * (k % 2)] * w + [loss] * (10 - w)

    return pnls


def add_pnl_component(ds: Dataset, component_id: str, pnls, days: list[date], **kw: Any) -> None:
    ds.add_component(component_id, CAPITAL)
    ds.add_pnl_trades(component_id, {d: pnls(i) for i, d in enumerate(days)}, **kw)


def alternating(mu: float, sigma: float, days: list[date]) -> dict[date, float]:
    return {d: mu + sigma * (1 if i % 2 else -1) for i, d in enumerate(days)}


def synthetic_bars(symbol: str, drift: float, late_amplitude: float, n: int = 420) -> list[Bar]:
    """Daily closes whose last 40 days have a chosen drift sign and volatility: log returns
    alternate +-a_t around `drift`, a_t a slow sine around 1% before and `late_amplitude` after."""
    bars, close = [], 100.0
    for i in range(n):
        a = late_amplitude if i >= n - 40 else 0.01 * (1 + 0.5 * math.sin(2 * math.pi * i / 60))
        close *= math.exp(drift + a * (1 if i % 2 else -1))
        at = datetime.combine(day(n - 1 - i), time(0, 0))
        bars.append(Bar(symbol, at, close, close, close, close, 1e6))
    return bars


def add_predictions(ds: Dataset, model: str, correct_by_day, n_days: int, per_day: int) -> None:
    for k in range(n_days):
        d = day(n_days - 1 - k)
        for j in range(per_day):
            right = j < correct_by_day(k)
            at = datetime.combine(d, time(8, j))
            ds.predictions.append(
                Prediction(f"{model}-{k:03d}-{j:02d}", model, "v1", "SPX", at, 1, 0.7, int(right))
            )


def build_dataset() -> Dataset:
    ds = Dataset()
    days = history()
    add_pnl_component(ds, "healthy", healthy_pnls, days)
    add_pnl_component(ds, "model_drift", healthy_pnls, days)
    add_pnl_component(ds, "retrain_me", healthy_pnls, days)
    ds.add_daily_return_trades("sharpe_critical", alternating(-0.0006, 0.01, days), CAPITAL)
    crash = {d: 0.002 + 0.001 * (i % 2) for i, d in enumerate(days[:-4])}
    ds.add_daily_return_trades(
        "drawdown_critical",
        {**crash, day(3): -0.07, day(2): -0.07, day(1): -0.07, day(0): 0.001},
        CAPITAL,
    )
    ds.add_daily_return_trades(
        "drawdown_warning",
        {**crash, day(3): -0.04, day(2): -0.04, day(1): -0.04, day(0): 0.001},
        CAPITAL,
    )
    add_pnl_component(ds, "winrate_critical", lambda k: [8.0, 8.0 + k % 3, -3.0, -3.0, -3.0], days)
    add_pnl_component(ds, "winrate_warning", cycle_wins((5, 5, 4)), days)
    add_pnl_component(ds, "winrate_below_target", cycle_wins((5, 5, 6)), days)
    add_pnl_component(
        ds, "decliner", lambda k: cycle_wins((int(round(8.6 - 2.6 * k / 89)),))(k), days
    )
    dips = set(range(41, 46)) | set(range(17, 21))
    add_pnl_component(
        ds,
        "two_dips",
        lambda k: [-2.0] * 5 if (89 - k) in dips else healthy_pnls(k),
        days,
    )
    ds.add_component("few_trades", CAPITAL)
    ds.add_pnl_trades("few_trades", {day(n): [-4.0] for n in range(3)})
    add_pnl_component(ds, "recovers", lambda k: [-3.0] * 5 if k >= 87 else healthy_pnls(k), days)
    # Wins on SYMA (up, low volatility), significant losses on SYMB (down, high volatility).
    ds.bars += synthetic_bars("SYMA", 0.002, 0.002) + synthetic_bars("SYMB", -0.003, 0.03)
    ds.add_component("regime_mixed", CAPITAL)
    recent = history(20)
    ds.add_pnl_trades(
        "regime_mixed", {d: [6.0 + i % 3, 5.0, 7.0] for i, d in enumerate(recent)}, symbol="SYMA"
    )
    ds.add_pnl_trades(
        "regime_mixed", {d: [-1.0 - 0.5 * (i % 3), -2.0] for i, d in enumerate(recent)}, "SYMB"
    )
    add_predictions(ds, "good_model", lambda k: 7, 60, 10)
    add_predictions(ds, "bad_model", lambda k: 5, 60, 10)
    add_predictions(ds, "warn_model", lambda k: (6, 6, 5)[k % 3], 60, 10)
    add_predictions(
        ds, "drifting", lambda k: int(round(9.4 - 3.0 * k / 59 + 0.4 * (k % 2))), 60, 10
    )
    add_predictions(ds, "few_model", lambda k: 1 if k % 3 else 0, 20, 1)
    return ds


def recovery_days(ds: Dataset) -> Dataset:
    """Twenty days after AS_OF (loaded before the LATER build): healthy for `recovers`; the
    crash and the losing strategy keep trading, so their problems persist with enough trades
    in the 30-day window (fewer than 20 trades would be insufficient_data, not a problem)."""
    extra = Dataset()
    after = [AS_OF + timedelta(days=i) for i in range(1, 21)]
    extra.add_pnl_trades("recovers", {d: healthy_pnls(i + 1) for i, d in enumerate(after)})
    extra.add_pnl_trades("sharpe_critical", {d: [-0.002 * CAPITAL] for d in after})
    extra.add_pnl_trades("drawdown_critical", {d: [0.0005 * CAPITAL] for d in after})
    for t in extra.trades:
        t.trade_id = f"{t.component_id}-later-{t.trade_id}"
    return extra


def write_component_models(project: Path) -> None:
    lines = ["component_id,model_id"] + [f"{c},{m}" for c, m in COMPONENT_MODELS.items()]
    (project / "seeds" / "component_models.csv").write_text("\n".join(lines) + "\n")


@dataclass
class Built:
    dialect: str
    dataset: Dataset
    frames: dict[str, pd.DataFrame]
    rerun: dict[str, pd.DataFrame] = field(default_factory=dict)
    later: dict[str, pd.DataFrame] = field(default_factory=dict)
    build_nodes: list[NodeResult] = field(default_factory=list)

    def __getitem__(self, name: str) -> pd.DataFrame:
        return self.frames[name]


def read_frames(settings: Any) -> dict[str, pd.DataFrame]:
    with connect(settings) as wh:
        return {name: wh.fetch_df(f"select * from {name}") for name in RELATIONS}


@pytest.fixture(
    scope="module", params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def built(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Built]:
    ds = build_dataset()
    workdir = tmp_path_factory.mktemp(f"identify_{request.param}")
    project = copy_dbt_project(workdir / "project", ds.components)
    write_component_models(project)
    pg_url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    dbt_vars = {"as_of_date": AS_OF.isoformat(), "performance_windows": WINDOWS}
    with fresh_settings(request.param, workdir, project, pg_url) as settings:
        with open_warehouse(settings) as wh:
            ds.load(wh)
        nodes = run_dbt(settings, "build", dbt_vars=dbt_vars)
        out = Built(request.param, ds, read_frames(settings), build_nodes=nodes)
        run_dbt(settings, "run", dbt_vars=dbt_vars, select="path:models/marts/identify")
        out.rerun = read_frames(settings)
        with open_warehouse(settings) as wh:
            recovery_days(ds).load(wh)
        later_vars = {**dbt_vars, "as_of_date": LATER.isoformat()}
        run_dbt(settings, "run", dbt_vars=later_vars)
        out.later = read_frames(settings)
        yield out


# -- helpers ------------------------------------------------------------------------------------
def is_null(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


MIN_TRADES = 20  # seeds/alert_thresholds.csv: min_trades of every component metric


def expected_status(
    metric: str, value: float | None, evidence: int, n_trades: int | None = None
) -> str:
    direction, target, warning, critical, min_evidence = THRESHOLDS[metric]
    if value is None or is_null(value) or evidence < min_evidence:
        return "insufficient_data"
    if n_trades is not None and n_trades < MIN_TRADES:
        return "insufficient_data"
    if direction == "higher":
        if value < critical:
            return "critical"
        if value < warning:
            return "warning"
        return "below_target" if value <= target else "ok"
    if value > critical:
        return "critical"
    if value > warning:
        return "warning"
    return "below_target" if value >= target else "ok"


def alert(frames: dict[str, pd.DataFrame], subject: str, metric: str, window: int) -> pd.Series:
    df = frames["mart_metric_alerts"]
    rows = df[(df.subject_id == subject) & (df.metric == metric) & (df.window_days == window)]
    assert len(rows) == 1, f"{subject}/{metric}/{window}: {len(rows)} rows"
    return rows.iloc[0]


def recommendations(frames: dict[str, pd.DataFrame]) -> dict[tuple[str, str], pd.Series]:
    df = frames["mart_recommendations"]
    return {(r.component_id, r.recommendation_type): r for r in df.itertuples(index=False)}


# -- alerts -------------------------------------------------------------------------------------
def test_every_alert_status_follows_the_thresholds(built: Built) -> None:
    """Each component row's value is mart_performance's (drawdown as magnitude) and its status,
    threshold crossed and is_alert follow the default thresholds and evidence minimums."""
    alerts = built["mart_metric_alerts"]
    perf = built["mart_performance"].set_index(["component_id", "window_days"])
    comp = alerts[alerts.subject_type == "component"]
    assert len(comp) == len(built.dataset.components) * len(WINDOWS) * 3
    evidence_col = {"win_rate": "n_trades", "sharpe": "n_days", "max_drawdown": "n_days"}
    for row in comp.itertuples(index=False):
        p = perf.loc[(row.component_id, row.window_days)]
        value = -p.max_drawdown if row.metric == "max_drawdown" else p[row.metric]
        if is_null(value):
            assert is_null(row.value)
        else:
            assert row.value == pytest.approx(value, abs=1e-12)
        assert row.evidence_count == p[evidence_col[row.metric]]
        assert row.n_trades == p["n_trades"]
        status = expected_status(row.metric, row.value, row.evidence_count, int(p["n_trades"]))
        assert row.status == status, (row.component_id, row.metric, row.window_days)
        assert row.is_alert == (status in ("warning", "critical"))
    crossed = {"critical": "critical", "warning": "warning", "below_target": "target"}
    assert (alerts.threshold_crossed.fillna("-") == alerts.status.map(crossed).fillna("-")).all()
    assert alerts.alert_id.is_unique


@pytest.mark.parametrize(
    ("subject", "metric", "window", "status", "threshold"),
    [
        ("sharpe_critical", "sharpe", 30, "critical", 0.5),
        ("drawdown_critical", "max_drawdown", 30, "critical", 0.15),
        # Seven one-trade days: a crash in them is noise-sized evidence, not an alarm.
        ("drawdown_critical", "max_drawdown", 7, "insufficient_data", None),
        ("drawdown_warning", "max_drawdown", 30, "warning", 0.10),
        ("winrate_critical", "win_rate", 30, "critical", 0.45),
        ("winrate_warning", "win_rate", 14, "warning", 0.50),
        ("winrate_below_target", "win_rate", 30, "below_target", 0.55),
        ("healthy", "win_rate", 7, "ok", None),
        ("healthy", "sharpe", 30, "ok", None),
        ("healthy", "max_drawdown", 30, "ok", None),
        ("few_trades", "win_rate", 7, "insufficient_data", None),
        ("few_trades", "sharpe", 7, "insufficient_data", None),
        ("few_trades", "max_drawdown", 30, "insufficient_data", None),
        ("bad_model@v1", "model_accuracy", 30, "critical", 0.55),
        ("warn_model@v1", "model_accuracy", 30, "warning", 0.60),
        ("good_model@v1", "model_accuracy", 30, "ok", None),
        ("few_model@v1", "model_accuracy", 30, "insufficient_data", None),
    ],
)
def test_named_scenarios_cross_the_expected_threshold(
    built: Built, subject: str, metric: str, window: int, status: str, threshold: float | None
) -> None:
    row = alert(built.frames, subject, metric, window)
    assert row.status == status
    if threshold is None:
        assert is_null(row.threshold_value)
    else:
        assert row.threshold_value == pytest.approx(threshold)


def test_model_alerts_carry_model_keys(built: Built) -> None:
    row = alert(built.frames, "bad_model@v1", "model_accuracy", 30)
    assert (row.subject_type, row.model_id, row.model_version) == ("model", "bad_model", "v1")
    assert is_null(row.component_id) and row.evidence_count == 300 and row.min_evidence == 50
    assert row.value == pytest.approx(0.5)


def test_small_samples_never_alert(built: Built) -> None:
    alerts = built["mart_metric_alerts"]
    few = alerts[alerts.subject_id.isin(["few_trades", "few_model@v1"])]
    assert len(few) and (few.status == "insufficient_data").all() and not few.is_alert.any()


# -- rolling series and trends ------------------------------------------------------------------
def rolling_win_rate(ds: Dataset, component: str) -> pd.Series:
    """Reference: 7-day rolling win rate per day with its trade count, over the series days."""
    t = pd.DataFrame([x.__dict__ for x in ds.trades if x.component_id == component])
    t["d"] = t.exit_ts.dt.date
    pnl = (t.exit_price - t.entry_price) * t.quantity
    by_day = pd.DataFrame(
        {
            "n": t.groupby("d").size(),
            "w": (pnl > 0).groupby(t.d).sum(),
            "l": (pnl < 0).groupby(t.d).sum(),
        }
    )
    idx = [AS_OF - timedelta(days=k) for k in range(59 + 6, -1, -1)]
    by_day = by_day.reindex(idx, fill_value=0)
    roll = by_day.rolling(7, min_periods=1).sum().iloc[6:]
    rate = (roll.w / (roll.w + roll.l)).where(roll.n >= 20)
    return rate


def test_rolling_win_rate_matches_pandas(built: Built) -> None:
    series = built["fct_rolling_metrics_daily"]
    for component in ("two_dips", "winrate_warning", "decliner"):
        s = series[
            (series.component_id == component)
            & (series.metric == "win_rate")
            & (series.window_days == 7)
        ].set_index("date_day")
        ref = rolling_win_rate(built.dataset, component)
        assert len(s) == 60
        got = s.value.where(s.status != "insufficient_data").reindex(ref.index)
        assert np.allclose(got.astype(float), ref.astype(float), equal_nan=True)


def test_rolling_windows_end_on_as_of_and_match_mart_performance(built: Built) -> None:
    """The rolling value on as_of_date of a 7- or 30-day window equals mart_performance's."""
    series = built["fct_rolling_metrics_daily"]
    perf = built["mart_performance"].set_index(["component_id", "window_days"])
    last = series[series.date_day == AS_OF]
    for row in last[last.metric != "model_accuracy"].itertuples(index=False):
        p = perf.loc[(row.component_id, row.window_days)]
        expected = -p.max_drawdown if row.metric == "max_drawdown" else p[row.metric]
        if is_null(expected):
            assert is_null(row.value), row
        else:
            assert row.value == pytest.approx(expected, rel=1e-9, abs=1e-12), row


def trend(built: Built, component: str, metric: str, window: int = 7) -> pd.Series:
    df = built["mart_metric_trends"]
    rows = df[(df.component_id == component) & (df.metric == metric) & (df.window_days == window)]
    assert len(rows) == 1
    return rows.iloc[0]


def test_trend_slope_and_t_match_scipy(built: Built) -> None:
    series = built["fct_rolling_metrics_daily"]
    for component, metric in (("decliner", "win_rate"), ("model_drift", "model_accuracy")):
        s = series[
            (series.component_id == component)
            & (series.metric == metric)
            & (series.window_days == 7)
            & (series.date_day > AS_OF - timedelta(days=30))
            & (series.status != "insufficient_data")
        ]
        x = np.array([(d - (AS_OF - timedelta(days=29))).days for d in s.date_day], float)
        fit = stats.linregress(x, s.value.to_numpy(float))
        row = trend(built, component, metric)
        assert row.n_points == len(s) == 30
        assert row.slope == pytest.approx(fit.slope, rel=1e-9)
        assert row.slope_t_stat == pytest.approx(fit.slope / fit.stderr, rel=1e-7)
        assert row.slope < 0 and row.slope_t_stat <= -2 and row.is_declining


def test_welch_t_matches_scipy(built: Built) -> None:
    r = built.dataset.daily_returns["sharpe_critical"]
    recent = [r[day(k)] for k in range(7)]
    prior = [r[day(k)] for k in range(7, 30)]
    ref = stats.ttest_ind(recent, prior, equal_var=False)
    row = trend(built, "sharpe_critical", "sharpe")
    assert (row.n_recent_days, row.n_prior_days) == (7, 23)
    assert row.welch_t == pytest.approx(ref.statistic, rel=1e-9)
    assert row.recent_mean_return == pytest.approx(np.mean(recent), rel=1e-9)


def test_healthy_and_small_components_do_not_decline(built: Built) -> None:
    trends = built["mart_metric_trends"]
    for component in ("healthy", "few_trades"):
        assert not trends[trends.component_id == component].is_declining.any()
    few = trends[trends.component_id == "few_trades"]
    assert (few[few.metric == "win_rate"].n_points == 0).all()


# -- underperforming periods --------------------------------------------------------------------
def test_two_dips_make_two_closed_win_rate_periods(built: Built) -> None:
    periods = built["mart_underperforming_periods"]
    got = periods[(periods.component_id == "two_dips") & (periods.metric == "win_rate")]
    ref = rolling_win_rate(built.dataset, "two_dips")
    bad = ref[ref < 0.50].index
    runs: list[list[date]] = []
    for d in bad:
        if runs and (d - runs[-1][-1]).days == 1:
            runs[-1].append(d)
        else:
            runs.append([d])
    assert len(runs) == 2
    got = got.sort_values("start_date")
    assert list(got.start_date) == [r[0] for r in runs]
    assert list(got.end_date) == [r[-1] for r in runs]
    assert list(got.n_days) == [len(r) for r in runs]
    assert not got.is_open.any() and not got.starts_at_series_start.any()
    first = got.iloc[0]
    assert first.worst_value == pytest.approx(ref.loc[runs[0]].min())
    assert first.dominant_regime == "unknown"


def test_a_period_still_running_is_open(built: Built) -> None:
    periods = built["mart_underperforming_periods"]
    ww = periods[(periods.component_id == "winrate_warning") & (periods.metric == "win_rate")]
    assert len(ww) == 1
    row = ww.iloc[0]
    assert row.is_open and row.starts_at_series_start and row.n_days == 60
    assert periods[periods.component_id.isin(["healthy", "few_trades"])].empty


# -- recommendations ----------------------------------------------------------------------------
EXPECTED_RECOMMENDATIONS = {
    ("sharpe_critical", "hyperparameter"): ("sharpe_critical", 1),
    ("drawdown_critical", "risk_adjustment"): ("max_drawdown_critical", 1),
    ("drawdown_critical", "hyperparameter"): ("sharpe_critical", 1),
    ("drawdown_warning", "risk_adjustment"): ("max_drawdown_warning", 2),
    ("drawdown_warning", "hyperparameter"): ("sharpe_critical", 1),
    ("winrate_critical", "hyperparameter"): ("win_rate_critical", 1),
    ("winrate_warning", "hyperparameter"): ("win_rate_long_period", 2),
    ("winrate_below_target", "retrain"): ("model_accuracy_warning", 2),
    ("retrain_me", "retrain"): ("model_accuracy_critical", 1),
    ("model_drift", "retrain"): ("model_accuracy_declining", 3),
    ("decliner", "hyperparameter"): ("win_rate_declining", 3),
    ("recovers", "hyperparameter"): ("sharpe_critical", 1),
    ("recovers", "risk_adjustment"): ("max_drawdown_rising", 3),
    ("regime_mixed", "feature_selection"): ("regime_loss", 2),
}


def test_recommendations_are_exactly_the_expected_ones(built: Built) -> None:
    got = {key: (r.rule_id, r.priority) for key, r in recommendations(built.frames).items()}
    assert got == EXPECTED_RECOMMENDATIONS


def test_recommendation_reasons_carry_the_numbers(built: Built) -> None:
    recs = recommendations(built.frames)
    regime = recs[("regime_mixed", "feature_selection")]
    assert regime.regime == "down_high" and "down_high" in regime.reason
    assert regime.statistic_name == "t_stat" and regime.statistic_value <= -2
    assert regime.evidence_count == 40 and regime.window_days == 30
    drawdown = recs[("drawdown_critical", "risk_adjustment")]
    assert drawdown.reason.startswith("max_drawdown over the last ")
    assert f"{drawdown.value:.4f}" in drawdown.reason and "0.1500" in drawdown.reason
    model = recs[("retrain_me", "retrain")]
    assert model.model_subject == "bad_model@v1" and "0.5000" in model.reason


def test_reruns_keep_rows_and_ids(built: Built) -> None:
    """Re-running the identify marts on the same data gives the same rows, ids included."""
    for name in ("mart_metric_alerts", "mart_recommendations", "mart_underperforming_periods"):
        key = {
            "mart_metric_alerts": "alert_id",
            "mart_recommendations": "recommendation_id",
            "mart_underperforming_periods": "period_id",
        }[name]
        before = built.frames[name].sort_values(key).reset_index(drop=True)
        after = built.rerun[name].sort_values(key).reset_index(drop=True)
        pd.testing.assert_frame_equal(before, after)
        assert before[key].is_unique


def test_a_persisting_problem_keeps_its_id_and_a_recovered_one_closes(built: Built) -> None:
    """Twenty days later the crash and the losing strategy are still in their windows: same
    recommendation_id, new as_of_date; `recovers` traded well since and has no recommendation."""
    now, later = recommendations(built.frames), recommendations(built.later)
    for key in (("drawdown_critical", "risk_adjustment"), ("sharpe_critical", "hyperparameter")):
        assert later[key].recommendation_id == now[key].recommendation_id
        assert later[key].as_of_date == LATER
    assert not [k for k in later if k[0] == "recovers"]
    assert built.later["mart_recommendations"].recommendation_id.is_unique
    alerts = built.later["mart_metric_alerts"]
    assert alerts.alert_id.is_unique and set(alerts.as_of_date) == {LATER}


# -- dbt unit tests of mart_recommendations -----------------------------------------------------
IDENTIFY_YML = PROJECT_DIR / "models" / "marts" / "identify" / "_identify__models.yml"
RULES_SEED = PROJECT_DIR / "seeds" / "recommendation_rules.csv"


def seed_rules() -> list[dict[str, str]]:
    with RULES_SEED.open(newline="") as f:
        return list(csv.DictReader(f))


def recommendation_unit_tests() -> list[dict[str, Any]]:
    doc = yaml.safe_load(IDENTIFY_YML.read_text())
    return [t for t in doc.get("unit_tests", []) if t["model"] == "mart_recommendations"]


def test_unit_tests_cover_every_rule_on_a_copy_equal_to_the_seed() -> None:
    """The dbt unit tests give the rules inline (dbt cannot read a seed with empty cells as a
    fixture): each copy must be seeds/recommendation_rules.csv, and each rule must have its own
    unit test `recommendations_rule_<rule_id>` in which it wins."""
    rules = seed_rules()
    tests = {t["name"]: t for t in recommendation_unit_tests()}
    for name, test in tests.items():
        given = [g for g in test["given"] if g["input"] == "ref('recommendation_rules')"]
        assert len(given) == 1 and given[0]["format"] == "csv", name
        assert list(csv.DictReader(given[0]["rows"].splitlines())) == rules, name
    for rule in rules:
        test = tests.get(f"recommendations_rule_{rule['rule_id']}")
        assert test is not None, f"no unit test for rule {rule['rule_id']}"
        won = {row["rule_id"] for row in test["expect"]["rows"]}
        assert won == {rule["rule_id"]}, rule["rule_id"]
    assert "recommendations_one_per_component_and_type" in tests


def test_build_runs_the_recommendation_unit_tests(built: Built) -> None:
    """`dbt build` ran those unit tests on this warehouse, and they passed."""
    unit = {n.name: n.status for n in built.build_nodes if n.resource_type == "unit_test"}
    expected = {t["name"] for t in recommendation_unit_tests()}
    assert len(expected) == len(seed_rules()) + 1
    assert expected <= set(unit)
    assert {unit[name] for name in expected} == {"pass"}
