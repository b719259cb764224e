"""Leakage-free splits of samples with spans [t0, t1] (López de Prado, AFML ch. 7).

Owns: which samples are usable at a retrain time τ (t1 < τ), purging (a training sample whose
span overlaps a test block's span is dropped), the embargo (the samples that start right after a
test block's last label resolves are dropped), walk-forward and purged k-fold splits, and the
purged tail a training window gives up for early stopping. Positions index arrays sorted by t0.
It fits nothing: the trainer (runner.optimize.retrain) uses these positions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]
TimeArray = npt.NDArray[np.datetime64]


@dataclass(frozen=True, eq=False)
class Split:
    """One fold: training and test positions, and what purging and the embargo took away."""

    train: IntArray
    test: IntArray
    purged: IntArray
    embargoed: IntArray


def usable(t1: TimeArray, as_of: np.datetime64) -> BoolArray:
    """Samples whose label resolved strictly before the retrain time τ = `as_of` (AFML 7.4)."""
    return ~np.isnat(t1) & (t1 < as_of)


def embargo_size(n: int, fraction: float, horizon_bars: int) -> int:
    """h = max(ceil(fraction · T), label horizon) samples: AFML 7.4.2's 0.01·T, never shorter than
    the label's own reach."""
    if fraction < 0 or horizon_bars < 0:
        raise ValueError("the embargo fraction and the horizon must be >= 0")
    return max(math.ceil(fraction * n), horizon_bars)


def _check(t0: TimeArray, t1: TimeArray, positions: IntArray | None = None) -> None:
    """Spans sorted by t0; the samples at `positions` (default: all) resolved, with t0 <= t1.
    Samples elsewhere may be unresolved (NaT): they are never split, only counted past."""
    if len(t0) != len(t1):
        raise ValueError(f"t0 has {len(t0)} samples, t1 {len(t1)}")
    if np.any(np.isnat(t0)):
        raise ValueError("every sample needs its decision time t0")
    if len(t0) > 1 and np.any(t0[1:] < t0[:-1]):
        raise ValueError("samples must be sorted by t0")
    ends = t1 if positions is None else t1[positions]
    starts = t0 if positions is None else t0[positions]
    if np.any(np.isnat(ends)):
        raise ValueError("a sample in a split has no resolved label (use usable() first)")
    if np.any(ends < starts):
        raise ValueError("a span ends before it starts (t1 < t0)")


def purge(train: IntArray, test: IntArray, t0: TimeArray, t1: TimeArray, embargo: int = 0) -> Split:
    """Drop from `train` the samples whose closed span [t0, t1] overlaps the test block's span
    [min t0(test), max t1(test)], then the `embargo` samples that start first after max t1(test).

    AFML 7.4.1 (purging) and 7.4.2 (embargo; the training set after a test block restarts
    `embargo` samples after the block's last label resolves, as in AFML's PurgedKFold).
    """
    train = np.asarray(train, dtype=np.intp)
    test = np.asarray(test, dtype=np.intp)
    _check(t0, t1, np.concatenate([train, test]))
    if len(test) == 0:
        empty = np.array([], dtype=np.intp)
        return Split(train=train, test=test, purged=empty, embargoed=empty)
    start, end = t0[test].min(), t1[test].max()
    overlaps = (t0[train] <= end) & (t1[train] >= start)
    first_after = int(np.searchsorted(t0, end, side="right"))
    embargoed = (train >= first_after) & (train < first_after + embargo) & ~overlaps
    keep = ~overlaps & ~embargoed
    return Split(train=train[keep], test=test, purged=train[overlaps], embargoed=train[embargoed])


def walk_forward(
    t0: TimeArray,
    t1: TimeArray,
    *,
    folds: int,
    embargo: int,
    min_train: int = 1,
    max_train: int | None = None,
) -> list[Split]:
    """Cut n samples into folds + 1 equal blocks (the oldest remainder joins block 0); fold k
    trains on the samples before test block k (the last `max_train` of them, or all: an
    expanding window), purged against the block, and tests on block k.

    Training never follows its test block here, so the embargo only bites when a caller passes
    training samples after it; it is applied all the same, by the one purge().
    """
    _check(t0, t1)
    n = len(t0)
    if folds < 1:
        raise ValueError(f"folds must be >= 1, got {folds}")
    block = n // (folds + 1)
    if block < 1:
        raise ValueError(f"{n} samples are too few for {folds} walk-forward folds")
    first = n - folds * block
    splits = []
    for k in range(folds):
        start = first + k * block
        lo = 0 if max_train is None else max(0, start - max_train)
        split = purge(
            np.arange(lo, start, dtype=np.intp),
            np.arange(start, start + block, dtype=np.intp),
            t0,
            t1,
            embargo,
        )
        if len(split.train) < min_train:
            raise ValueError(
                f"fold {k + 1} of {folds} keeps {len(split.train)} training samples after "
                f"purging (< {min_train}); use fewer folds or a longer window"
            )
        splits.append(split)
    return splits


def purged_kfold(
    t0: TimeArray, t1: TimeArray, positions: IntArray, *, folds: int, embargo: int
) -> list[Split]:
    """AFML's PurgedKFold over `positions` (sorted; a subset of the samples): `folds` contiguous
    test blocks in time order, each trained on every other position, purged and embargoed."""
    positions = np.asarray(positions, dtype=np.intp)
    _check(t0, t1, positions)
    if folds < 2 or len(positions) < folds:
        raise ValueError(f"purged k-fold needs folds >= 2 and >= folds samples, got {folds}")
    blocks = np.array_split(positions, folds)
    return [
        purge(np.setdiff1d(positions, test, assume_unique=True), test, t0, t1, embargo)
        for test in blocks
    ]


def purged_tail(
    train: IntArray, t0: TimeArray, t1: TimeArray, fraction: float, min_valid: int = 1
) -> tuple[IntArray, IntArray]:
    """Split a training set into (fit, validation) for early stopping: the validation set is the
    last `fraction` of the training positions; fit samples whose span reaches into the
    validation span are purged. The test block is never involved."""
    train = np.sort(np.asarray(train, dtype=np.intp))
    _check(t0, t1, train)
    if not 0 < fraction < 1:
        raise ValueError(f"the validation fraction must be in (0, 1), got {fraction}")
    size = max(min_valid, math.ceil(fraction * len(train)))
    if size >= len(train):
        raise ValueError(f"{len(train)} training samples are too few for a validation tail")
    head, tail = train[:-size], train[-size:]
    return purge(head, tail, t0, t1).train, tail
