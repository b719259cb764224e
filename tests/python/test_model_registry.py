"""The model registry on both warehouses: versions number themselves, artifacts are pinned by
SHA-256 and an altered file is refused, the production version is the incumbent of the next
retrain, importances are stored per version."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pytest

from runner.audit import AuditTrail, read_events
from runner.config import Settings
from runner.errors import ConfigError
from runner.optimize.features import FeatureFrame
from runner.optimize.models import (
    ModelArtifactError,
    as_incumbent,
    get_version,
    list_versions,
    load_model,
    production_version,
    read_importances,
    register_version,
    set_status,
    version_event,
    write_importances,
)
from runner.optimize.retrain import RetrainConfig, RetrainResult, retrain
from runner.optimize.selection import FeatureImportance, outer_importances, select_features
from runner.warehouse import Warehouse
from tests.python.test_retrain import planted_frame

FAST = RetrainConfig(num_threads=1, window=None)


@pytest.fixture(scope="module")
def trained() -> tuple[FeatureFrame, RetrainResult]:
    frame = planted_frame(n=4000, noise_features=3)
    return frame, retrain(frame, config=FAST)


def register(wh: Warehouse, settings: Settings, result: RetrainResult, **extra: object) -> object:
    with wh.transaction():
        return register_version(
            wh,
            settings.artifacts,
            model_id="spy_direction",
            result=result,
            component_id="spy_ml",
            code_version="0.1.0+test",
            **extra,  # type: ignore[arg-type]
        )


def test_versions_increment_and_store_the_evidence(
    warehouse: Warehouse, settings: Settings, trained: tuple[FeatureFrame, RetrainResult]
) -> None:
    frame, result = trained
    assert production_version(warehouse, "spy_direction") is None
    first = register(warehouse, settings, result, optimization_run_id="opt_1")
    second = register(warehouse, settings, result, parent_version=1)
    versions = list_versions(warehouse, "spy_direction")
    assert [v.version for v in versions] == [1, 2]
    stored = versions[0]
    assert stored == first
    assert stored.status == "candidate" and result.gate.passed
    assert stored.features == result.features
    assert stored.params["num_boost_round"] == result.num_boost_round
    assert stored.params["seed"] == 0 and stored.params["deterministic"] is True
    assert stored.oos_auc == pytest.approx(result.metrics.auc)
    assert stored.oos_log_loss == pytest.approx(result.metrics.log_loss)
    assert stored.oos_rows == result.metrics.n
    assert stored.training_start == frame.t0[result.window[0]].item()
    assert stored.training_end == result.training_end.item()
    assert stored.label_horizon_bars == 1
    assert stored.gate_values["baseline"] == result.gate.baseline
    assert stored.optimization_run_id == "opt_1" and stored.code_version == "0.1.0+test"
    assert versions[1] == second and second.parent_version == 1  # type: ignore[attr-defined]
    path = settings.artifacts / "models" / "spy_direction" / "v2" / "model.txt"
    assert stored.artifact_path is not None and path.is_file()


def test_a_loaded_model_predicts_like_the_trained_one(
    warehouse: Warehouse, settings: Settings, trained: tuple[FeatureFrame, RetrainResult]
) -> None:
    frame, result = trained
    register(warehouse, settings, result)
    booster = load_model(get_version(warehouse, "spy_direction", 1))
    assert result.model is not None
    np.testing.assert_allclose(booster.predict(frame.X[:50]), result.model.predict(frame.X[:50]))


def test_an_altered_artifact_is_refused(
    warehouse: Warehouse, settings: Settings, trained: tuple[FeatureFrame, RetrainResult]
) -> None:
    _, result = trained
    register(warehouse, settings, result)
    version = get_version(warehouse, "spy_direction", 1)
    assert version.artifact_path is not None
    with open(version.artifact_path, "a") as handle:
        handle.write("\n")
    with pytest.raises(ModelArtifactError, match="does not match its registered SHA-256"):
        load_model(version)
    with pytest.raises(ModelArtifactError, match="refusing to load it"):
        as_incumbent(version)


def test_a_missing_artifact_is_a_clear_error(
    warehouse: Warehouse, settings: Settings, trained: tuple[FeatureFrame, RetrainResult]
) -> None:
    _, result = trained
    register(warehouse, settings, result)
    version = get_version(warehouse, "spy_direction", 1)
    assert version.artifact_path is not None
    (settings.artifacts / "models" / "spy_direction" / "v1" / "model.txt").unlink()
    with pytest.raises(ModelArtifactError, match="cannot be read"):
        load_model(version)


def test_production_version_is_the_next_incumbent(
    warehouse: Warehouse, settings: Settings, trained: tuple[FeatureFrame, RetrainResult]
) -> None:
    frame, result = trained
    register(warehouse, settings, result)
    register(warehouse, settings, result, status="rejected")
    set_status(warehouse, "spy_direction", 1, "production", now=datetime(2025, 1, 2, tzinfo=UTC))
    production = production_version(warehouse, "spy_direction")
    assert production is not None and production.version == 1
    assert production.status_changed_at == datetime(2025, 1, 2, tzinfo=UTC)
    assert get_version(warehouse, "spy_direction", 2).status == "rejected"
    incumbent = as_incumbent(production)
    assert incumbent.label == "production v1"
    assert incumbent.model_text == result.model_text
    assert incumbent.trained_until == result.training_end
    assert "num_boost_round" not in incumbent.params
    with pytest.raises(ConfigError, match="no version 7"):
        get_version(warehouse, "spy_direction", 7)


def test_importances_are_stored_per_version(
    warehouse: Warehouse, settings: Settings, trained: tuple[FeatureFrame, RetrainResult]
) -> None:
    frame, result = trained
    register(warehouse, settings, result)
    table = outer_importances(frame, result)
    write_importances(warehouse, "spy_direction", 1, table)
    write_importances(
        warehouse,
        "spy_direction",
        2,
        [FeatureImportance("f_a", None, float("nan"), None, False)],
    )
    stored = read_importances(warehouse, "spy_direction", 1)
    assert stored == sorted(table, key=lambda row: row.feature)
    assert read_importances(warehouse, "spy_direction", 2) == [
        FeatureImportance("f_a", None, None, None, False)
    ]


def test_a_selection_with_no_feature_registers_without_an_artifact(
    warehouse: Warehouse, settings: Settings
) -> None:
    result = select_features(planted_frame(n=1500, signal=False, noise_features=2), config=FAST)
    version = register(warehouse, settings, result.retrain)
    assert version.status == "rejected"  # type: ignore[attr-defined]
    stored = get_version(warehouse, "spy_direction", 1)
    assert stored.artifact_path is None and stored.features == ()
    assert json.dumps(list(stored.gate_reasons))
    with pytest.raises(ModelArtifactError, match="no artifact"):
        load_model(stored)


def test_the_version_event_is_recorded(
    warehouse: Warehouse, settings: Settings, trained: tuple[FeatureFrame, RetrainResult]
) -> None:
    _, result = trained
    version = register(warehouse, settings, result)
    AuditTrail(warehouse).record(
        [version_event(version, "Retrained spy_direction: candidate v1.")]  # type: ignore[arg-type]
    )
    [event] = read_events(warehouse, event_types=["model_version_created"])
    assert event.component_id == "spy_ml"
    assert event.metrics["version"] == 1 and event.metrics["status"] == "candidate"
    assert (
        event.metrics["artifact_sha256"]
        == get_version(warehouse, "spy_direction", 1).artifact_sha256
    )


def test_model_ids_cannot_escape_the_artifacts_folder(
    warehouse: Warehouse, settings: Settings, trained: tuple[FeatureFrame, RetrainResult]
) -> None:
    _, result = trained
    with pytest.raises(ConfigError, match="directory name"):
        register_version(
            warehouse,
            settings.artifacts,
            model_id="../etc",
            result=result,
            component_id=None,
            code_version="x",
        )
