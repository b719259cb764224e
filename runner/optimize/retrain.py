"""Retraining a component's classifier without leakage, and the gate a new model must pass.

Owns: the LightGBM fit (deterministic, early-stopped on a purged tail of the training window),
the outer purged walk-forward that yields out-of-sample predictions, the optional nested Optuna
tuning (inner purged folds of each training window only), the classifier metrics and the
non-regression gate (moving-block bootstrap over time). It returns typed results and writes
nothing: the registry (runner.optimize.models) stores versions; the caller records events.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from runner.errors import ConfigError
from runner.optimize import purged
from runner.optimize.features import FeatureFrame, as_time

if TYPE_CHECKING:
    import lightgbm as lgb

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]

# metrics.md: log loss clips p to [1e-15, 1 − 1e-15] (sklearn's eps).
PROBA_CLIP = 1e-15

# Shallow, regularised trees: market labels are mostly noise, so the defaults lean on bias.
DEFAULT_PARAMS: Mapping[str, Any] = {
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_data_in_leaf": 50,
    "feature_fraction": 0.9,
    "lambda_l2": 1.0,
    "max_bin": 255,
}

Predict = Callable[[FloatArray], FloatArray]
FeatureChooser = Callable[[FeatureFrame, IntArray, tuple[str, ...]], tuple[str, ...]]


@dataclass(frozen=True)
class RetrainConfig:
    """Everything a retrain decides with; the coordinator maps Settings onto it."""

    window: int | None = 5000  # most recent usable samples (None: all of them)
    folds: int = 5  # outer walk-forward test blocks (one more block only trains)
    min_train: int = 100  # fewest training samples a fold may keep after purging
    max_train: int | None = None  # rolling training window (None: expanding)
    embargo_fraction: float = 0.01  # embargo h = max(fraction · T, horizon) samples
    horizon: int | None = None  # label horizon in bars (None: the frame's)
    valid_fraction: float = 0.2  # purged tail of each training window for early stopping
    num_boost_round: int = 500
    early_stopping_rounds: int = 30
    params: Mapping[str, Any] = field(default_factory=dict)  # LightGBM overrides
    seed: int = 0
    num_threads: int = 2
    tune_trials: int = 0  # Optuna trials per training window (0: no tuning)
    inner_folds: int = 3  # purged k-fold inside a training window (tuning, selection)
    # -- the gate --------------------------------------------------------------------------
    log_loss_margin: float = 0.002  # candidate may be at most this much worse than the baseline
    confidence: float = 0.95  # one-sided level of both bootstrap bounds
    auc_min: float = 0.5  # the AUC lower bound must exceed this
    auc_max: float = 0.9  # an OOS AUC above this on market data means a feature looks ahead
    calibration_max: float = 0.03  # expected calibration error, 10 equal-width bins
    calibration_bins: int = 10
    bootstrap_samples: int = 1000
    block_length: int | None = None  # None: max(horizon, ceil(sqrt(n)))
    min_oos: int = 200  # fewer compared out-of-sample rows is insufficient evidence
    min_frozen_rows: int = 200  # rows after the incumbent's training end to judge its model as is


@dataclass(frozen=True)
class ClassifierMetrics:
    """metrics.md's classifier metrics on labelled predictions (p ≥ 0.5 predicts 1)."""

    n: int
    base_rate: float
    log_loss: float
    auc: float | None
    brier: float
    accuracy: float
    calibration_error: float

    def to_dict(self) -> dict[str, float | int | None]:
        return {
            "n": self.n,
            "base_rate": self.base_rate,
            "log_loss": self.log_loss,
            "auc": self.auc,
            "brier": self.brier,
            "accuracy": self.accuracy,
            "calibration_error": self.calibration_error,
        }


@dataclass(frozen=True)
class Incumbent:
    """The production model a candidate must not regress from: its recipe (features, LightGBM
    params, rounds) and, when available, the stored model and the last time its training saw."""

    label: str  # e.g. "production v3"
    features: tuple[str, ...]
    params: Mapping[str, Any]
    num_boost_round: int | None = None
    model_text: str | None = None
    trained_until: np.datetime64 | None = None  # max t1 of its training samples


@dataclass(frozen=True)
class GateReport:
    passed: bool
    reasons: tuple[str, ...]  # why it failed, in words (empty when it passed)
    baseline: str  # what the candidate was compared with
    values: Mapping[str, float | int | str | None]


@dataclass(frozen=True, eq=False)
class Fold:
    """One outer walk-forward fold; positions index the FeatureFrame."""

    number: int
    train: IntArray  # every training sample (fit + validation), after purging
    fit: IntArray  # what the trees were grown on
    valid: IntArray  # the purged tail early stopping watched
    test: IntArray
    purged: IntArray
    embargoed: IntArray
    features: tuple[str, ...]
    params: Mapping[str, Any]
    best_iteration: int
    base_rate: float
    model: lgb.Booster | None  # None: no feature chosen, the fold predicts its base rate


@dataclass(frozen=True, eq=False)
class RetrainResult:
    """A candidate model and the evidence about it. Positions index the FeatureFrame."""

    symbol: str
    as_of: np.datetime64  # τ: only samples with t1 < τ were used
    horizon_bars: int
    embargo: int
    window: IntArray  # every usable sample considered (the recent window)
    training_start: np.datetime64  # t0 of the window's first sample
    training_end: np.datetime64  # max t1 of the window: the last thing the final model saw
    excluded_unresolved: int  # samples left out because their label was unknown at τ
    features: tuple[str, ...]  # the final model's features
    dropped_features: Mapping[str, str]  # feature -> why it was not used
    params: Mapping[str, Any]  # the final model's LightGBM params
    num_boost_round: int
    model: lgb.Booster | None
    model_text: str | None
    folds: tuple[Fold, ...]
    oos: IntArray  # out-of-sample rows, time order (the test blocks)
    oos_proba: FloatArray
    oos_baseline_proba: FloatArray  # NaN where the baseline was not compared
    metrics: ClassifierMetrics  # candidate, all out-of-sample rows
    baseline_metrics: ClassifierMetrics | None  # baseline, compared rows
    gate: GateReport
    seconds: float
    notes: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return self.gate.passed

    @property
    def verdict(self) -> str:
        return "candidate" if self.gate.passed else "rejected"


# -- classifier metrics (metrics.md) -------------------------------------------------------------
def log_loss_rows(y: FloatArray, p: FloatArray) -> FloatArray:
    """Per-row −[y·ln p_c + (1 − y)·ln(1 − p_c)], p_c clipped to [1e-15, 1 − 1e-15]."""
    pc = np.clip(p, PROBA_CLIP, 1.0 - PROBA_CLIP)
    out: FloatArray = -(y * np.log(pc) + (1.0 - y) * np.log1p(-pc))
    return out


def auc(y: FloatArray, p: FloatArray) -> float | None:
    """Mann–Whitney AUC with average ranks for ties; None when one class is absent."""
    from scipy.stats import rankdata

    positives = y == 1.0
    n_pos = int(positives.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(p)
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def calibration_error(y: FloatArray, p: FloatArray, bins: int = 10) -> float:
    """Expected calibration error: Σ_b (n_b/n)·|mean p_b − mean y_b| over `bins` equal-width bins
    of [0, 1] (p = 1 falls in the last bin); Naeini, Cooper & Hauskrecht (2015)."""
    if len(y) == 0:
        return math.nan
    which = np.minimum((p * bins).astype(np.intp), bins - 1)
    count = np.bincount(which, minlength=bins).astype(np.float64)
    gap = np.abs(
        np.bincount(which, weights=p, minlength=bins)
        - np.bincount(which, weights=y, minlength=bins)
    )
    return float(gap.sum() / count.sum())


def calibration_noise(
    p: FloatArray, bins: int, rng: np.random.Generator, draws: int = 100
) -> float:
    """Mean ECE of a perfectly calibrated model with these predictions (labels drawn as
    Bernoulli(p)): the floor the finite sample alone puts under the calibration error."""
    if len(p) == 0:
        return math.nan
    return float(
        np.mean(
            [
                calibration_error((rng.random(len(p)) < p).astype(np.float64), p, bins)
                for _ in range(draws)
            ]
        )
    )


def classifier_metrics(y: FloatArray, p: FloatArray, bins: int = 10) -> ClassifierMetrics:
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    if len(y) == 0:
        raise ValueError("no labelled predictions to score")
    return ClassifierMetrics(
        n=len(y),
        base_rate=float(y.mean()),
        log_loss=float(log_loss_rows(y, p).mean()),
        auc=auc(y, p),
        brier=float(np.mean((p - y) ** 2)),
        accuracy=float(np.mean((p >= 0.5) == (y == 1.0))),
        calibration_error=calibration_error(y, p, bins),
    )


# -- moving-block bootstrap over time -----------------------------------------------------------
def block_length(n: int, horizon: int) -> int:
    """max(label horizon, ceil(sqrt(n))): blocks span the overlap of neighbouring labels at least."""
    return max(1, min(n, max(horizon, math.ceil(math.sqrt(n)))))


def _block_starts(n: int, length: int, samples: int, rng: np.random.Generator) -> IntArray:
    # Künsch (1989) moving blocks: ceil(n / L) blocks, starts uniform over the n − L + 1 windows.
    blocks = math.ceil(n / length)
    return rng.integers(0, n - length + 1, size=(samples, blocks)).astype(np.intp)


def bootstrap_mean(
    values: FloatArray, length: int, samples: int, rng: np.random.Generator
) -> FloatArray:
    """Moving-block bootstrap replicates of mean(values)."""
    n = len(values)
    starts = _block_starts(n, length, samples, rng)
    cumulative = np.concatenate([[0.0], np.cumsum(values)])
    sums = cumulative[starts + length] - cumulative[starts]
    out: FloatArray = sums.sum(axis=1) / (starts.shape[1] * length)
    return out


def bootstrap_auc(
    y: FloatArray, p: FloatArray, length: int, samples: int, rng: np.random.Generator
) -> FloatArray:
    """Moving-block bootstrap replicates of the AUC (NaN where a replicate lacks a class).

    Each replicate weights row i by how many drawn blocks cover it; the weighted Mann–Whitney
    statistic comes from per-score-group sums, O(n) per replicate after one sort (ties count 1/2)."""
    n = len(y)
    order = np.argsort(p, kind="stable")
    sorted_groups = np.r_[0, np.cumsum(np.diff(p[order]) != 0)].astype(np.intp)
    group = np.empty(n, dtype=np.intp)
    group[order] = sorted_groups
    groups = int(sorted_groups[-1]) + 1 if n else 0
    starts = _block_starts(n, length, samples, rng)
    out = np.empty(samples)
    for k in range(samples):
        marks = np.bincount(starts[k], minlength=n + 1)
        marks -= np.bincount(starts[k] + length, minlength=n + 1)
        weights = np.cumsum(marks[:n]).astype(np.float64)
        positive = weights * y
        pos = np.bincount(group, weights=positive, minlength=groups)
        neg = np.bincount(group, weights=weights - positive, minlength=groups)
        below = np.cumsum(neg) - neg
        total = pos.sum() * neg.sum()
        out[k] = (pos * (below + 0.5 * neg)).sum() / total if total > 0 else np.nan
    return out


# -- the gate -----------------------------------------------------------------------------------
def evaluate_gate(
    y: FloatArray,
    proba: FloatArray,
    baseline_proba: FloatArray,
    *,
    baseline: str,
    config: RetrainConfig,
    horizon: int,
) -> GateReport:
    """Judge out-of-sample predictions (time order) against a baseline on the rows where the
    baseline is defined (non-NaN).

    - non-regression: the one-sided `confidence` upper bound of mean(loss_candidate − loss_baseline)
      by moving-block bootstrap must be ≤ log_loss_margin;
    - discrimination: the `confidence` lower bound of the AUC (moving blocks, all rows) > auc_min;
    - calibration: the expected calibration error ≤ calibration_max;
    - plausibility: the AUC ≤ auc_max (above it a feature almost surely looks ahead).
    """
    rng = np.random.default_rng(config.seed)
    metrics = classifier_metrics(y, proba, config.calibration_bins)
    compared = ~np.isnan(baseline_proba)
    n_compared = int(compared.sum())
    values: dict[str, float | int | str | None] = {
        "n_oos": metrics.n,
        "n_compared": n_compared,
        "log_loss": metrics.log_loss,
        "auc": metrics.auc,
        "calibration_error": metrics.calibration_error,
        "calibration_bins": config.calibration_bins,
        "margin": config.log_loss_margin,
        "confidence": config.confidence,
        "bootstrap_samples": config.bootstrap_samples,
    }
    reasons: list[str] = []
    if n_compared < config.min_oos:
        reasons.append(
            f"Only {n_compared} out-of-sample rows could be compared with the {baseline} "
            f"(at least {config.min_oos} are needed): insufficient evidence."
        )
    else:
        yc = y[compared]
        diff = log_loss_rows(yc, proba[compared]) - log_loss_rows(yc, baseline_proba[compared])
        length = config.block_length or block_length(n_compared, horizon)
        upper = float(
            np.quantile(
                bootstrap_mean(diff, length, config.bootstrap_samples, rng), config.confidence
            )
        )
        base_loss = float(log_loss_rows(yc, baseline_proba[compared]).mean())
        values.update(
            baseline_log_loss=base_loss,
            compared_log_loss=float(log_loss_rows(yc, proba[compared]).mean()),
            log_loss_diff=float(diff.mean()),
            log_loss_diff_upper=upper,
            block_length=length,
        )
        if upper > config.log_loss_margin:
            reasons.append(
                f"Out-of-sample log loss {values['compared_log_loss']:.4f} against "
                f"{base_loss:.4f} for the {baseline}: it may be worse by up to {upper:+.4f} "
                f"({config.confidence:.0%} bound), more than the {config.log_loss_margin:+.4f} allowed."
            )
    if metrics.auc is None:
        reasons.append("The out-of-sample labels hold one class only: AUC is undefined.")
    else:
        length = config.block_length or block_length(metrics.n, horizon)
        replicates = bootstrap_auc(y, proba, length, config.bootstrap_samples, rng)
        lower = float(np.nanquantile(replicates, 1.0 - config.confidence))
        values["auc_lower"] = lower
        if lower <= config.auc_min:
            reasons.append(
                f"Out-of-sample AUC {metrics.auc:.3f} has a {config.confidence:.0%} lower bound of "
                f"{lower:.3f}, not above {config.auc_min:.2f}: no reliable ranking skill."
            )
        if metrics.auc > config.auc_max:
            reasons.append(
                f"Out-of-sample AUC {metrics.auc:.3f} is implausibly high for market data "
                f"(above {config.auc_max:.2f}): a feature probably uses data after its bar."
            )
    values["calibration_noise"] = calibration_noise(proba, config.calibration_bins, rng)
    if not metrics.calibration_error <= config.calibration_max:
        reasons.append(
            f"Calibration error {metrics.calibration_error:.3f} ({config.calibration_bins} equal-width "
            f"bins) is above {config.calibration_max:.3f}: its probabilities cannot be taken at face value."
        )
    return GateReport(passed=not reasons, reasons=tuple(reasons), baseline=baseline, values=values)


# -- fitting ------------------------------------------------------------------------------------
def lightgbm_params(
    config: RetrainConfig, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Defaults, then the config's overrides, then `overrides`; the determinism settings last."""
    return {
        **DEFAULT_PARAMS,
        **config.params,
        **dict(overrides or {}),
        "objective": "binary",
        "verbosity": -1,
        "seed": config.seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": config.num_threads,
    }


def predictor(model: lgb.Booster, num_iteration: int | None = None) -> Predict:
    """P(label = 1) for rows of the model's feature columns, with its first `num_iteration` trees."""

    def predict(X: FloatArray) -> FloatArray:
        out: FloatArray = np.asarray(model.predict(X, num_iteration=num_iteration), np.float64)
        return out

    return predict


@dataclass(frozen=True, eq=False)
class FittedModel:
    """A fold's model (None: no features, it predicts the training base rate)."""

    model: lgb.Booster | None
    fit: IntArray
    valid: IntArray
    best_iteration: int
    base_rate: float

    def predict(self, X: FloatArray) -> FloatArray:
        if self.model is None:
            return np.full(len(X), self.base_rate)
        return predictor(self.model, self.best_iteration)(X)


def matrix(frame: FeatureFrame, rows: IntArray, features: Sequence[str]) -> FloatArray:
    return np.ascontiguousarray(frame.X[np.ix_(rows, frame.columns(features))])


def fit_early_stopped(
    frame: FeatureFrame,
    train: IntArray,
    features: tuple[str, ...],
    params: Mapping[str, Any],
    config: RetrainConfig,
) -> FittedModel:
    """Grow trees on `train` minus its purged tail, stopping on the tail's log loss."""
    import lightgbm as lgb

    base_rate = float(frame.y[train].mean())
    fit, valid = purged.purged_tail(train, frame.t0, frame.t1, config.valid_fraction)
    if not features:
        return FittedModel(None, fit, valid, 0, base_rate)
    names = list(features)
    dataset_params = {"max_bin": params.get("max_bin", 255), "verbosity": -1}
    dtrain = lgb.Dataset(
        matrix(frame, fit, features), frame.y[fit], feature_name=names, params=dataset_params
    )
    dvalid = lgb.Dataset(
        matrix(frame, valid, features), frame.y[valid], reference=dtrain, feature_name=names
    )
    booster = lgb.train(
        {**params, "metric": "binary_logloss"},
        dtrain,
        num_boost_round=config.num_boost_round,
        valid_sets=[dvalid],
        callbacks=[lgb.early_stopping(config.early_stopping_rounds, verbose=False)],
    )
    best = int(booster.best_iteration) or booster.current_iteration()
    return FittedModel(booster, fit, valid, max(best, 1), base_rate)


def fit_rounds(
    frame: FeatureFrame,
    rows: IntArray,
    features: tuple[str, ...],
    params: Mapping[str, Any],
    rounds: int,
) -> lgb.Booster:
    import lightgbm as lgb

    names = list(features)
    dtrain = lgb.Dataset(
        matrix(frame, rows, features),
        frame.y[rows],
        feature_name=names,
        params={"max_bin": params.get("max_bin", 255), "verbosity": -1},
    )
    return lgb.train(dict(params), dtrain, num_boost_round=rounds)


def tune(
    frame: FeatureFrame,
    train: IntArray,
    features: tuple[str, ...],
    config: RetrainConfig,
    embargo: int,
) -> dict[str, Any]:
    """LightGBM params chosen by Optuna (TPE, seeded) on purged k-fold inside `train` only: the
    objective never sees a sample outside the training window it is given (nested CV)."""
    import optuna

    base = lightgbm_params(config)
    if config.tune_trials <= 0 or not features:
        return base
    splits = purged.purged_kfold(
        frame.t0, frame.t1, np.sort(train), folds=config.inner_folds, embargo=embargo
    )

    def objective(trial: optuna.Trial) -> float:
        params = lightgbm_params(
            config,
            {
                "num_leaves": trial.suggest_int("num_leaves", 4, 63, log=True),
                "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.2, log=True),
                "min_data_in_leaf": trial.suggest_int("min_data_in_leaf", 10, 200, log=True),
                "feature_fraction": trial.suggest_float("feature_fraction", 0.5, 1.0),
                "lambda_l2": trial.suggest_float("lambda_l2", 1e-3, 10.0, log=True),
            },
        )
        losses = []
        for split in splits:
            fitted = fit_early_stopped(frame, split.train, features, params, config)
            p = fitted.predict(matrix(frame, split.test, features))
            losses.append(float(log_loss_rows(frame.y[split.test], p).mean()))
        return float(np.mean(losses))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="minimize", sampler=optuna.samplers.TPESampler(seed=config.seed)
    )
    study.optimize(objective, n_trials=config.tune_trials)
    return lightgbm_params(config, study.best_params)


# -- the retrain --------------------------------------------------------------------------------
def _drop_uninformative(
    frame: FeatureFrame, rows: IntArray, candidates: Sequence[str]
) -> tuple[tuple[str, ...], dict[str, str]]:
    """Features all-NaN or constant over the window. Dropping them changes no prediction (the
    trees can never split on them in any fold), so deciding it on the whole window leaks nothing."""
    X = frame.X[np.ix_(rows, frame.columns(candidates))]
    dropped: dict[str, str] = {}
    kept: list[str] = []
    for j, name in enumerate(candidates):
        column = X[:, j]
        present = column[~np.isnan(column)]
        if len(present) == 0:
            dropped[name] = "no value in the training window"
        elif present.min() == present.max():
            dropped[name] = "constant in the training window"
        else:
            kept.append(name)
    return tuple(kept), dropped


def _window(frame: FeatureFrame, as_of: np.datetime64, window: int | None) -> tuple[IntArray, int]:
    resolved = purged.usable(frame.t1, as_of) & (frame.t0 < as_of)
    has_features = (
        ~np.all(np.isnan(frame.X), axis=1) if frame.X.shape[1] else np.zeros(len(frame), bool)
    )
    rows = np.flatnonzero(resolved & has_features).astype(np.intp)
    excluded = int(np.sum(has_features & (frame.t0 < as_of) & ~resolved))
    if window is not None:
        rows = rows[-window:]
    return rows, excluded


class _SubFrame:
    """Spans restricted to the window, for the splitters (positions map back through `rows`)."""

    def __init__(self, frame: FeatureFrame, rows: IntArray) -> None:
        self.rows = rows
        self.t0 = frame.t0[rows]
        self.t1 = frame.t1[rows]


def retrain(
    frame: FeatureFrame,
    *,
    config: RetrainConfig = RetrainConfig(),
    incumbent: Incumbent | None = None,
    as_of: datetime | np.datetime64 | None = None,
    choose_features: FeatureChooser | None = None,
) -> RetrainResult:
    """Train a candidate on the recent window and judge it out of sample.

    τ = `as_of` (default: just after the last bar) decides which labels are usable (t1 < τ). The
    outer walk-forward's test blocks give the out-of-sample predictions; each fold's model (and,
    with tune_trials, its params, and with `choose_features`, its features, chosen from that
    fold's training rows only) never sees its test block. The final model is refit on every
    usable sample of the window with the rounds early stopping found on the window's purged tail.
    """
    clock = time.monotonic()
    tau = as_of_default(frame) if as_of is None else as_time(as_of)
    horizon = config.horizon or frame.horizon_bars
    rows, excluded = _window(frame, tau, config.window)
    sub = _SubFrame(frame, rows)
    if len(rows) < (config.folds + 1) * 2:
        raise ConfigError(
            f"{frame.symbol}: only {len(rows)} samples have a label resolved before "
            f"{np.datetime_as_string(tau, 's')}; too few to retrain."
        )
    candidates, dropped = _drop_uninformative(frame, rows, frame.feature_names)
    embargo = purged.embargo_size(len(rows), config.embargo_fraction, horizon)
    try:
        splits = purged.walk_forward(
            sub.t0,
            sub.t1,
            folds=config.folds,
            embargo=embargo,
            min_train=config.min_train,
            max_train=config.max_train,
        )
    except ValueError as exc:
        raise ConfigError(f"{frame.symbol}: {exc}.") from exc

    mode, baseline_label = _baseline_mode(frame, incumbent, rows, splits, config)
    frozen = _frozen_model(incumbent) if mode == "frozen" else None
    folds: list[Fold] = []
    oos_parts: list[IntArray] = []
    proba_parts: list[FloatArray] = []
    base_parts: list[FloatArray] = []
    for k, split in enumerate(splits, start=1):
        train, test = rows[split.train], rows[split.test]
        features = candidates
        if choose_features is not None:
            features = choose_features(frame, train, candidates)
        params = tune(frame, train, features, config, embargo)
        fitted = fit_early_stopped(frame, train, features, params, config)
        proba = fitted.predict(matrix(frame, test, features))
        folds.append(
            Fold(
                number=k,
                train=train,
                fit=fitted.fit,
                valid=fitted.valid,
                test=test,
                purged=rows[split.purged],
                embargoed=rows[split.embargoed],
                features=features,
                params=params,
                best_iteration=fitted.best_iteration,
                base_rate=fitted.base_rate,
                model=fitted.model,
            )
        )
        oos_parts.append(test)
        proba_parts.append(proba)
        base_parts.append(
            _baseline_proba(frame, incumbent, frozen, train, test, fitted.base_rate, config)
        )

    oos = np.concatenate(oos_parts)
    oos_proba = np.concatenate(proba_parts)
    oos_base = np.concatenate(base_parts)
    y_oos = frame.y[oos]
    gate = evaluate_gate(
        y_oos, oos_proba, oos_base, baseline=baseline_label, config=config, horizon=horizon
    )
    compared = ~np.isnan(oos_base)
    baseline_metrics = (
        classifier_metrics(y_oos[compared], oos_base[compared], config.calibration_bins)
        if compared.any()
        else None
    )

    # The final model: every usable sample of the window.
    final_features = candidates
    if choose_features is not None:
        final_features = choose_features(frame, rows, candidates)
    final_params = tune(frame, rows, final_features, config, embargo)
    model: lgb.Booster | None = None
    model_text: str | None = None
    rounds = 0
    if final_features:
        rounds = fit_early_stopped(frame, rows, final_features, final_params, config).best_iteration
        model = fit_rounds(frame, rows, final_features, final_params, rounds)
        model_text = model.model_to_string()
    for name in candidates:
        if name not in final_features:
            dropped[name] = "not chosen by feature selection"
    notes = [f"{name}: {why}" for name, why in dropped.items()]
    if excluded:
        notes.append(f"{excluded} samples left out: their label was not resolved before τ.")
    return RetrainResult(
        symbol=frame.symbol,
        as_of=tau,
        horizon_bars=horizon,
        embargo=embargo,
        window=rows,
        training_start=frame.t0[rows[0]],
        training_end=frame.t1[rows].max(),
        excluded_unresolved=excluded,
        features=final_features,
        dropped_features=dropped,
        params=final_params,
        num_boost_round=rounds,
        model=model,
        model_text=model_text,
        folds=tuple(folds),
        oos=oos,
        oos_proba=oos_proba,
        oos_baseline_proba=oos_base,
        metrics=classifier_metrics(y_oos, oos_proba, config.calibration_bins),
        baseline_metrics=baseline_metrics,
        gate=gate,
        seconds=time.monotonic() - clock,
        notes=tuple(notes),
    )


def as_of_default(frame: FeatureFrame) -> np.datetime64:
    """τ just after the last bar: every label resolved in the frame is usable."""
    last: np.datetime64 = frame.t0[-1]
    return last + np.timedelta64(1, "us")


def _baseline_mode(
    frame: FeatureFrame,
    incumbent: Incumbent | None,
    rows: IntArray,
    splits: Sequence[purged.Split],
    config: RetrainConfig,
) -> tuple[str, str]:
    """base_rate | frozen | refit, and the words that name the baseline."""
    if incumbent is None:
        return "base_rate", "base rate of each training window"
    if incumbent.model_text is not None and incumbent.trained_until is not None:
        tests = np.concatenate([rows[s.test] for s in splits])
        fresh = int(np.sum(frame.t0[tests] > incumbent.trained_until))
        if fresh >= config.min_frozen_rows:
            frame.columns(incumbent.features)  # a missing feature is a ConfigError
            return "frozen", f"{incumbent.label} model as deployed"
    frame.columns(incumbent.features)
    return "refit", f"{incumbent.label} recipe refit on the same folds"


def _frozen_model(incumbent: Incumbent | None) -> lgb.Booster:
    import lightgbm as lgb

    assert incumbent is not None and incumbent.model_text is not None
    return lgb.Booster(model_str=incumbent.model_text)


def _baseline_proba(
    frame: FeatureFrame,
    incumbent: Incumbent | None,
    frozen: lgb.Booster | None,
    train: IntArray,
    test: IntArray,
    base_rate: float,
    config: RetrainConfig,
) -> FloatArray:
    """The baseline's predictions for one test block (NaN where it is not compared)."""
    if incumbent is None:
        return np.full(len(test), base_rate)
    if frozen is not None:
        assert incumbent.trained_until is not None
        out = np.full(len(test), np.nan)
        fresh = frame.t0[test] > incumbent.trained_until
        if fresh.any():
            out[fresh] = frozen.predict(matrix(frame, test[fresh], incumbent.features))
        return out
    params = lightgbm_params(config, incumbent.params)
    refit = fit_early_stopped(frame, train, incumbent.features, params, config)
    return refit.predict(matrix(frame, test, incumbent.features))
