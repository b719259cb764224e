"""Scoring the production model of each component on its bars: one prediction per bar into
`raw_predictions`, so `mart_model_accuracy` follows the live model.

Owns: choosing the bars to score (those of the component's symbol in fct_bar_features newer than
the last prediction stored for the production version, or from `since`), predicting with the
registered artifact (SHA-256 checked by runner.optimize.models) on exactly the version's feature
list, writing the rows set-based and idempotently (stable prediction ids, existing rows never
overwritten), filling `actual_label` of earlier predictions once their label resolves (the
ingest's fill-in rule: only an empty label is filled, nothing else changes), and the
`predictions_scored` audit event. It does not train, gate or promote.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from runner.audit import AuditTrail, Event
from runner.config import Settings
from runner.errors import ConfigError
from runner.optimize import models
from runner.optimize.features import FEATURE_RELATION, as_time, load_features
from runner.optimize.versions import Component, read_components
from runner.warehouse import Warehouse, connect
from runner.warehouse.migrations import migrate

THRESHOLD = 0.5  # predicted_label = 1 when the probability is at least this
_STAGE = "score_stage"
_STAGE_COLUMNS = (
    "prediction_id",
    "model_id",
    "model_version",
    "symbol",
    "ts",
    "predicted_label",
    "predicted_proba",
    "actual_label",
    "source_row",
)


@dataclass(frozen=True)
class ScoreResult:
    """What scoring did for one component; `note` says why it was skipped (version None)."""

    component_id: str
    symbol: str
    model_id: str
    model_version: int | None
    rows_scored: int = 0
    labels_filled: int = 0
    first_bar: datetime | None = None
    last_bar: datetime | None = None
    note: str | None = None

    @property
    def version_text(self) -> str | None:
        return None if self.model_version is None else version_text(self.model_version)


def version_text(version: int) -> str:
    """The model_version text of a prediction row: the bare number, as ingested predictions
    carry it (runner/sample_data/predictions.csv), so one model version is one spelling."""
    return str(version)


def prediction_id(model_id: str, version: int, symbol: str, bar_at: datetime) -> str:
    """The stable key of one prediction: model_id:vN:symbol:bar time (ISO, seconds)."""
    return f"{model_id}:v{version}:{symbol}:{bar_at:%Y-%m-%dT%H:%M:%S}"


def _id_prefix(model_id: str, version: int, symbol: str) -> str:
    return f"{model_id}:v{version}:{symbol}:"


def _naive(value: Any) -> datetime | None:
    if value is None:
        return None
    moment = as_time(value).item()
    return moment if isinstance(moment, datetime) else None


def last_prediction(wh: Warehouse, model_id: str, version: int, symbol: str) -> datetime | None:
    """The newest bar already scored by this model version for `symbol`."""
    row = wh.fetchone(
        "select max(ts) from raw_predictions"
        " where model_id = %(m)s and model_version = %(v)s and symbol = %(s)s",
        {"m": model_id, "v": version_text(version), "s": symbol},
    )
    return None if row is None else _naive(row[0])


def _fill_labels(wh: Warehouse, model_id: str, version: int, symbol: str, now: datetime) -> int:
    """Fill actual_label (and labelled_at) of this version's earlier predictions whose label has
    since resolved in the feature mart; only empty labels are filled, nothing else changes."""
    params = {
        "m": model_id,
        "v": version_text(version),
        "s": symbol,
        "p": _id_prefix(model_id, version, symbol),
    }
    match = (
        " raw_predictions.model_id = %(m)s and raw_predictions.model_version = %(v)s"
        " and raw_predictions.symbol = %(s)s"
        " and left(raw_predictions.prediction_id, length(%(p)s)) = %(p)s"
        " and raw_predictions.actual_label is null"
        " and f.symbol = raw_predictions.symbol and f.bar_at = raw_predictions.ts"
        " and f.label is not null"
    )
    row = wh.fetchone(
        f"select count(*) from raw_predictions, {FEATURE_RELATION} f where{match}", params
    )
    count = int(row[0]) if row else 0
    if count:
        wh.execute(
            f"update raw_predictions set actual_label = f.label, labelled_at = %(now)s"
            f" from {FEATURE_RELATION} f where{match}",
            {**params, "now": now},
        )
    return count


def _stage(wh: Warehouse, rows: dict[str, Any]) -> None:
    import pyarrow as pa

    table = pa.table(
        {
            "prediction_id": pa.array(rows["prediction_id"], pa.string()),
            "model_id": pa.array(rows["model_id"], pa.string()),
            "model_version": pa.array(rows["model_version"], pa.string()),
            "symbol": pa.array(rows["symbol"], pa.string()),
            "ts": pa.array(rows["ts"], pa.timestamp("us")),
            "predicted_label": pa.array(rows["predicted_label"], pa.int32()),
            "predicted_proba": pa.array(rows["predicted_proba"], pa.float64()),
            "actual_label": pa.array(rows["actual_label"], pa.int32()),
            "source_row": pa.array(rows["source_row"], pa.int64()),
        }
    )
    wh.execute(
        f"create temporary table {_STAGE} (prediction_id text, model_id text,"
        " model_version text, symbol text, ts timestamp, predicted_label integer,"
        " predicted_proba double precision, actual_label integer, source_row bigint)"
    )
    wh.load_arrow(_STAGE, table)


def _insert_new(wh: Warehouse, rows: dict[str, Any], score_id: str, now: datetime) -> int:
    """Insert the staged predictions whose id is not stored yet; return how many."""
    if not rows["prediction_id"]:
        return 0
    _stage(wh, rows)
    new = (
        f" from {_STAGE} s where not exists"
        " (select 1 from raw_predictions t where t.prediction_id = s.prediction_id)"
    )
    row = wh.fetchone(f"select count(*){new}")
    count = int(row[0]) if row else 0
    columns = ", ".join(_STAGE_COLUMNS[:-1])
    wh.execute(
        f"insert into raw_predictions ({columns}, ingest_id, source_row, loaded_at, labelled_at)"
        f" select {', '.join(f's.{c}' for c in _STAGE_COLUMNS[:-1])}, %(id)s, s.source_row,"
        f" %(now)s, case when s.actual_label is not null then %(now)s end{new}",
        {"id": score_id, "now": now},
    )
    # A failed transaction takes the temporary table with it; a good one drops it here.
    wh.execute(f"drop table {_STAGE}")
    return count


def _feature_rows(wh: Warehouse, symbol: str, start: datetime | None) -> int:
    sql = f"select count(*) from {FEATURE_RELATION} where symbol = %(s)s"
    params: dict[str, Any] = {"s": symbol}
    if start is not None:
        sql += " and bar_at >= %(start)s"
        params["start"] = start
    row = wh.fetchone(sql, params)
    return int(row[0]) if row else 0


def score_component(
    wh: Warehouse,
    component: Component,
    *,
    since: datetime | None = None,
    score_id: str,
    now: datetime,
) -> tuple[ScoreResult, Event | None]:
    """Score one component inside the caller's transaction; the event is None when skipped."""
    model_id = models.model_of(wh, component.component_id)
    production = models.production_version(wh, model_id)
    if production is None:
        note = f"model {model_id} has no production version in the registry; nothing scored."
        return ScoreResult(
            component.component_id, component.symbol, model_id, None, note=note
        ), None
    version = production.version
    booster = models.load_model(production)  # ModelArtifactError when the file was altered
    filled = _fill_labels(wh, model_id, version, component.symbol, now)
    last = last_prediction(wh, model_id, version, component.symbol)
    # From `since` when given (rows already stored are skipped by id), else after the last
    # bar this version scored.
    start = _naive(since) if since is not None else last
    after = last if since is None else None
    rows: dict[str, Any] = {c: [] for c in _STAGE_COLUMNS}
    first_bar: datetime | None = None
    last_bar: datetime | None = None
    if _feature_rows(wh, component.symbol, start):
        frame = load_features(wh, component.symbol, start=start)
        keep = np.ones(len(frame), dtype=bool)
        if after is not None:
            keep = frame.t0 > np.datetime64(after, "us")
        indices = np.flatnonzero(keep)
        if len(indices):
            columns = frame.columns(production.features)
            X = frame.X[np.ix_(indices, columns)]
            proba = np.asarray(booster.predict(X), dtype=np.float64).reshape(-1)
            if proba.shape != (len(indices),):
                raise ConfigError(
                    f"Model {model_id} v{version} returned {proba.shape} predictions for "
                    f"{len(indices)} bars; a binary classifier gives one probability per bar."
                )
            times = [_naive(t) for t in frame.t0[indices]]
            labels = frame.y[indices]
            for n, (moment, p, y) in enumerate(zip(times, proba, labels, strict=True)):
                assert moment is not None
                rows["prediction_id"].append(
                    prediction_id(model_id, version, component.symbol, moment)
                )
                rows["model_id"].append(model_id)
                rows["model_version"].append(version_text(version))
                rows["symbol"].append(component.symbol)
                rows["ts"].append(moment)
                rows["predicted_label"].append(int(p >= THRESHOLD))
                rows["predicted_proba"].append(float(p))
                rows["actual_label"].append(None if np.isnan(y) else int(y))
                rows["source_row"].append(n + 1)
            first_bar, last_bar = times[0], times[-1]
    scored = _insert_new(wh, rows, score_id, now)
    result = ScoreResult(
        component_id=component.component_id,
        symbol=component.symbol,
        model_id=model_id,
        model_version=version,
        rows_scored=scored,
        labels_filled=filled,
        first_bar=first_bar,
        last_bar=last_bar,
    )
    event = Event(
        event_type="predictions_scored",
        trigger_reason=(
            f"Scored {scored} new bars of {component.symbol} with model {model_id} "
            f"{version_text(version)} and filled {filled} resolved labels."
        ),
        metrics={
            "score_id": score_id,
            "model_id": model_id,
            "model_version": version,
            "symbol": component.symbol,
            "rows_scored": scored,
            "labels_filled": filled,
            "first_bar": first_bar,
            "last_bar": last_bar,
            "features": list(production.features),
            "artifact_sha256": production.artifact_sha256,
        },
        component_id=component.component_id,
    )
    return result, event


def score(
    settings: Settings, *, component: str | None = None, since: datetime | None = None
) -> list[ScoreResult]:
    """Score every component (or the one named) whose model has a production version: new bars
    get one prediction each in raw_predictions, earlier ones get their resolved labels. Each
    component is written atomically with its `predictions_scored` event; re-running writes
    nothing new. A tampered artifact raises ModelArtifactError (models.load_model)."""
    now = datetime.now(UTC).replace(tzinfo=None)
    score_id = f"score_{now:%Y%m%dT%H%M%S}_{uuid.uuid4().hex[:8]}"
    results: list[ScoreResult] = []
    with connect(settings) as wh:
        migrate(wh)
        if not wh.table_exists(FEATURE_RELATION):
            raise ConfigError(
                f"{FEATURE_RELATION} is not in the warehouse yet: ingest bars and build it with "
                "`runner analyze` (dbt build) first."
            )
        trail = AuditTrail(wh, run_id=score_id, secrets=settings.secrets())
        for item in read_components(wh, component):
            with wh.transaction():
                if wh.dialect == "postgres":
                    # The ingest's lock: one writer of the raw tables per schema at a time.
                    wh.execute(
                        "select pg_advisory_xact_lock(hashtext(%(key)s))",
                        {"key": f"tb:ingest:{wh.schema}"},
                    )
                result, event = score_component(wh, item, since=since, score_id=score_id, now=now)
                if event is not None:
                    trail.record([event])
            results.append(result)
    return results
