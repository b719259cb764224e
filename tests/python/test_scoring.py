"""Scoring the production model on both warehouses: one prediction per feature row, equal to the
registered booster's probabilities on the version's features; re-running writes nothing; new
bars are scored and resolved labels filled in later without touching anything else; the accuracy
mart shows the version; a tampered artifact is refused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from runner.audit import read_events
from runner.cli.score import score_command
from runner.config import Settings
from runner.dbt import run_dbt
from runner.ingest import ingest_file
from runner.ingest.specs import Kind
from runner.optimize import models
from runner.optimize.features import load_features
from runner.optimize.retrain import RetrainConfig, retrain
from runner.optimize.scoring import prediction_id, score
from runner.warehouse import connect
from tests.python.markets import noise_market, trending_market, write_bars_csv
from tests.python.scenarios import copy_dbt_project, fresh_settings, open_warehouse
from tests.python.test_optimize import component

pytestmark = pytest.mark.integration

MODEL = "trend_clf"
FIRST_BARS = 700
MORE_BARS = 40
HORIZON = 5  # dbt_project.yml var feature_label_horizon_bars
FAST = RetrainConfig(num_threads=1, window=None, folds=3, num_boost_round=60)


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def score_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    """TREND (component ml_trend → model trend_clf) and NOISE (noise_sma, no model) with their
    first bars ingested, the seeds loaded and fct_bar_features built."""
    project = copy_dbt_project(
        tmp_path / "project",
        [component("ml_trend", "TREND"), component("noise_sma", "NOISE")],
    )
    (project / "seeds" / "component_models.csv").write_text(
        f"component_id,model_id\nml_trend,{MODEL}\n"
    )
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    with fresh_settings(request.param, tmp_path, project, url) as settings:
        ingest_bars(settings, tmp_path / "trend.csv", "TREND", trending_market()[:FIRST_BARS])
        ingest_bars(settings, tmp_path / "noise.csv", "NOISE", noise_market()[:300])
        run_dbt(settings, "seed", select="components component_models")
        run_dbt(settings, "run", select="+fct_bar_features")
        yield settings


def ingest_bars(settings: Settings, path: Path, symbol: str, frame: pd.DataFrame) -> None:
    with open_warehouse(settings) as wh:
        assert (
            ingest_file(wh, settings, Kind.bars, write_bars_csv(frame, symbol, path)).rejected == 0
        )


def register_production(settings: Settings) -> models.ModelVersion:
    with connect(settings) as wh:
        result = retrain(load_features(wh, "TREND"), config=FAST)
        assert result.model_text is not None
        with wh.transaction():
            return models.register_version(
                wh,
                settings.artifacts,
                model_id=MODEL,
                result=result,
                component_id="ml_trend",
                code_version="0.1.0+test",
                status="production",
            )


def stored(settings: Settings) -> pd.DataFrame:
    with connect(settings) as wh:
        return wh.fetch_df(
            "select prediction_id, model_id, model_version, symbol, ts, predicted_label,"
            " predicted_proba, actual_label, ingest_id, loaded_at, labelled_at"
            " from raw_predictions order by ts"
        )


def expected(settings: Settings, version: models.ModelVersion) -> tuple[Any, np.ndarray]:
    with connect(settings) as wh:
        frame = load_features(wh, "TREND")
    proba = models.load_model(version).predict(frame.X[:, frame.columns(version.features)])
    return frame, np.asarray(proba, dtype=np.float64)


def test_scores_new_bars_once_and_fills_labels_later(
    score_settings: Settings, tmp_path: Path
) -> None:
    settings = score_settings
    version = register_production(settings)

    # First run: every feature row of TREND, probabilities of the registered booster.
    results = {r.component_id: r for r in score(settings)}
    frame, proba = expected(settings, version)
    trend, noise = results["ml_trend"], results["noise_sma"]
    assert (trend.model_id, trend.model_version, trend.version_text) == (MODEL, 1, "1")
    assert trend.rows_scored == len(frame) and trend.labels_filled == 0
    assert noise.model_version is None and noise.rows_scored == 0
    assert noise.note is not None and "noise_sma_model" in noise.note
    rows = stored(settings)
    assert len(rows) == len(frame)
    assert set(rows.model_id) == {MODEL} and set(rows.model_version) == {"1"}
    assert set(rows.symbol) == {"TREND"}
    times = pd.to_datetime(rows.ts).to_numpy(dtype="datetime64[us]")
    assert np.array_equal(times, frame.t0)
    assert np.all((rows.predicted_proba > 0) & (rows.predicted_proba < 1))
    np.testing.assert_allclose(rows.predicted_proba.to_numpy(), proba, rtol=0, atol=1e-12)
    assert np.array_equal(rows.predicted_label.to_numpy(), (proba >= 0.5).astype(int))
    labels = rows.actual_label.to_numpy(dtype=np.float64, na_value=np.nan)
    np.testing.assert_array_equal(labels, frame.y)  # NaN exactly where unresolved
    assert int(np.isnan(labels).sum()) == HORIZON
    first_id = prediction_id(MODEL, 1, "TREND", frame.t0[0].item())
    assert (
        rows.prediction_id.iloc[0]
        == first_id
        == f"{MODEL}:v1:TREND:{frame.t0[0].item():%Y-%m-%dT%H:%M:%S}"
    )

    # Second run: nothing new.
    [again] = score(settings, component="ml_trend")
    assert (again.rows_scored, again.labels_filled) == (0, 0)
    pd.testing.assert_frame_equal(stored(settings), rows)

    # New bars: only they are scored; the labels that resolved are filled, nothing else changes.
    market = trending_market()
    ingest_bars(
        settings, tmp_path / "more.csv", "TREND", market[FIRST_BARS : FIRST_BARS + MORE_BARS]
    )
    run_dbt(settings, "run", select="+fct_bar_features")
    [later] = score(settings, component="ml_trend")
    frame, proba = expected(settings, version)
    assert later.rows_scored == MORE_BARS and later.labels_filled == HORIZON
    after = stored(settings)
    assert len(after) == len(rows) + MORE_BARS
    np.testing.assert_allclose(after.predicted_proba.to_numpy(), proba, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(
        after.actual_label.to_numpy(dtype=np.float64, na_value=np.nan), frame.y
    )
    old = after.iloc[: len(rows)]
    for column in ("prediction_id", "predicted_proba", "predicted_label", "ingest_id", "loaded_at"):
        pd.testing.assert_series_equal(old[column], rows[column])
    filled = rows.actual_label.isna()
    assert old.labelled_at[filled].notna().all()
    pd.testing.assert_series_equal(old.labelled_at[~filled], rows.labelled_at[~filled])
    assert after.ingest_id.iloc[-1] != rows.ingest_id.iloc[0]  # a new scoring run

    # One predictions_scored event per component scored per run, with the counts.
    with connect(settings) as wh:
        events = read_events(wh, event_types=["predictions_scored"])
    assert [
        (e.component_id, e.metrics["rows_scored"], e.metrics["labels_filled"]) for e in events
    ] == [
        ("ml_trend", len(rows), 0),
        ("ml_trend", 0, 0),
        ("ml_trend", MORE_BARS, HORIZON),
    ]
    assert events[0].metrics["model_id"] == MODEL and events[0].metrics["model_version"] == 1

    # The accuracy mart follows the live model.
    as_of = pd.Timestamp(frame.t0[~np.isnan(frame.y)][-1]).date().isoformat()
    run_dbt(settings, "run", select="+mart_model_accuracy", dbt_vars={"as_of_date": as_of})
    with connect(settings) as wh:
        accuracy = wh.fetch_df(
            "select model_id, model_version, window_days, n_predictions, accuracy"
            " from mart_model_accuracy order by window_days"
        )
    assert set(zip(accuracy.model_id, accuracy.model_version, strict=True)) == {(MODEL, "1")}
    month = accuracy[accuracy.window_days == 30].iloc[0]
    assert month.n_predictions > 0 and 0.0 <= month.accuracy <= 1.0

    # The command: a table per component, or JSON; from --since nothing new either.
    app = typer.Typer()
    app.command()(score_command)
    shown = CliRunner().invoke(app, ["-c", "ml_trend"], obj=settings, terminal_width=160)
    assert shown.exit_code == 0, shown.output
    assert "rows scored" in shown.output and "labels filled" in shown.output
    assert MODEL in shown.output and "version" in shown.output
    printed = CliRunner().invoke(app, ["--json", "--since", "2012-01-02"], obj=settings)
    assert printed.exit_code == 0, printed.output
    by_component = {r["component_id"]: r for r in json.loads(printed.output)["results"]}
    assert by_component["ml_trend"]["rows_scored"] == 0
    assert by_component["noise_sma"]["model_version"] is None
    assert len(stored(settings)) == len(after)


def test_a_tampered_artifact_is_refused(score_settings: Settings) -> None:
    version = register_production(score_settings)
    assert version.artifact_path is not None
    path = Path(version.artifact_path)
    path.write_text(path.read_text() + "\n")
    with pytest.raises(models.ModelArtifactError, match="does not match its registered SHA-256"):
        score(score_settings, component="ml_trend")
    assert stored(score_settings).empty
    with connect(score_settings) as wh:
        assert read_events(wh, event_types=["predictions_scored"]) == []
