"""Feature importance and feature selection (task type feature_selection), without leakage.

Owns: importance by gain (the trees' own split gain, as a share of the model's total) and by
permutation (log-loss increase when one feature is shuffled inside an out-of-sample block,
repeated), and the selection rule. Selection is fitted inside each outer training window (nested,
statistics reference §3), so the candidate's out-of-sample metrics judge the selection procedure
itself. The registry stores the importances; this module writes nothing.

Rule: a feature is kept when its permutation importance over the purged k-fold test blocks of
the training rows is above noise, mean − z·std > 0 (z = 2; std over every fold × repeat value).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from runner.optimize import purged
from runner.optimize.features import FeatureFrame
from runner.optimize.retrain import (
    Incumbent,
    Predict,
    RetrainConfig,
    RetrainResult,
    fit_early_stopped,
    lightgbm_params,
    log_loss_rows,
    matrix,
    predictor,
    retrain,
)

if TYPE_CHECKING:
    import lightgbm as lgb

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]


@dataclass(frozen=True)
class SelectionConfig:
    repeats: int = 5  # shuffles per feature and block
    z: float = 2.0  # keep a feature when mean − z·std of its permutation importance > 0
    min_features: int = 0  # when fewer pass, keep this many of the best by mean (0: none)


@dataclass(frozen=True)
class FeatureImportance:
    """One feature of one model version. `gain` is its share of the total split gain (mean over
    the fold models); the permutation numbers are log-loss increases (nats per row)."""

    feature: str
    gain: float | None
    permutation_importance: float | None
    permutation_std: float | None
    selected: bool


@dataclass(frozen=True, eq=False)
class SelectionResult:
    retrain: RetrainResult  # the candidate trained on the chosen features, judged by the gate
    importances: tuple[FeatureImportance, ...]  # on every usable row of the window
    fold_features: tuple[tuple[str, ...], ...]  # the set chosen inside each outer fold

    @property
    def selected(self) -> tuple[str, ...]:
        return self.retrain.features


def permutation_increases(
    predict_rows: FloatArray,
    predict: Predict,
    X: FloatArray,
    y: FloatArray,
    repeats: int,
    rng: np.random.Generator,
) -> FloatArray:
    """(features × repeats) log-loss increases when column j of X is shuffled (Breiman 2001;
    scikit-learn's permutation_importance on a held-out block). `predict_rows` are the
    unshuffled predictions."""
    base = float(log_loss_rows(y, predict_rows).mean())
    out = np.empty((X.shape[1], repeats))
    shuffled = X.copy()
    for j in range(X.shape[1]):
        for r in range(repeats):
            shuffled[:, j] = X[rng.permutation(len(X)), j]
            out[j, r] = float(log_loss_rows(y, predict(shuffled)).mean()) - base
        shuffled[:, j] = X[:, j]
    return out


def _gain_shares(model: lgb.Booster, features: Sequence[str], best_iteration: int) -> FloatArray:
    gains = np.asarray(model.feature_importance("gain", iteration=best_iteration), np.float64)
    total = gains.sum()
    return gains / total if total > 0 else np.zeros(len(features))


def _summarise(
    names: Sequence[str],
    gains: list[dict[str, float]],
    increases: dict[str, list[FloatArray]],
    keep: set[str] | None,
    selection: SelectionConfig,
) -> tuple[FeatureImportance, ...]:
    rows = []
    for name in names:
        values = np.concatenate(increases[name]) if increases[name] else np.array([])
        mean = float(values.mean()) if len(values) else None
        std = float(values.std(ddof=1)) if len(values) > 1 else None
        gain = float(np.mean([g.get(name, 0.0) for g in gains])) if gains else None
        if keep is None:
            chosen = mean is not None and std is not None and mean - selection.z * std > 0
        else:
            chosen = name in keep
        rows.append(FeatureImportance(name, gain, mean, std, chosen))
    if keep is None and selection.min_features > 0:
        have = sum(r.selected for r in rows)
        if have < selection.min_features:
            best = sorted(
                (r for r in rows if r.permutation_importance is not None),
                key=lambda r: -(r.permutation_importance or 0.0),
            )[: selection.min_features]
            names_best = {r.feature for r in best}
            rows = [
                FeatureImportance(
                    r.feature,
                    r.gain,
                    r.permutation_importance,
                    r.permutation_std,
                    r.selected or r.feature in names_best,
                )
                for r in rows
            ]
    return tuple(rows)


def cv_importances(
    frame: FeatureFrame,
    rows: IntArray,
    features: Sequence[str],
    *,
    config: RetrainConfig,
    selection: SelectionConfig = SelectionConfig(),
) -> tuple[FeatureImportance, ...]:
    """Gain and permutation importance over purged k-fold (config.inner_folds, embargoed) of
    `rows` only; `selected` applies the rule. Models are fitted as the trainer fits them."""
    names = tuple(features)
    if not names:
        return ()
    rows = np.sort(rows)
    horizon = config.horizon or frame.horizon_bars
    embargo = purged.embargo_size(len(rows), config.embargo_fraction, horizon)
    params = lightgbm_params(config)
    rng = np.random.default_rng(config.seed)
    gains: list[dict[str, float]] = []
    increases: dict[str, list[FloatArray]] = {name: [] for name in names}
    for split in purged.purged_kfold(
        frame.t0, frame.t1, rows, folds=config.inner_folds, embargo=embargo
    ):
        fitted = fit_early_stopped(frame, split.train, names, params, config)
        assert fitted.model is not None
        gains.append(
            dict(zip(names, _gain_shares(fitted.model, names, fitted.best_iteration), strict=True))
        )
        X = matrix(frame, split.test, names)
        values = permutation_increases(
            fitted.predict(X), fitted.predict, X, frame.y[split.test], selection.repeats, rng
        )
        for j, name in enumerate(names):
            increases[name].append(values[j])
    return _summarise(names, gains, increases, None, selection)


def outer_importances(
    frame: FeatureFrame,
    result: RetrainResult,
    *,
    selection: SelectionConfig = SelectionConfig(),
    seed: int = 0,
) -> tuple[FeatureImportance, ...]:
    """Importances of a retrain's candidate on its outer walk-forward test blocks (each fold's
    model on its own block); `selected` means the feature is in the final model."""
    names = tuple(
        dict.fromkeys([*result.features, *(f for fold in result.folds for f in fold.features)])
    )
    rng = np.random.default_rng(seed)
    gains: list[dict[str, float]] = []
    increases: dict[str, list[FloatArray]] = {name: [] for name in names}
    for fold in result.folds:
        if fold.model is None or not fold.features:
            continue
        gains.append(
            dict(
                zip(
                    fold.features,
                    _gain_shares(fold.model, fold.features, fold.best_iteration),
                    strict=True,
                )
            )
        )
        predict = predictor(fold.model, fold.best_iteration)
        X = matrix(frame, fold.test, fold.features)
        values = permutation_increases(
            predict(X), predict, X, frame.y[fold.test], selection.repeats, rng
        )
        for j, name in enumerate(fold.features):
            increases[name].append(values[j])
    return _summarise(names, gains, increases, set(result.features), selection)


def select_features(
    frame: FeatureFrame,
    *,
    config: RetrainConfig | None = None,
    selection: SelectionConfig = SelectionConfig(),
    incumbent: Incumbent | None = None,
    as_of: np.datetime64 | None = None,
) -> SelectionResult:
    """Choose a feature set and judge it: retrain() with the rule applied inside every outer
    training window (nested) and, for the final model, on every usable row of the window."""
    config = config or RetrainConfig()
    computed: dict[bytes, tuple[FeatureImportance, ...]] = {}

    def choose(
        frame: FeatureFrame, train: IntArray, candidates: tuple[str, ...]
    ) -> tuple[str, ...]:
        table = cv_importances(frame, train, candidates, config=config, selection=selection)
        computed[np.sort(train).tobytes()] = table
        return tuple(row.feature for row in table if row.selected)

    result = retrain(frame, config=config, incumbent=incumbent, as_of=as_of, choose_features=choose)
    final = computed[np.sort(result.window).tobytes()]
    return SelectionResult(
        retrain=result,
        importances=final,
        fold_features=tuple(fold.features for fold in result.folds),
    )
