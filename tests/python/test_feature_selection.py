"""Feature selection (task type feature_selection): permutation importance on out-of-sample
blocks keeps the planted informative features and drops the planted noise, inside every outer
training window (nested) as well as on the whole window; with no signal, nothing is kept."""

from __future__ import annotations

import numpy as np
import pytest

from runner.optimize.retrain import RetrainConfig, log_loss_rows, retrain
from runner.optimize.selection import (
    SelectionConfig,
    cv_importances,
    outer_importances,
    permutation_increases,
    select_features,
)
from tests.python.test_retrain import planted_frame

FAST = RetrainConfig(num_threads=1, window=None)


def test_permutation_importance_is_the_log_loss_increase_of_a_shuffle() -> None:
    """A model that reads column 0 only: shuffling column 0 costs log loss, column 1 costs 0."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 2))
    y = (X[:, 0] > 0).astype(float)

    def predict(rows: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-3.0 * rows[:, 0]))

    values = permutation_increases(predict(X), predict, X, y, 4, np.random.default_rng(1))
    assert values.shape == (2, 4)
    assert np.all(values[0] > 0.3)
    np.testing.assert_array_equal(values[1], np.zeros(4))
    # the base loss it is measured from
    assert float(log_loss_rows(y, predict(X)).mean()) < 0.3


def test_selection_keeps_the_planted_features_and_drops_the_noise() -> None:
    frame = planted_frame(n=3000, noise_features=6)
    result = select_features(frame, config=FAST)
    assert result.selected == ("f_a", "f_b")
    assert all(chosen == ("f_a", "f_b") for chosen in result.fold_features)  # nested, per fold
    by_name = {row.feature: row for row in result.importances}
    assert set(by_name) == set(frame.feature_names)
    for name in ("f_a", "f_b"):
        row = by_name[name]
        assert row.selected
        assert row.permutation_importance is not None and row.permutation_std is not None
        assert row.permutation_importance - 2 * row.permutation_std > 0.05
        assert row.gain is not None and row.gain > 0.2
    for name in (f"f_noise_{i}" for i in range(6)):
        row = by_name[name]
        assert not row.selected
        assert row.gain is not None and row.gain < 0.05
    assert sum(row.gain or 0.0 for row in result.importances) == pytest.approx(1.0)
    # the candidate trained on the chosen pair, judged on out-of-sample blocks
    retrained = result.retrain
    assert retrained.features == ("f_a", "f_b")
    assert retrained.metrics.auc is not None and retrained.metrics.auc > 0.8
    assert retrained.dropped_features["f_noise_0"] == "not chosen by feature selection"


def test_selection_on_noise_keeps_nothing_and_is_rejected() -> None:
    frame = planted_frame(n=2000, signal=False, noise_features=4)
    result = select_features(frame, config=FAST)
    assert result.selected == ()
    assert result.retrain.model is None and result.retrain.model_text is None
    assert not result.retrain.gate.passed
    # with no feature, each fold predicts its training base rate: no ranking skill at all
    assert result.retrain.metrics.auc is not None
    assert abs(result.retrain.metrics.auc - 0.5) < 0.05


def test_min_features_keeps_the_best_when_none_passes() -> None:
    frame = planted_frame(n=1500, signal=False, noise_features=3)
    rows = np.arange(len(frame) - 1)
    table = cv_importances(
        frame, rows, frame.feature_names, config=FAST, selection=SelectionConfig(min_features=1)
    )
    assert sum(row.selected for row in table) >= 1


def test_importances_of_a_retrain_on_its_outer_blocks() -> None:
    frame = planted_frame(n=2400, noise_features=3)
    result = retrain(frame, config=FAST)
    table = outer_importances(frame, result, selection=SelectionConfig(repeats=3))
    by_name = {row.feature: row for row in table}
    assert all(row.selected for row in table)  # every feature is in the final model
    assert (by_name["f_a"].permutation_importance or 0) > 0.1
    assert abs(by_name["f_noise_0"].permutation_importance or 0) < 0.01
