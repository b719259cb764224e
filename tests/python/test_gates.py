"""The gates on matrices with known answers: each gate fails for its own reason, in words, and a
clear planted edge passes them all. No warehouse, no search: runner.optimize.gates alone."""

from __future__ import annotations

import numpy as np
import pytest

from runner import stats
from runner.optimize.gates import GateConfig, evaluate_gates

DAYS = 750


def noise(seed: int, columns: int, sd: float = 0.01) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, sd, (DAYS, columns))


def planted(seed: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A search that found an edge, as a Bayesian search does: 3 early noise trials, then 47
    variations of one strategy with a daily SR near 0.2; the holdout candidate keeps that edge,
    the incumbent is noise."""
    rng = np.random.default_rng(seed)
    edge = rng.normal(0.002, 0.01, DAYS)
    copies = edge[:, None] + rng.normal(0.0, 0.003, (DAYS, 47))
    matrix = np.column_stack([noise(seed + 1, 3), copies])
    holdout_incumbent = rng.normal(0.0, 0.01, 250)
    holdout_candidate = holdout_incumbent + rng.normal(0.002, 0.004, 250)
    return matrix, holdout_candidate, holdout_incumbent


def judge(matrix: np.ndarray, cand: np.ndarray, inc: np.ndarray, **kwargs: object):  # type: ignore[no-untyped-def]
    best = int(np.argmax(matrix.mean(axis=0) / matrix.std(axis=0)))
    return evaluate_gates(
        trial_returns=matrix,
        best_column=best,
        n_trials=int(kwargs.pop("n_trials", matrix.shape[1])),  # type: ignore[call-overload]
        holdout_candidate=cand,
        holdout_incumbent=inc,
        same_as_incumbent=bool(kwargs.pop("same", False)),
        config=GateConfig(),
    )


def test_a_planted_edge_passes_every_gate_with_its_values_recorded() -> None:
    report = judge(*planted())
    assert report.passed, report.reasons
    values = report.values
    assert values["dsr"] >= 0.95 and values["pbo"] <= 0.3 and values["holdout_p"] < 0.05
    assert values["track_length"] == DAYS and values["min_trl"] < DAYS
    # near-copies are one strategy: the noise trials and one cluster for the edge
    assert values["pbo_clusters"] <= 4
    assert {"dsr_min", "pbo_max", "pbo_blocks", "alpha", "sr0"} <= set(values)


def test_the_best_of_pure_noise_fails_dsr_and_pbo() -> None:
    matrix = noise(7, 100)
    inc = np.random.default_rng(8).normal(0, 0.01, 250)
    report = judge(matrix, inc + 0.0001, inc)
    assert not report.passed
    text = " ".join(report.reasons)
    assert "Deflated Sharpe ratio" in text and "luck alone" in text
    assert report.values["dsr"] < 0.95


def test_pruned_trials_count_in_n_and_raise_the_bar() -> None:
    matrix, cand, inc = planted()
    few = judge(matrix, cand, inc)
    many = judge(matrix, cand, inc, n_trials=5000)
    assert many.values["sr0"] > few.values["sr0"] and many.values["dsr"] < few.values["dsr"]


def test_production_parameters_are_nothing_to_promote() -> None:
    report = judge(*planted(), same=True)
    assert not report.passed
    assert report.reasons[0].startswith("The best trial has the production parameters")


def test_a_candidate_no_better_on_the_holdout_is_refused() -> None:
    matrix, _, inc = planted()
    report = judge(matrix, inc.copy(), inc)
    assert not report.passed
    assert any("final untouched block" in r for r in report.reasons)
    assert report.values["holdout_p"] == 1.0


def test_a_short_track_record_is_insufficient_evidence() -> None:
    _, cand, inc = planted()
    rng = np.random.default_rng(4)
    weak = rng.normal(0.0, 0.01, 31)
    weak += 0.1 * weak.std() - weak.mean()  # exactly SR 0.1: MinTRL about 270 days
    matrix = np.column_stack([weak, noise(5, 3)[:31]])
    report = judge(matrix, cand, inc)
    assert any(r.startswith("Insufficient evidence") for r in report.reasons)
    assert any(r.startswith("PBO needs at least 32 days") for r in report.reasons)


def test_trials_that_are_copies_of_one_strategy_have_no_pbo() -> None:
    rng = np.random.default_rng(1)
    base = rng.normal(0.001, 0.01, DAYS)
    matrix = base[:, None] + rng.normal(0, 0.0005, (DAYS, 20))
    report = judge(matrix, base[:250] + 0.01, base[:250])
    assert report.values["pbo"] is None and report.values["pbo_clusters"] == 1
    assert any("two distinct trading strategies" in r for r in report.reasons)


@pytest.mark.parametrize("min_correlation", [0.3, 0.6, 0.9])
def test_clusters_merge_near_copies_only(min_correlation: float) -> None:
    rng = np.random.default_rng(2)
    a, b = rng.normal(0, 0.01, (2, DAYS))
    matrix = np.column_stack(
        [a + rng.normal(0, 0.001, DAYS), a + rng.normal(0, 0.001, DAYS), b, np.zeros(DAYS)]
    )
    clusters = stats.cluster_trials(matrix, min_correlation)
    assert clusters.n_clusters == 2
    assert clusters.labels[0] == clusters.labels[1] != clusters.labels[2]
    assert clusters.labels[3] == -1  # never traded
    np.testing.assert_allclose(clusters.series[:, clusters.labels[0]], matrix[:, :2].mean(axis=1))
