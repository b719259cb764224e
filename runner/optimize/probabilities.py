"""Out-of-sample model probabilities for the bars a model-driven strategy is backtested on.

A backtest must never trade on a prediction about data the model was trained on. The model
version a strategy names saw every label up to its `training_end`; bars after that get the
version's own predictions. Earlier bars get predictions of the same recipe (features, LightGBM
params, boosting rounds) refit at the start of every `refit_months`-month calendar period on the
samples whose labels had resolved before it, which is how the model would have been retrained
live. Every value carries the last label time its model saw (`trained_until` < the bar's time),
so the guarantee is checkable row by row; calendar refit dates make the values at or before any
time t independent of the bars after t.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from runner.errors import ConfigError
from runner.optimize import models
from runner.optimize.features import FeatureFrame, load_features
from runner.optimize.retrain import RetrainConfig, fit_rounds, lightgbm_params, matrix
from runner.strategies import Bars
from runner.warehouse import Warehouse

if TYPE_CHECKING:
    import lightgbm as lgb

FloatArray = npt.NDArray[np.float64]
TimeArray = npt.NDArray[np.datetime64]

REFIT_MONTHS = 3  # a quarterly refit: about 63 daily bars predicted by each model
WINDOW = 5000  # most recent resolved samples a refit trains on (the retrain default)
MIN_TRAIN = 200  # fewer resolved samples before a period: no prediction for it


@dataclass(frozen=True)
class Recipe:
    """What a model version is, minus its trees: enough to refit it on other data."""

    features: tuple[str, ...]
    params: Mapping[str, Any]
    rounds: int


@dataclass(frozen=True, eq=False)
class Probabilities:
    """One value per frame row (NaN where no model could predict) and, per row, the newest label
    time its model was trained on (NaT where NaN)."""

    time: TimeArray
    value: FloatArray
    trained_until: TimeArray

    def on(self, bars: Bars) -> FloatArray:
        """The values aligned to `bars` by time (NaN for bars the frame does not have)."""
        out = np.full(len(bars), np.nan)
        times = bars.time.astype("datetime64[us]")
        where = np.searchsorted(self.time, times)
        inside = where < len(self.time)
        hit = np.zeros(len(bars), dtype=bool)
        hit[inside] = self.time[where[inside]] == times[inside]
        out[hit] = self.value[where[hit]]
        return out


def period_starts(t0: TimeArray, months: int) -> TimeArray:
    """The first instant of the calendar period (months since 1970 divisible by `months`) that
    holds each time."""
    month = t0.astype("datetime64[M]").astype(np.int64)
    return (month - month % months).astype("datetime64[M]").astype("datetime64[us]")


def walk_forward_probabilities(
    frame: FeatureFrame,
    recipe: Recipe,
    *,
    deployed: lgb.Booster | None = None,
    deployed_until: np.datetime64 | None = None,
    refit_months: int = REFIT_MONTHS,
    window: int = WINDOW,
    min_train: int = MIN_TRAIN,
) -> Probabilities:
    """Causal probabilities for every row of `frame` (see the module docstring)."""
    if refit_months < 1:
        raise ValueError(f"refit_months must be >= 1, got {refit_months}")
    n = len(frame)
    value = np.full(n, np.nan)
    trained_until = np.full(n, np.datetime64("NaT"), dtype="datetime64[us]")
    if not recipe.features or recipe.rounds < 1:
        return Probabilities(frame.t0, value, trained_until)
    frame.columns(recipe.features)  # a missing feature is a ConfigError naming it
    X = frame.X[:, frame.columns(recipe.features)]
    has_features = ~np.all(np.isnan(X), axis=1)
    params = lightgbm_params(RetrainConfig(), recipe.params)

    refit = has_features.copy()
    if deployed is not None and deployed_until is not None:
        fresh = has_features & (frame.t0 > deployed_until)
        if fresh.any():
            rows = np.flatnonzero(fresh).astype(np.intp)
            value[rows] = deployed.predict(matrix(frame, rows, recipe.features))
            trained_until[rows] = deployed_until
        refit &= ~fresh

    starts = period_starts(frame.t0, refit_months)
    resolved = ~np.isnat(frame.t1)
    for start in np.unique(starts[refit]):
        rows = np.flatnonzero(refit & (starts == start)).astype(np.intp)
        # Labels resolved strictly before the period starts, so before every bar it predicts.
        train = np.flatnonzero(resolved & (frame.t1 < start) & has_features).astype(np.intp)
        train = train[-window:]
        if len(train) < min_train or len(np.unique(frame.y[train])) < 2:
            continue
        model = fit_rounds(frame, train, recipe.features, params, recipe.rounds)
        value[rows] = model.predict(matrix(frame, rows, recipe.features))
        trained_until[rows] = frame.t1[train].max()
    return Probabilities(frame.t0, value, trained_until)


def recipe_of(version: models.ModelVersion) -> Recipe:
    params = {k: v for k, v in version.params.items() if k != "num_boost_round"}
    return Recipe(version.features, params, int(version.params.get("num_boost_round") or 0))


def probabilities_for(
    wh: Warehouse, model_id: str, version: int, symbol: str, *, refit_months: int = REFIT_MONTHS
) -> Probabilities:
    """Out-of-sample probabilities of `model_id` version `version` over the symbol's features."""
    try:
        registered = models.get_version(wh, model_id, version)
    except ConfigError:
        raise ConfigError(
            f"ml_signal trades model {model_id!r} version {version}, which is not in "
            "model_versions: train it with `runner optimize --task retrain` or set the "
            "strategy's model_version to a version that exists."
        ) from None
    frame = load_features(wh, symbol)
    deployed = models.load_model(registered) if registered.artifact_path else None
    end = registered.training_end
    return walk_forward_probabilities(
        frame,
        recipe_of(registered),
        deployed=deployed,
        deployed_until=None if end is None else np.datetime64(end.replace(tzinfo=None), "us"),
        refit_months=refit_months,
    )


def needs_probability(strategy: object) -> bool:
    return bool(getattr(strategy, "needs_probability", False))


def with_model(
    wh: Warehouse, bars: Bars, strategy: object, params: Mapping[str, Any], model_id: str
) -> Bars:
    """`bars` with the probabilities the strategy trades attached (unchanged for a strategy that
    trades no model)."""
    if not needs_probability(strategy):
        return bars
    version = int(params["model_version"])
    return bars.with_probability(probabilities_for(wh, model_id, version, bars.symbol).on(bars))
