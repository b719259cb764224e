"""Decision statistics: every published test vector of the statistics reference, reproduced to its
stated precision, plus seeded calibration-by-simulation checks (each well under 3 s).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from runner.stats import (
    DeflatedSharpe,
    always_valid_p,
    deflated_sharpe,
    dsr,
    enough_evidence,
    expected_max_z,
    expected_max_z_approx,
    expected_max_z_exact,
    min_btl,
    min_trl,
    moments,
    msprt,
    msprt_two_arms,
    paired_improvement_test,
    pbo,
    psr,
    sharpe,
    srm_chi2,
    srm_sequential,
    two_sample_z,
    wilson_interval,
)

# --- §1 E[max Z_N] ---------------------------------------------------------------------------------


def test_expected_max_z_of_100_trials_matches_the_published_value() -> None:
    assert expected_max_z(100) == pytest.approx(2.5306028932016846, rel=1e-14)


REFERENCE_TABLE = {
    2: 0.520,
    5: 1.193,
    10: 1.575,
    20: 1.901,
    50: 2.276,
    100: 2.531,
    200: 2.766,
    500: 3.053,
    1000: 3.255,
}


@pytest.mark.parametrize(("n", "expected"), sorted(REFERENCE_TABLE.items()))
def test_expected_max_z_approximation_matches_the_reference_table(n: int, expected: float) -> None:
    assert expected_max_z_approx(n) == pytest.approx(expected, abs=5e-4)


@pytest.mark.parametrize(("n", "expected"), [(n, e) for n, e in REFERENCE_TABLE.items() if n >= 5])
def test_expected_max_z_uses_the_approximation_from_5_trials(n: int, expected: float) -> None:
    assert expected_max_z(n) == pytest.approx(expected, abs=5e-4)


def test_expected_max_z_integrates_exactly_below_5_trials() -> None:
    # The table's N = 2 entry (0.520) is the approximation; the exact value is 1/sqrt(pi).
    assert expected_max_z(1) == 0.0
    assert expected_max_z(2) == pytest.approx(1 / math.sqrt(math.pi), rel=1e-10)
    assert expected_max_z(3) == pytest.approx(1.5 / math.sqrt(math.pi), rel=1e-10)
    assert expected_max_z(4) == pytest.approx(expected_max_z_exact(4), rel=1e-12)
    assert expected_max_z_exact(100) == pytest.approx(2.50759, abs=1e-4)


# --- §1 PSR, DSR, MinTRL, MinBTL -------------------------------------------------------------------

PAPER_SR = 2.5 / math.sqrt(250)
PAPER_VAR = 0.5 / 250


def test_dsr_reproduces_the_papers_example_with_100_trials() -> None:
    sr0 = math.sqrt(PAPER_VAR) * expected_max_z(100)
    assert sr0 == pytest.approx(0.113172, abs=5e-7)
    value = dsr(PAPER_SR, 1250, -3.0, 10.0, n_trials=100, var_trials=PAPER_VAR)
    assert value == pytest.approx(0.90039683444939034, rel=1e-12)
    assert value == psr(PAPER_SR, sr0, 1250, -3.0, 10.0)


def test_dsr_of_the_papers_example_with_46_trials_just_passes_095() -> None:
    value = dsr(PAPER_SR, 1250, -3.0, 10.0, n_trials=46, var_trials=PAPER_VAR)
    assert value == pytest.approx(0.9505, abs=5e-5)
    assert value is not None and value >= 0.95


def test_psr_reproduces_the_published_hedge_fund_vector() -> None:
    value = psr(1.585 / math.sqrt(12), 0.0, 24, -2.448, 10.164)
    assert value == pytest.approx(0.91323430688486018, rel=1e-12)


def test_psr_reproduces_the_normal_returns_vector() -> None:
    assert psr(1.14, 1.0, 250, 0.0, 3.0) == pytest.approx(0.95728, abs=1e-4)


def test_min_trl_reproduces_the_published_vector_and_is_undefined_without_an_edge() -> None:
    assert min_trl(1.14, 1.0, 0.0, 3.0, alpha=0.05) == pytest.approx(228.73498, abs=5e-6)
    assert min_trl(1.0, 1.0, 0.0, 3.0) is None
    assert min_trl(0.5, 1.0, 0.0, 3.0) is None


def test_min_btl_reproduces_the_published_vector() -> None:
    assert min_btl(45, 1.0) == pytest.approx(4.998087, abs=5e-7)
    with pytest.raises(ValueError):
        min_btl(45, 0.0)


def test_psr_is_undefined_below_two_observations_and_floors_q() -> None:
    assert psr(0.1, 0.0, 1, 0.0, 3.0) is None
    # Two-point returns can make q(SR) = 0: the floor keeps PSR finite (here Z(+inf-like) = 1).
    assert psr(2.0, 0.0, 10, 1.0, 1.0) == pytest.approx(1.0)


def test_sharpe_and_moments_follow_the_reference_conventions() -> None:
    x = np.array([0.01, -0.02, 0.03, 0.0, 0.015, -0.005])
    assert sharpe(x) == pytest.approx(x.mean() / x.std(ddof=1))
    m = moments(x)
    assert m is not None
    assert m.sr == pytest.approx(x.mean() / x.std(ddof=1))
    assert m.skew == pytest.approx(sps.skew(x))
    assert m.kurt == pytest.approx(sps.kurtosis(x, fisher=False))
    assert m.t == 6


@pytest.mark.parametrize("returns", [[], [0.01], [0.0, 0.0, 0.0], [0.9] * 7])
def test_sharpe_is_undefined_not_zero_for_short_or_flat_series(returns: list[float]) -> None:
    assert sharpe(returns) is None
    assert moments(returns) is None
    result = deflated_sharpe([0.1, 0.0, -0.1], returns)
    assert result.dsr is None and result.sr0 is None
    assert result.reason is not None
    assert not result.supports_promotion()


def test_nan_returns_are_refused() -> None:
    with pytest.raises(ValueError):
        sharpe([0.1, float("nan"), 0.2])


def test_deflated_sharpe_from_returns_agrees_with_the_lower_level_formula() -> None:
    rng = np.random.default_rng(7)
    best = rng.normal(0.08, 1.0, 750)
    trial_srs = list(rng.normal(0.0, 0.04, 49)) + [float(best.mean() / best.std(ddof=1))]
    result = deflated_sharpe(trial_srs, best)
    m = moments(best)
    assert m is not None
    var = float(np.var(trial_srs, ddof=1))
    assert isinstance(result, DeflatedSharpe) and result.reason is None
    assert result.n_trials == 50 and result.t == 750
    assert result.variance_of_trials == pytest.approx(var)
    assert result.sr0 == pytest.approx(math.sqrt(var) * expected_max_z(50))
    assert result.dsr == pytest.approx(dsr(m.sr, m.t, m.skew, m.kurt, 50, var))
    assert result.min_trl == pytest.approx(min_trl(m.sr, 0.0, m.skew, m.kurt))


def test_a_single_trial_is_not_deflated() -> None:
    rng = np.random.default_rng(3)
    best = rng.normal(0.05, 1.0, 400)
    result = deflated_sharpe([0.05], best)
    m = moments(best)
    assert m is not None
    assert result.sr0 == 0.0 and result.variance_of_trials is None
    assert result.dsr == pytest.approx(psr(m.sr, 0.0, m.t, m.skew, m.kurt))


def test_promotion_needs_max_30_and_min_trl_observations() -> None:
    assert not enough_evidence(0.5, 29, 0.0, 3.0)  # MinTRL ≈ 13 but T < 30
    assert enough_evidence(0.5, 30, 0.0, 3.0)
    assert not enough_evidence(0.1, 200, 0.0, 3.0)  # MinTRL ≈ 272
    assert not enough_evidence(-0.1, 10_000, 0.0, 3.0)


def test_dsr_of_the_best_of_100_noise_trials_rarely_passes_095() -> None:
    """Pure noise, 100 trials × 500 days, 60 seeds: the best in-sample trial fails DSR >= 0.95."""
    passed = 0
    best_positive = 0
    for seed in range(60):
        rng = np.random.default_rng(seed)
        pnl = rng.normal(0.0, 0.01, (500, 100))
        srs = pnl.mean(axis=0) / pnl.std(axis=0, ddof=1)
        best = int(np.argmax(srs))
        best_positive += srs[best] > 0
        result = deflated_sharpe(list(srs), pnl[:, best])
        assert result.dsr is not None
        passed += result.dsr >= 0.95
    assert best_positive == 60  # "promote the best in-sample" would promote every time
    assert passed <= 3  # ≤ 5% of seeds


# --- §2 PBO by CSCV -------------------------------------------------------------------------------


def _hand_vector() -> np.ndarray:
    blocks = [[2.0, 0.9, -0.5], [-1.0, 0.9, -0.5], [3.0, 0.9, -0.5], [-2.0, 0.9, -0.5]]
    return np.array([row for row in blocks for _ in range(2)])


def test_pbo_reproduces_the_hand_checkable_vector() -> None:
    result = pbo(_hand_vector(), n_blocks=4, metric="mean")
    assert result.n_combinations == 6
    assert result.pbo == pytest.approx(4 / 6)
    # Combinations in itertools order {01, 02, 03, 12, 13, 23}: OOS ranks 3, 1, 2, 2, 2, 3.
    expected = [math.log(w / (1 - w)) for w in (3 / 4, 1 / 4, 2 / 4, 2 / 4, 2 / 4, 3 / 4)]
    np.testing.assert_allclose(result.logits, expected, atol=1e-12)


def test_pbo_accepts_an_injected_metric_function() -> None:
    result = pbo(_hand_vector(), n_blocks=4, metric=lambda x: x.mean(axis=0))
    assert result.pbo == pytest.approx(4 / 6)


def test_pbo_fast_sharpe_agrees_with_the_same_metric_computed_on_rows() -> None:
    rng = np.random.default_rng(11)
    matrix = rng.normal(0.0, 1.0, (203, 12))
    matrix[:103, 3] = 0.0  # starts late: its first four blocks, one whole half, are all zero
    fast = pbo(matrix, n_blocks=8)

    def per_row_sharpe(x: np.ndarray) -> np.ndarray:
        std = x.std(axis=0, ddof=1)
        return np.where(std > 0, x.mean(axis=0) / np.where(std > 0, std, 1.0), 0.0)

    slow = pbo(matrix, n_blocks=8, metric=per_row_sharpe)
    np.testing.assert_allclose(fast.logits, slow.logits, atol=1e-12)
    assert fast.dropped_rows == 203 % 8


def test_pbo_drops_never_trading_columns_and_the_oldest_rows() -> None:
    rng = np.random.default_rng(5)
    matrix = rng.normal(0.0, 1.0, (70, 5))
    matrix[:, 2] = 0.0
    result = pbo(matrix, n_blocks=4)
    assert result.dropped_columns == (2,)
    assert result.kept_columns == (0, 1, 3, 4)
    assert result.n_trials == 4
    assert result.dropped_rows == 2
    # Dropping the oldest rows means the newest 68 rows decide.
    assert np.array_equal(result.logits, pbo(matrix[2:], n_blocks=4).logits)


def test_pbo_refuses_too_few_rows_odd_blocks_and_a_single_trial() -> None:
    rng = np.random.default_rng(1)
    with pytest.raises(ValueError, match="2S"):
        pbo(rng.normal(size=(31, 4)), n_blocks=16)
    with pytest.raises(ValueError, match="even"):
        pbo(rng.normal(size=(100, 4)), n_blocks=5)
    with pytest.raises(ValueError, match="at least 2"):
        pbo(np.column_stack([rng.normal(size=64), np.zeros(64)]), n_blocks=4)


def test_pbo_ties_take_the_average_rank() -> None:
    # Columns 1 and 2 are identical: whichever is picked in-sample shares rank 2.5 of 3 OOS.
    base = np.array([[-1.0, 1.0, 1.0]] * 4 + [[-1.0, 2.0, 2.0]] * 4)
    result = pbo(base, n_blocks=2, metric="mean")
    omega = 2.5 / 4
    np.testing.assert_allclose(result.logits, [math.log(omega / (1 - omega))] * 2)


def test_pbo_on_1000_by_200_with_16_blocks_uses_every_combination() -> None:
    # Its speed is measured by benchmarks/, not asserted here.
    matrix = np.random.default_rng(0).normal(0.0, 0.01, (1000, 200))
    result = pbo(matrix, n_blocks=16)
    assert result.n_combinations == 12_870
    assert 0.0 <= result.pbo <= 1.0


def test_pbo_on_pure_noise_averages_about_one_half() -> None:
    values = [
        pbo(np.random.default_rng(seed).normal(0.0, 0.01, (160, 20)), n_blocks=8).pbo
        for seed in range(30)
    ]
    assert 0.35 <= float(np.mean(values)) <= 0.65


def test_pbo_is_small_when_one_trial_has_a_real_edge() -> None:
    """One of 20 columns has a daily SR of 0.2 over 500 days: the search finds it and it holds OOS."""
    values = []
    for seed in range(10):
        matrix = np.random.default_rng(seed).normal(0.0, 1.0, (500, 20))
        matrix[:, 7] += 0.2
        values.append(pbo(matrix, n_blocks=10).pbo)
    assert float(np.mean(values)) <= 0.2


# --- §4 Live A/B: always-valid test, fixed horizon, SRM -------------------------------------------


def test_fixed_horizon_z_reproduces_the_ab_vector() -> None:
    z, p = two_sample_z(0.0010, 0.02, 1000, 0.0030, 0.02, 1000)
    assert z == pytest.approx(2.2361, abs=5e-5)
    assert p == pytest.approx(0.02535, abs=5e-6)


def test_always_valid_p_and_confidence_sequence_reproduce_the_ab_vector() -> None:
    look = msprt_two_arms(0.0010, 0.02, 1000, 0.0030, 0.02, 1000, alpha=0.05, n_planned=5000)
    assert look.p_value == pytest.approx(0.30525, abs=5e-6)
    assert look.half_width == pytest.approx(0.0027940, abs=5e-8)
    assert look.lower < 0 < look.upper and not look.reject
    # The same look in the reference's own terms: n = 1000 pairs, V = var of a pair's difference.
    pairs = msprt(0.0020, 2 * 0.02**2, 1000, alpha=0.05, n_planned=5000)
    assert pairs.log_lambda == pytest.approx(look.log_lambda, rel=1e-12)
    assert pairs.half_width == pytest.approx(look.half_width, rel=1e-12)


def test_always_valid_p_is_a_running_minimum_and_dual_to_the_sequence() -> None:
    look = msprt(0.002, 0.0008, 1000, previous_p=0.2)
    assert look.p_value == 0.2
    assert always_valid_p(1.0, look.log_lambda) == pytest.approx(0.30525, abs=5e-6)
    assert always_valid_p(1.0, -1.0) == 1.0
    # Λ >= 1/α exactly when θ0 falls outside the confidence sequence.
    edge = msprt(0.002, 0.0008, 1000, theta0=0.002 - look.half_width)
    assert edge.log_lambda == pytest.approx(-math.log(0.05), rel=1e-9)


@pytest.mark.parametrize(
    ("observed", "shares", "chi2", "p", "alarm"),
    [
        ((5100, 4900), (0.5, 0.5), 4.0, 0.0455, False),
        ((9100, 10900), (0.5, 0.5), 162.0, None, True),
        ((1050, 8950), (0.1, 0.9), 2.778, 0.0956, False),
    ],
)
def test_srm_reproduces_the_published_vectors(
    observed: tuple[int, int],
    shares: tuple[float, float],
    chi2: float,
    p: float | None,
    alarm: bool,
) -> None:
    stat, p_value = srm_chi2(observed, shares)
    assert stat == pytest.approx(chi2, abs=5e-4)
    if p is not None:
        assert p_value == pytest.approx(p, abs=5e-5)
    assert (p_value < 0.001) is alarm


def test_sequential_srm_is_one_over_the_dirichlet_multinomial_bayes_factor() -> None:
    # Hand-checkable: counts (2, 0) at 50/50, prior Dirichlet(50, 50):
    # BF = B(52, 50) / B(50, 50) / 0.5² = (50·51)/(100·101) / 0.25 = 2550/2525.
    assert srm_sequential([2, 0], [0.5, 0.5]) == pytest.approx(2525 / 2550, rel=1e-12)
    assert srm_sequential([1, 1], [0.5, 0.5]) == 1.0  # BF < 1: evidence for the planned split
    assert srm_sequential([9100, 10900], [0.5, 0.5]) < 1e-30
    with pytest.raises(ValueError):
        srm_sequential([1, 2, 3], [0.5, 0.5])


# --- §5 Wilson intervals and the paired improvement test -------------------------------------------


def test_wilson_interval_matches_the_score_formula() -> None:
    successes, n, z = 8, 10, sps.norm.ppf(0.975)
    p_hat = successes / n
    centre = (p_hat + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p_hat * (1 - p_hat) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    low, high = wilson_interval(successes, n)
    assert (low, high) == pytest.approx((centre - half, centre + half), abs=1e-12)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.27753), abs=5e-6)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_paired_improvement_test_is_one_sided_on_the_daily_difference() -> None:
    rng = np.random.default_rng(2)
    incumbent = rng.normal(0.0, 1.0, 250)
    candidate = incumbent + rng.normal(0.1, 0.3, 250)
    result = paired_improvement_test(candidate, incumbent)
    diff = candidate - incumbent
    t = diff.mean() / (diff.std(ddof=1) / math.sqrt(diff.size))
    assert result.t == pytest.approx(t)
    assert result.p_value == pytest.approx(sps.t.sf(t, diff.size - 1))
    assert result.mean_difference == pytest.approx(diff.mean())
    assert result.n == 250 and result.reason is None
    worse = paired_improvement_test(incumbent, candidate)
    assert worse.p_value == pytest.approx(1 - result.p_value)


def test_paired_improvement_test_is_undefined_for_one_day_or_a_constant_difference() -> None:
    one = paired_improvement_test([0.2], [0.1])
    assert one.p_value == 1.0 and one.t is None and one.reason is not None
    same = paired_improvement_test([1.5, 2.5, 3.5], [0.5, 1.5, 2.5])
    assert same.p_value == 1.0 and same.t is None and same.reason is not None
    with pytest.raises(ValueError):
        paired_improvement_test([0.1, 0.2], [0.1])
