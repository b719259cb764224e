"""The model registry: numbered, immutable versions of each classifier, their artifacts and
their feature importances (tables of migration 4).

Owns: the LightGBM text file of a version under `<artifacts>/models/<model_id>/v<version>/`,
its SHA-256 (checked on every load), the model_versions and feature_importances rows, and the
audit event that announces a version. It does not train, gate or promote: retrain.py trains,
the coordinator decides, DEPLOY moves statuses with set_status().
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from runner.audit import Event
from runner.engine_tables import ColumnKind, bulk_insert, to_json_text, utc
from runner.errors import ConfigError, TradebaseError
from runner.optimize.retrain import Incumbent, RetrainResult
from runner.optimize.selection import FeatureImportance
from runner.warehouse import Warehouse

if TYPE_CHECKING:
    import lightgbm as lgb

ModelStatus = Literal["production", "candidate", "rejected", "retired"]
_MODEL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")

_COLUMNS = (
    "model_id",
    "version",
    "component_id",
    "features",
    "params",
    "training_start",
    "training_end",
    "label_horizon_bars",
    "oos_rows",
    "oos_log_loss",
    "oos_auc",
    "oos_brier",
    "oos_accuracy",
    "oos_calibration_error",
    "artifact_path",
    "artifact_sha256",
    "parent_version",
    "status",
    "gate_reasons",
    "gate_values",
    "optimization_run_id",
    "code_version",
    "created_at",
    "status_changed_at",
)

IMPORTANCE_COLUMNS: dict[str, ColumnKind] = {
    "model_id": "text",
    "version": "integer",
    "feature": "text",
    "gain": "double",
    "permutation_importance": "double",
    "permutation_std": "double",
    "selected": "boolean",
}


class ModelArtifactError(TradebaseError):
    """A model's artifact is missing or is not the file that was registered."""


@dataclass(frozen=True)
class ModelVersion:
    model_id: str
    version: int
    component_id: str | None
    features: tuple[str, ...]
    params: Mapping[str, Any]  # LightGBM params plus num_boost_round
    training_start: datetime | None
    training_end: datetime | None
    label_horizon_bars: int
    oos_rows: int | None
    oos_log_loss: float | None
    oos_auc: float | None
    oos_brier: float | None
    oos_accuracy: float | None
    oos_calibration_error: float | None
    artifact_path: str | None
    artifact_sha256: str | None
    parent_version: int | None
    status: ModelStatus
    gate_reasons: tuple[str, ...]
    gate_values: Mapping[str, Any]
    optimization_run_id: str | None
    code_version: str
    created_at: datetime
    status_changed_at: datetime


def _check_model_id(model_id: str) -> None:
    # The id becomes a directory name: letters, digits, '_', '.', '-' only, never '..'.
    if not _MODEL_ID.match(model_id) or ".." in model_id:
        raise ConfigError(
            f"Model id {model_id!r} must be letters, digits, '_', '.' or '-' (a directory name)."
        )


def artifact_path(artifacts: Path, model_id: str, version: int) -> Path:
    _check_model_id(model_id)
    return artifacts / "models" / model_id / f"v{version}" / "model.txt"


def save_artifact(
    artifacts: Path, model_id: str, version: int, model_text: str
) -> tuple[Path, str]:
    """Write the model text (atomically: a temporary file renamed) and return (path, sha256)."""
    path = artifact_path(artifacts, model_id, version)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = model_text.encode()
    temporary = path.with_suffix(".txt.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)
    return path, hashlib.sha256(data).hexdigest()


def _time(value: np.datetime64) -> datetime | None:
    if np.isnat(value):
        return None
    moment = value.astype("datetime64[us]").item()
    assert isinstance(moment, datetime)
    return moment


def _finite(value: float | None) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def next_version(wh: Warehouse, model_id: str) -> int:
    row = wh.fetchone(
        "select coalesce(max(version), 0) from model_versions where model_id = %(m)s",
        {"m": model_id},
    )
    return int(row[0] if row else 0) + 1


def register_version(
    wh: Warehouse,
    artifacts: Path,
    *,
    model_id: str,
    result: RetrainResult,
    component_id: str | None,
    code_version: str,
    optimization_run_id: str | None = None,
    parent_version: int | None = None,
    status: ModelStatus | None = None,
    now: datetime | None = None,
) -> ModelVersion:
    """Store `result` as the next version of `model_id`: its artifact (when it has a model),
    then its row. Status defaults to candidate when the gate passed, else rejected. Run it inside
    the caller's transaction so the row and the run's events commit together."""
    _check_model_id(model_id)
    version = next_version(wh, model_id)
    path: str | None = None
    digest: str | None = None
    if result.model_text is not None:
        written, digest = save_artifact(artifacts, model_id, version, result.model_text)
        path = str(written)
    stamp = utc(now or datetime.now(UTC))
    record = ModelVersion(
        model_id=model_id,
        version=version,
        component_id=component_id,
        features=tuple(result.features),
        params={**dict(result.params), "num_boost_round": result.num_boost_round},
        training_start=_time(result.training_start),
        training_end=_time(result.training_end),
        label_horizon_bars=result.horizon_bars,
        oos_rows=result.metrics.n,
        oos_log_loss=_finite(result.metrics.log_loss),
        oos_auc=_finite(result.metrics.auc),
        oos_brier=_finite(result.metrics.brier),
        oos_accuracy=_finite(result.metrics.accuracy),
        oos_calibration_error=_finite(result.metrics.calibration_error),
        artifact_path=path,
        artifact_sha256=digest,
        parent_version=parent_version,
        status=status or ("candidate" if result.passed else "rejected"),
        gate_reasons=tuple(result.gate.reasons),
        gate_values={**dict(result.gate.values), "baseline": result.gate.baseline},
        optimization_run_id=optimization_run_id,
        code_version=code_version,
        created_at=stamp,
        status_changed_at=stamp,
    )
    values = {c: getattr(record, c) for c in _COLUMNS}
    values.update(
        features=json.dumps(list(record.features)),
        params=to_json_text(record.params),
        gate_reasons=json.dumps(list(record.gate_reasons)),
        gate_values=to_json_text(record.gate_values),
    )
    wh.execute(
        f"insert into model_versions ({', '.join(_COLUMNS)}) values "
        f"({', '.join(f'%({c})s' for c in _COLUMNS)})",
        values,
    )
    return record


def _version(row: Sequence[Any]) -> ModelVersion:
    value = dict(zip(_COLUMNS, row, strict=True))
    value["features"] = tuple(json.loads(value["features"]))
    value["params"] = json.loads(value["params"])
    value["gate_reasons"] = tuple(json.loads(value["gate_reasons"]))
    value["gate_values"] = json.loads(value["gate_values"])
    value["created_at"] = utc(value["created_at"])
    value["status_changed_at"] = utc(value["status_changed_at"])
    return ModelVersion(**value)


def list_versions(wh: Warehouse, model_id: str) -> list[ModelVersion]:
    rows = wh.fetchall(
        f"select {', '.join(_COLUMNS)} from model_versions where model_id = %(m)s order by version",
        {"m": model_id},
    )
    return [_version(row) for row in rows]


def get_version(wh: Warehouse, model_id: str, version: int) -> ModelVersion:
    row = wh.fetchone(
        f"select {', '.join(_COLUMNS)} from model_versions"
        " where model_id = %(m)s and version = %(v)s",
        {"m": model_id, "v": version},
    )
    if row is None:
        raise ConfigError(f"Model {model_id!r} has no version {version}.")
    return _version(row)


def model_of(wh: Warehouse, component_id: str) -> str:
    """The model a component uses (seeds/component_models.csv), else `<component>_model`."""
    if wh.table_exists("component_models"):
        row = wh.fetchone(
            "select model_id from component_models where component_id = %(c)s order by model_id",
            {"c": component_id},
        )
        if row is not None and row[0]:
            return str(row[0])
    return f"{component_id}_model"


def uses_a_model(wh: Warehouse, component_id: str, strategy: str, model_id: str) -> bool:
    """Whether the component trades a model: mapped to one (seeds/component_models.csv), its
    strategy takes a `model_version` (ml_signal), or its model already has versions or
    predictions. A rule like ts_momentum with none of these has nothing to retrain."""
    from runner.strategies import StrategyError, load_strategy

    if wh.table_exists("component_models") and wh.fetchone(
        "select 1 from component_models where component_id = %(c)s", {"c": component_id}
    ):
        return True
    try:
        names = {p.name for p in load_strategy(strategy).parameters()}
    except StrategyError:
        names = set()
    if "model_version" in names:
        return True
    return any(
        wh.fetchone(f"select 1 from {table} where model_id = %(m)s limit 1", {"m": model_id})
        for table in ("model_versions", "raw_predictions")
    )


def production_version(wh: Warehouse, model_id: str) -> ModelVersion | None:
    """The version in production (the newest, should two ever be), or None before the first."""
    row = wh.fetchone(
        f"select {', '.join(_COLUMNS)} from model_versions"
        " where model_id = %(m)s and status = 'production' order by version desc limit 1",
        {"m": model_id},
    )
    return None if row is None else _version(row)


def set_status(
    wh: Warehouse, model_id: str, version: int, status: ModelStatus, now: datetime | None = None
) -> None:
    """Move a version to `status` (the caller records the event that says why)."""
    wh.execute(
        "update model_versions set status = %(s)s, status_changed_at = %(t)s"
        " where model_id = %(m)s and version = %(v)s",
        {"s": status, "t": utc(now or datetime.now(UTC)), "m": model_id, "v": version},
    )


def load_model_text(version: ModelVersion) -> str:
    """The registered model text, after checking the file's SHA-256 against the registry."""
    label = f"model {version.model_id} v{version.version}"
    if version.artifact_path is None or version.artifact_sha256 is None:
        raise ModelArtifactError(f"The {label} has no artifact (no feature was selected).")
    path = Path(version.artifact_path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelArtifactError(
            f"The artifact of the {label} cannot be read at {path} ({exc.strerror})."
        ) from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != version.artifact_sha256:
        raise ModelArtifactError(
            f"The artifact of the {label} at {path} does not match its registered SHA-256 "
            f"({digest[:12]}… instead of {version.artifact_sha256[:12]}…): it changed after "
            "registration; refusing to load it."
        )
    return data.decode()


def load_model(version: ModelVersion) -> lgb.Booster:
    """The version's LightGBM booster, refused (ModelArtifactError) if its file was altered."""
    import lightgbm as lgb

    return lgb.Booster(model_str=load_model_text(version))


def as_incumbent(version: ModelVersion, *, with_model: bool = True) -> Incumbent:
    """The version as retrain()'s incumbent: its recipe, and its verified model when asked."""
    end = version.training_end
    params = {k: v for k, v in version.params.items() if k != "num_boost_round"}
    rounds = version.params.get("num_boost_round")
    return Incumbent(
        label=f"production v{version.version}",
        features=version.features,
        params=params,
        num_boost_round=int(rounds) if rounds is not None else None,
        model_text=load_model_text(version) if with_model and version.artifact_path else None,
        trained_until=None if end is None else np.datetime64(end.replace(tzinfo=None), "us"),
    )


def write_importances(
    wh: Warehouse, model_id: str, version: int, importances: Sequence[FeatureImportance]
) -> None:
    """The importances of one version, in one set-based insert."""
    bulk_insert(
        wh,
        "feature_importances",
        IMPORTANCE_COLUMNS,
        [
            {
                "model_id": model_id,
                "version": version,
                "feature": row.feature,
                "gain": _finite(row.gain),
                "permutation_importance": _finite(row.permutation_importance),
                "permutation_std": _finite(row.permutation_std),
                "selected": row.selected,
            }
            for row in importances
        ],
    )


def read_importances(wh: Warehouse, model_id: str, version: int) -> list[FeatureImportance]:
    rows = wh.fetchall(
        "select feature, gain, permutation_importance, permutation_std, selected"
        " from feature_importances where model_id = %(m)s and version = %(v)s order by feature",
        {"m": model_id, "v": version},
    )
    return [
        FeatureImportance(
            feature=str(f),
            gain=None if g is None else float(g),
            permutation_importance=None if p is None else float(p),
            permutation_std=None if s is None else float(s),
            selected=bool(sel),
        )
        for f, g, p, s, sel in rows
    ]


def version_event(version: ModelVersion, trigger_reason: str, task_id: str | None = None) -> Event:
    """The audit event announcing a registered version (the caller records it)."""
    return Event(
        event_type="model_version_created",
        trigger_reason=trigger_reason,
        metrics={
            "model_id": version.model_id,
            "version": version.version,
            "status": version.status,
            "features": list(version.features),
            "oos_log_loss": version.oos_log_loss,
            "oos_auc": version.oos_auc,
            "oos_calibration_error": version.oos_calibration_error,
            "gate_reasons": list(version.gate_reasons),
            "artifact_sha256": version.artifact_sha256,
            "parent_version": version.parent_version,
            "optimization_run_id": version.optimization_run_id,
        },
        component_id=version.component_id,
        task_id=task_id,
    )
