"""Decision quality (benchmarks/decision_quality.py): the --quick run drives the engine's search,
gates and A/B rule on worlds whose truth is known, and its rates land where the full run's do
(docs/statistics.md), within bounds wide enough for a dozen seeds. Also the two deliberate rules
the full run led to: the 10% stage is a canary, and the default margin rolls back a candidate as
soon as it is confidently worse."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from benchmarks.decision_quality import main, run_ab
from runner.config import Settings
from runner.deploy.abtest import Arms, Design, decide
from runner.deploy.rollout import design_for
from runner.thresholds import Threshold


@pytest.fixture(scope="module")
def quick() -> dict[str, Any]:
    return main(["--quick"])


def test_the_gates_refuse_noise_that_the_best_in_sample_peer_promotes(
    quick: dict[str, Any],
) -> None:
    null = quick["search"]["null"]
    assert null["seeds"] == 3
    assert null["gates_pass"]["k"] <= 1  # about 1 in 50 in the full run
    assert null["pipeline_false_promotion"]["k"] == 0  # gates then an A/B test with δ = 0
    assert null["peer_promotes"]["k"] >= 2  # the peer promoted every null search of the full run


def test_pbo_is_a_coin_flip_on_noise_and_low_with_a_planted_edge(quick: dict[str, Any]) -> None:
    null, edge = quick["search"]["null"], quick["search"]["edge"]
    assert null["pbo_defined"] == edge["pbo_defined"] == 3
    assert 0.25 <= null["pbo_mean"] <= 0.8
    assert edge["pbo_mean"] < null["pbo_mean"] and edge["pbo_mean"] <= 0.35


def test_the_ab_ramp_promotes_gains_rolls_back_losses_and_holds_on_equals(
    quick: dict[str, Any],
) -> None:
    ab = quick["ab"]
    assert ab["+0.15"]["promote"]["k"] >= 9 and ab["+0.15"]["rollback"]["k"] == 0
    assert ab["-0.20"]["rollback"]["k"] >= 10 and ab["-0.20"]["promote"]["k"] == 0
    assert ab["-0.20"]["median_rollback_per_arm"] <= 1200
    assert ab["+0.00"]["promote"]["k"] <= 1 and ab["+0.00"]["rollback"]["k"] <= 1
    assert ab["+0.05"]["rollback"]["k"] == 0
    assert set(quick["search"]) == {"null", "edge"} and quick["config"]["deploy_planned_n"] > 0


def test_one_simulated_test_follows_the_engine_ramp_to_its_end() -> None:
    better = run_ab(0.5, seed=1, batch=50)
    assert better.action == "promote" and better.stage == 50 and "lower bound" in better.reason
    worse = run_ab(-0.5, seed=1, batch=50)
    assert worse.action == "rollback" and worse.n_treatment < better.n_treatment


def _arms(control: np.ndarray, treatment: np.ndarray) -> Arms:
    return Arms(
        control=control,
        treatment=treatment,
        stage_control=len(control),
        stage_treatment=len(treatment),
        assigned_control=None,
        assigned_treatment=None,
        treatment_drawdown=0.0,
        treatment_win_rate=None,
        control_win_rate=None,
    )


def test_the_10_percent_stage_is_a_canary_that_advances_on_its_minimum_trades() -> None:
    design = design_for(Settings(), 0.01, Threshold(0.15, None), Threshold(0.45, 20))
    rng = np.random.default_rng(3)
    # 30 treatment trades against 270: far too few to prove anything either way.
    arms = _arms(rng.normal(0.0, 0.01, 270), rng.normal(0.0, 0.01, 30))
    verdict = decide(
        arms, design, stage=10, stage_elapsed_days=1, extended=False, paused=False, previous_p=None
    )
    assert verdict.action == "advance" and "Canary" in verdict.reason
    assert verdict.look.lower is not None and verdict.look.lower < -design.margin
    few = _arms(rng.normal(0.0, 0.01, 200), rng.normal(0.0, 0.01, 20))
    assert (
        decide(
            few,
            design,
            stage=10,
            stage_elapsed_days=1,
            extended=False,
            paused=False,
            previous_p=None,
        ).action
        == "hold"
    )


def test_the_default_margin_rolls_back_once_the_treatment_is_confidently_worse() -> None:
    settings = Settings()
    assert settings.deploy_margin_sigma == 0.0
    design = design_for(settings, 0.01, Threshold(0.15, None), Threshold(0.45, 20))
    rng = np.random.default_rng(12)
    worse = _arms(rng.normal(0.0, 0.01, 800), rng.normal(-0.0018, 0.01, 800))

    def action(margin: float) -> str:
        d = Design(**{**design.__dict__, "margin": margin})
        return decide(
            worse, d, stage=50, stage_elapsed_days=1, extended=False, paused=False, previous_p=None
        ).action

    # The sequence is entirely below 0 but not below −0.05σ: the old margin kept waiting.
    assert action(design.margin) == "rollback"
    assert action(0.05 * 0.01) == "hold"
