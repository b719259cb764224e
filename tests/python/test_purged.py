"""Purged splits on spans small enough to check by hand (AFML ch. 7): usable samples at τ, purge,
embargo, walk-forward, purged k-fold, the early-stopping tail; and, with overlapping labels, the
leak that purging removes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.optimize import purged
from runner.optimize.retrain import auc

DAY = np.timedelta64(1, "D")
START = np.datetime64("2024-01-01", "D")


def spans(n: int, horizon: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Sample i is decided on day i and resolves on day i + horizon."""
    t0 = START + np.arange(n) * DAY
    return t0, t0 + horizon * DAY


def test_only_labels_resolved_before_tau_are_usable() -> None:
    t0, t1 = spans(10)
    t1 = t1.copy()
    t1[9] = np.datetime64("NaT")
    # τ = day 8: t1 = day i + 2 < day 8 holds for i <= 5; a label resolving at τ itself is not usable.
    assert np.flatnonzero(purged.usable(t1, START + 8 * DAY)).tolist() == [0, 1, 2, 3, 4, 5]


def test_embargo_is_the_larger_of_one_percent_and_the_horizon() -> None:
    assert purged.embargo_size(1000, 0.01, 5) == 10
    assert purged.embargo_size(100, 0.01, 5) == 5
    assert purged.embargo_size(1001, 0.01, 0) == 11  # ceil


def test_purge_drops_overlapping_spans_and_embargoes_what_follows() -> None:
    t0, t1 = spans(10)
    test = np.array([4, 5])  # span: day 4 .. day 7
    train = np.setdiff1d(np.arange(10), test)
    split = purged.purge(train, test, t0, t1, embargo=1)
    # overlap: t0 <= day 7 and t1 = day i + 2 >= day 4, i.e. i in 2..7 (less the test samples)
    assert split.purged.tolist() == [2, 3, 6, 7]
    # the first sample starting after day 7 is 8: the embargo of one sample takes it
    assert split.embargoed.tolist() == [8]
    assert split.train.tolist() == [0, 1, 9]


def test_a_label_resolving_exactly_when_the_test_block_starts_is_purged() -> None:
    t0, t1 = spans(6, horizon=2)
    split = purged.purge(np.arange(3), np.arange(3, 6), t0, t1)
    # sample 1 resolves on day 3 = the test block's first decision: closed spans overlap
    assert split.train.tolist() == [0]
    assert split.purged.tolist() == [1, 2]


def test_walk_forward_trains_before_each_block_and_purges_its_edge() -> None:
    t0, t1 = spans(12)
    first, second = purged.walk_forward(t0, t1, folds=2, embargo=1)
    assert first.test.tolist() == [4, 5, 6, 7]
    assert first.train.tolist() == [0, 1] and first.purged.tolist() == [2, 3]
    assert second.test.tolist() == [8, 9, 10, 11]
    assert second.train.tolist() == [0, 1, 2, 3, 4, 5] and second.purged.tolist() == [6, 7]
    # training never follows its block in walk-forward, so nothing is embargoed
    assert first.embargoed.size == 0 and second.embargoed.size == 0


def test_walk_forward_rolling_window_and_the_oldest_remainder() -> None:
    t0, t1 = spans(13, horizon=1)
    splits = purged.walk_forward(t0, t1, folds=3, embargo=0, max_train=3)
    # 13 // 4 = 3 per block; the remainder joins the history block: tests start at 4
    assert [s.test.tolist() for s in splits] == [[4, 5, 6], [7, 8, 9], [10, 11, 12]]
    assert [s.train.tolist() for s in splits] == [[1, 2], [4, 5], [7, 8]]


def test_walk_forward_refuses_folds_left_too_small_by_purging() -> None:
    t0, t1 = spans(12, horizon=3)
    with pytest.raises(ValueError, match="fold 1 of 2 keeps 1 training samples"):
        purged.walk_forward(t0, t1, folds=2, embargo=0, min_train=2)


def test_purged_kfold_embargoes_the_samples_after_a_middle_block() -> None:
    t0, t1 = spans(12)
    folds = purged.purged_kfold(t0, t1, np.arange(12), folds=3, embargo=1)
    middle = folds[1]
    assert middle.test.tolist() == [4, 5, 6, 7]  # span day 4 .. day 9
    assert middle.purged.tolist() == [2, 3, 8, 9]
    assert middle.embargoed.tolist() == [10]
    assert middle.train.tolist() == [0, 1, 11]


def test_early_stopping_tail_is_purged_from_the_fit_rows() -> None:
    t0, t1 = spans(10)
    fit, valid = purged.purged_tail(np.arange(10), t0, t1, fraction=0.2)
    assert valid.tolist() == [8, 9]  # span day 8 .. day 11
    assert fit.tolist() == [0, 1, 2, 3, 4, 5]  # 6 and 7 resolve on days 8 and 9


def test_splits_refuse_unsorted_or_unresolved_samples() -> None:
    t0, t1 = spans(6)
    with pytest.raises(ValueError, match="sorted"):
        purged.purge(np.arange(3), np.arange(3, 6), t0[::-1], t1[::-1])
    unresolved = t1.copy()
    unresolved[5] = np.datetime64("NaT")
    with pytest.raises(ValueError, match="no resolved label"):
        purged.purge(np.arange(3), np.arange(3, 6), t0, unresolved)
    # an unresolved sample outside the split is fine
    assert purged.purge(np.arange(2), np.arange(3, 5), t0, unresolved).train.tolist() == [0]


@settings(max_examples=200, deadline=None)
@given(
    horizons=st.lists(st.integers(0, 6), min_size=8, max_size=60),
    data=st.data(),
)
def test_no_kept_training_span_overlaps_the_test_span(
    horizons: list[int], data: st.DataObject
) -> None:
    n = len(horizons)
    t0 = START + np.arange(n) * DAY
    t1 = t0 + np.array(horizons) * DAY
    lo = data.draw(st.integers(0, n - 1))
    hi = data.draw(st.integers(lo + 1, n))
    embargo = data.draw(st.integers(0, 4))
    test = np.arange(lo, hi)
    train = np.setdiff1d(np.arange(n), test)
    split = purged.purge(train, test, t0, t1, embargo)
    start, end = t0[test].min(), t1[test].max()
    kept = split.train
    assert not np.any((t0[kept] <= end) & (t1[kept] >= start))
    assert sorted([*kept, *split.purged, *split.embargoed]) == train.tolist()
    # the embargo only takes samples that start after the test block's last resolution
    assert np.all(t0[split.embargoed] > end)


def shared_event_labels(
    n: int, horizon: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Events every `horizon` bars, half a horizon out of phase with the k-fold blocks; sample
    i's label is the sign of the one event inside its span (i, i + horizon], so samples whose
    spans overlap share their label exactly."""
    rng = np.random.default_rng(seed)
    events = rng.random(n // horizon + 2) < 0.5
    i = np.arange(n)
    t0 = START + i * DAY
    return t0, t0 + horizon * DAY, events[(i + horizon + horizon // 2) // horizon].astype(float)


def nearest_in_time(train: np.ndarray, test: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The memorising model overlapping labels reward: each test sample gets the label of the
    training sample closest to it in time (a tree on any slow feature does this, less sharply)."""
    right = np.clip(np.searchsorted(train, test), 0, len(train) - 1)
    left = np.clip(right - 1, 0, len(train) - 1)
    nearer = np.where(np.abs(train[left] - test) <= np.abs(train[right] - test), left, right)
    return y[train[nearer]]


def test_purging_removes_the_leak_of_overlapping_labels() -> None:
    """Labels with a 20-bar horizon, test blocks of 20 bars, a model that only knows when a
    sample is: unpurged k-fold scores an AUC near 1 from shared labels alone; purged and
    embargoed, the same model is a coin."""
    horizon = 20
    t0, t1, y = shared_event_labels(20_000, horizon, seed=3)
    positions = np.arange(len(y))
    embargo = purged.embargo_size(len(y), 0.01, horizon)
    scores = {}
    for name, leak in (("unpurged", True), ("purged", False)):
        predicted, truth = [], []
        for split in purged.purged_kfold(
            t0, t1, positions, folds=len(y) // horizon, embargo=embargo
        ):
            train = np.setdiff1d(positions, split.test) if leak else split.train
            predicted.append(nearest_in_time(train, split.test, y))
            truth.append(y[split.test])
        scores[name] = auc(np.concatenate(truth), np.concatenate(predicted))
    assert scores["unpurged"] is not None and scores["unpurged"] > 0.95
    assert scores["purged"] is not None and abs(scores["purged"] - 0.5) < 0.04
