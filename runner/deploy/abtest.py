"""The A/B test's statistics and the rule that moves a stage forward, back or nowhere.

Pure: trade returns and assignment counts in, a `Verdict` out; nothing is read or written here
(runner/deploy/rollout.py does both). The primary metric is the net return per trade, compared
with the always-valid confidence sequence of the mixture SPRT (runner.stats.msprt_two_arms,
statistics.md §4), so looking after every batch of trades never inflates the error rates.

The rule, in the order it is applied:
1. guardrails (hard limits): the treatment's drawdown reaching the critical drawdown, or its
   win rate confidently under the critical win rate (its Wilson 99% upper bound below it) while
   the control's is confidently above it and its return per trade is no better, rolls back;
2. a sample-ratio mismatch on the assigned units (always-valid p < srm_alpha) pauses the test: its
   numbers cannot be trusted, so nothing but a guardrail or a person moves it;
3. the upper confidence bound below −m rolls back (the treatment is worse by more than the
   margin; m = 0 by default: confidently worse at all), once each arm has the minimum trades
   since the test started;
4. with the stage's minimum trades in both arms: stage 10 advances to 50 (it is a canary: it
   exists to catch guardrail breaches and gross harm on a tenth of the signals, and proving
   non-inferiority there took thousands of trades, benchmarks/decision_quality.py); stage 50
   promotes (100%) when the lower bound is above 0 (better);
5. the planned size spent without a decision ends the test inconclusive (incumbent kept);
6. a stage whose time box has passed without its minimum trades is extended once, then the test
   ends inconclusive: too little evidence is a state, never a promotion or a rollback.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from runner.stats import msprt_two_arms, srm_sequential, wilson_interval

FloatArray = npt.NDArray[np.float64]
GUARDRAIL_CONFIDENCE = 0.99
Action = Literal["hold", "advance", "promote", "rollback", "pause", "extend", "inconclusive"]


@dataclass(frozen=True)
class Design:
    """Fixed when the test starts and stored with it."""

    alpha: float
    planned_n: int  # N*: trades in both arms together
    margin: float  # m, in units of net return per trade (>= 0; 0 by default: confidently worse)
    min_n_per_arm: int
    stage_days: float
    critical_drawdown: float  # positive fraction
    critical_win_rate: float | None
    win_rate_min_trades: int
    srm_alpha: float = 0.001

    def guardrails(self) -> dict[str, Any]:
        return {
            "critical_drawdown": self.critical_drawdown,
            "critical_win_rate": self.critical_win_rate,
            "win_rate_min_trades": self.win_rate_min_trades,
            "srm_alpha": self.srm_alpha,
            "stage_days": self.stage_days,
        }


@dataclass(frozen=True)
class Arms:
    """What the test has seen: net returns per trade of each arm since the test started (in
    exit order), the trades each arm made in the current stage, the units each arm was assigned
    in the current stage (None when no assignment was logged), and the treatment's equity."""

    control: FloatArray
    treatment: FloatArray
    stage_control: int
    stage_treatment: int
    assigned_control: int | None
    assigned_treatment: int | None
    treatment_drawdown: float
    treatment_win_rate: float | None
    control_win_rate: float | None
    treatment_wins: tuple[int, int] | None = None  # (winning, decided) trades of the treatment
    control_wins: tuple[int, int] | None = None


@dataclass(frozen=True)
class Look:
    n_control: int
    n_treatment: int
    estimate: float | None  # mean treatment − mean control
    lower: float | None
    upper: float | None
    p_value: float | None  # always valid; running minimum across looks
    srm_p: float | None
    improvement_percent: float | None

    def to_dict(self) -> dict[str, Any]:
        return {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in asdict(self).items()
        }


@dataclass(frozen=True)
class Verdict:
    action: Action
    reason: str
    look: Look


def sequence_bounds(
    control: FloatArray,
    treatment: FloatArray,
    alpha: float,
    planned_n: int,
    previous_p: float | None = None,
) -> tuple[float, float, float] | None:
    """(lower, upper, always-valid p) of the difference in mean return per trade, treatment
    minus control; None until each arm has two trades with spread. The one formula both the
    test's looks and the report's drawing of its sequence use."""
    if len(control) < 2 or len(treatment) < 2:
        return None
    sd_c, sd_t = float(control.std(ddof=1)), float(treatment.std(ddof=1))
    if sd_c == 0 and sd_t == 0:
        return None
    seq = msprt_two_arms(
        float(control.mean()),
        sd_c,
        len(control),
        float(treatment.mean()),
        sd_t,
        len(treatment),
        alpha=alpha,
        n_planned=planned_n,
        previous_p=1.0 if previous_p is None else previous_p,
    )
    return seq.lower, seq.upper, seq.p_value


def look(arms: Arms, design: Design, previous_p: float | None) -> Look:
    """The latest statistics (srm_p is set by decide, which knows the stage's split); bounds are
    None until each arm has two trades with spread."""
    c, t = arms.control, arms.treatment
    estimate = lower = upper = p = improvement = None
    if len(c) and len(t):
        estimate = float(t.mean() - c.mean())
        base = float(c.mean())
        improvement = 100.0 * estimate / abs(base) if base != 0 else None
    bounds = sequence_bounds(c, t, design.alpha, design.planned_n, previous_p)
    if bounds is not None:
        lower, upper, p = bounds
    return Look(len(c), len(t), estimate, lower, upper, p, None, improvement)


def srm(assigned_control: int, assigned_treatment: int, treatment_share: float) -> float | None:
    """Always-valid sample-ratio-mismatch p on the assigned units of a stage (None without
    units): the check runs at every look, so a fixed-sample χ² would pause healthy tests."""
    if assigned_control + assigned_treatment == 0 or not 0 < treatment_share < 1:
        return None
    return srm_sequential(
        [assigned_control, assigned_treatment], [1 - treatment_share, treatment_share]
    )


def decide(
    arms: Arms,
    design: Design,
    *,
    stage: int,
    stage_elapsed_days: float,
    extended: bool,
    paused: bool,
    previous_p: float | None,
) -> Verdict:
    """Apply the rule of the module docstring to the latest look."""
    current = look(arms, design, previous_p)
    share = stage / 100.0
    srm_p = None
    if arms.assigned_control is not None and arms.assigned_treatment is not None:
        srm_p = srm(arms.assigned_control, arms.assigned_treatment, share)
    current = replace(current, srm_p=srm_p)
    m = design.margin

    if arms.treatment_drawdown >= design.critical_drawdown:
        return Verdict(
            "rollback",
            f"Guardrail: the treatment's drawdown {arms.treatment_drawdown:.1%} reached the "
            f"critical {design.critical_drawdown:.1%}.",
            current,
        )
    cw = design.critical_win_rate
    wins, control_wins = arms.treatment_wins, arms.control_wins
    if (
        cw is not None
        and wins is not None
        and wins[1] >= design.win_rate_min_trades
        and (current.estimate is None or current.estimate <= 0)
        and wilson_interval(wins[0], wins[1], GUARDRAIL_CONFIDENCE)[1] < cw
        and (control_wins is None or wilson_interval(*control_wins)[0] >= cw)
    ):
        # Confidently under the line (at 99%: the guardrail is looked at after every batch),
        # while the control is confidently above it, and not paid for by larger wins: a trend
        # follower wins less than half its trades by design, which is style, not harm.
        bound = wilson_interval(wins[0], wins[1], GUARDRAIL_CONFIDENCE)[1]
        return Verdict(
            "rollback",
            f"Guardrail: the treatment won {wins[0]} of {wins[1]} trades; even the upper 99% "
            f"bound of its win rate, {bound:.1%}, is under the critical {cw:.1%}, while the "
            "control's is above it and the treatment's return per trade is no better.",
            current,
        )
    if srm_p is not None and srm_p < design.srm_alpha:
        return Verdict(
            "pause",
            f"Sample ratio mismatch: {arms.assigned_control} control / "
            f"{arms.assigned_treatment} treatment units at a {stage}% split (always-valid p = "
            f"{srm_p:.2g} < {design.srm_alpha:g}); the assignment is broken, so the numbers "
            "cannot be trusted. Paused until someone looks.",
            current,
        )
    if paused:
        return Verdict("hold", "Paused after a sample ratio mismatch.", current)
    lower, upper = current.lower, current.upper
    # The sequence's variance is estimated from the trades: with fewer than the minimum per arm
    # the estimate, not the treatment, would decide. Guardrails above need no minimum.
    enough = min(arms.stage_control, arms.stage_treatment) >= design.min_n_per_arm
    total_enough = min(len(arms.control), len(arms.treatment)) >= design.min_n_per_arm
    if upper is not None and upper < -m and total_enough:
        return Verdict(
            "rollback",
            f"The treatment is worse: its confidence sequence for the difference in return per "
            f"trade is [{lower:.5f}, {upper:.5f}], entirely below {_line(m)} "
            f"({current.n_treatment} treatment and {current.n_control} control trades).",
            current,
        )
    if enough and stage == 10:
        # The canary passed: no guardrail, and not worse beyond −m on the stage's minimum
        # trades. At a 10/90 split a trade teaches the test 2.8× less than at 50/50, so the
        # evidence for promotion is gathered at 50% (statistics.md §5 targets, docs/statistics.md).
        return Verdict(
            "advance",
            f"Canary passed at 10%: no guardrail breached and not confidently worse (confidence "
            f"sequence [{_fmt(lower)}, {_fmt(upper)}], rollback below {_line(m)}) with "
            f"{arms.stage_treatment} treatment and {arms.stage_control} control trades in the "
            "stage; moving to 50%.",
            current,
        )
    if enough and lower is not None:
        if stage == 50 and lower > 0:
            return Verdict(
                "promote",
                f"Better at 50%: lower bound {lower:.5f} > 0 (estimate {current.estimate:+.5f} "
                f"per trade, always-valid p = {current.p_value:.3g}); promoting to 100%.",
                current,
            )
    if current.n_control + current.n_treatment >= design.planned_n:
        return Verdict(
            "inconclusive",
            f"The planned {design.planned_n} trades are spent and the confidence sequence "
            f"[{_fmt(lower)}, {_fmt(upper)}] still straddles the decision bounds; the incumbent "
            "stays.",
            current,
        )
    # The time box runs from the stage's start; its one extension doubles it.
    if stage_elapsed_days >= design.stage_days * (2 if extended else 1) and not enough:
        have = f"{arms.stage_treatment} treatment and {arms.stage_control} control trades"
        if not extended:
            return Verdict(
                "extend",
                f"The {stage}% stage reached its time box of {design.stage_days:g} days with {have}"
                f" (needs {design.min_n_per_arm} per arm); extended once.",
                current,
            )
        return Verdict(
            "inconclusive",
            f"The {stage}% stage ran out of its extended time box with {have} (needs "
            f"{design.min_n_per_arm} per arm): too little evidence; the incumbent stays.",
            current,
        )
    return Verdict("hold", _waiting(arms, design, current, stage, enough), current)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.5f}"


def _waiting(arms: Arms, design: Design, current: Look, stage: int, enough: bool) -> str:
    if not enough:
        return (
            f"Collecting: {arms.stage_treatment} treatment and {arms.stage_control} control trades "
            f"in the {stage}% stage, {design.min_n_per_arm} per arm needed."
        )
    return (
        f"Undecided: confidence sequence [{_fmt(current.lower)}, {_fmt(current.upper)}], the "
        f"lower bound must be > 0 to promote (or the upper bound < {-design.margin:.5f} to roll "
        "back)."
    )


def drawdown(pnl: FloatArray, capital: float) -> float:
    """Largest fall of equity (capital plus cumulative P&L, in exit order) from its peak."""
    if len(pnl) == 0 or capital <= 0:
        return 0.0
    equity = capital + np.cumsum(pnl)
    peak = np.maximum.accumulate(np.r_[capital, equity])[1:]
    return float(np.max((peak - equity) / peak, initial=0.0))


def _line(margin: float) -> str:
    """The rollback line in words: 0 by default, −m when the desk allows a margin."""
    return "0" if margin == 0 else f"−m = {-margin:.5f}"
