"""The gates a search result must pass before it becomes a candidate, each recorded with its value.

1. Deflated Sharpe ratio of the best trial >= dsr_min, deflated by every trial of the study.
2. Track length >= max(30, MinTRL at SR* = 0): enough days for the Sharpe to mean something.
3. PBO by CSCV (S blocks) <= pbo_max over the trials' daily P&L, near-copies merged first
   (trials correlated above pbo_min_correlation are one strategy: see stats.cluster_trials).
4. On the final untouched block, the candidate's daily P&L beats the incumbent's (one-sided paired t).
And, before any of them: the best parameters must differ from production.
Formulas live in runner.stats; this module only applies them and says the verdict in words.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class GateConfig:
    dsr_min: float = 0.95
    pbo_max: float = 0.3
    pbo_blocks: int = 16
    pbo_min_correlation: float = 0.6
    alpha: float = 0.05


@dataclass(frozen=True)
class GateReport:
    passed: bool
    reasons: tuple[str, ...]
    values: Mapping[str, Any] = field(default_factory=dict)

    @property
    def dsr(self) -> float | None:
        return self.values.get("dsr")

    @property
    def pbo(self) -> float | None:
        return self.values.get("pbo")

    @property
    def min_trl(self) -> float | None:
        return self.values.get("min_trl")

    @property
    def holdout_p(self) -> float | None:
        return self.values.get("holdout_p")


def evaluate_gates(
    *,
    trial_returns: NDArray[np.float64],
    best_column: int,
    n_trials: int,
    holdout_candidate: NDArray[np.float64],
    holdout_incumbent: NDArray[np.float64],
    same_as_incumbent: bool,
    config: GateConfig,
) -> GateReport:
    """Apply every gate. `trial_returns` is days × completed trials on one daily grid (zero days
    included); `best_column` the candidate's column; `n_trials` every trial the search ran,
    pruned ones included, because each was a look at the data."""
    from runner import stats  # scipy: loaded when a run is judged, not when the CLI starts

    reasons: list[str] = []
    values: dict[str, Any] = {
        "n_trials": n_trials,
        "track_length": int(trial_returns.shape[0]),
        "dsr_min": config.dsr_min,
        "pbo_max": config.pbo_max,
        "pbo_blocks": config.pbo_blocks,
        "pbo_min_correlation": config.pbo_min_correlation,
        "alpha": config.alpha,
    }
    if same_as_incumbent:
        reasons.append("The best trial has the production parameters: there is nothing to promote.")

    best = trial_returns[:, best_column]
    track = len(best)
    # SR of every complete trial on the grid; a trial that never traded has none and adds no
    # variance, but every trial (pruned ones too) counts in N: each was a look at the data.
    trial_srs = [
        sr
        for sr in (stats.sharpe(trial_returns[:, j]) for j in range(trial_returns.shape[1]))
        if sr is not None
    ]
    m = stats.moments(best)
    variance = float(np.var(trial_srs, ddof=1)) if len(trial_srs) >= 2 else 0.0
    sr0 = math.sqrt(variance) * stats.expected_max_z(max(n_trials, 1))
    dsr = None if m is None else stats.dsr(m.sr, m.t, m.skew, m.kurt, max(n_trials, 1), variance)
    values.update(
        dsr=dsr,
        sr=None if m is None else m.sr,
        sr0=sr0,
        skew=None if m is None else m.skew,
        kurtosis=None if m is None else m.kurt,
        trial_sr_variance=variance,
    )
    if m is None or dsr is None:
        reasons.append(
            "The best trial never traded in the search blocks: its Sharpe ratio is undefined."
        )
    elif dsr < config.dsr_min:
        reasons.append(
            f"Deflated Sharpe ratio {dsr:.3f} is below {config.dsr_min}: the best of "
            f"{n_trials} trials (daily SR {m.sr:.4f}) is not clear of what luck alone "
            f"gives the best of that many (expected maximum {sr0:.4f})."
        )

    min_trl = None if m is None else stats.min_trl(m.sr, 0.0, m.skew, m.kurt, alpha=config.alpha)
    values["min_trl"] = min_trl
    if m is not None and min_trl is None:
        reasons.append("The best trial loses money in the search blocks (Sharpe <= 0).")
    elif min_trl is not None and track < max(30.0, min_trl):
        reasons.append(
            f"Insufficient evidence: {track} days of track record, {max(30.0, min_trl):.0f} "
            f"needed (minimum track record length at {1 - config.alpha:.0%})."
        )

    clusters = stats.cluster_trials(trial_returns, config.pbo_min_correlation)
    values["pbo_clusters"] = clusters.n_clusters
    if track < 2 * config.pbo_blocks or clusters.n_clusters < 2:
        values["pbo"] = None
        reasons.append(
            f"PBO needs at least {2 * config.pbo_blocks} days and two distinct trading "
            f"strategies among the trials ({track} days, {clusters.n_clusters} found)."
        )
    else:
        result = stats.pbo(clusters.series, n_blocks=config.pbo_blocks)
        values["pbo"] = result.pbo
        if result.pbo > config.pbo_max:
            reasons.append(
                f"Probability of backtest overfitting {result.pbo:.2f} is above {config.pbo_max}: "
                f"among {clusters.n_clusters} distinct strategies the search tried, the one best "
                "in sample falls below the median out of sample too often."
            )

    paired = stats.paired_improvement_test(holdout_candidate, holdout_incumbent)
    difference = paired.mean_difference or 0.0
    values.update(
        holdout_p=paired.p_value, holdout_mean_difference=difference, holdout_days=paired.n
    )
    if not (paired.p_value < config.alpha and difference > 0):
        reasons.append(
            f"On the final untouched block ({paired.n} days) the candidate does not beat "
            f"production: mean daily difference {difference:+.5f}, one-sided "
            f"p = {paired.p_value:.3f} (needs < {config.alpha})."
        )
    return GateReport(passed=not reasons, reasons=tuple(reasons), values=values)
