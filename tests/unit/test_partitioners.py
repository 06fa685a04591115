"""Partitioners keep their promises: balance, contiguity, stratification, stable hashing."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiaas.data.partitioners import STRATEGIES, assign, row_hash
from aiaas.schemas.errors import AiaasError


def _data(n: int, classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 5)).astype(np.float32), rng.integers(0, classes, n)


@given(n=st.integers(1, 400), parts=st.integers(1, 9), seed=st.integers(0, 2**31))
@settings(max_examples=60, deadline=None)
def test_random_is_balanced_and_in_range(n: int, parts: int, seed: int) -> None:
    x, y = _data(n, 3)
    p = assign("random", x, y, parts, seed)
    counts = np.bincount(p, minlength=parts)
    assert p.shape == (n,) and p.min() >= 0 and p.max() < parts
    assert counts.max() - counts.min() <= 1


def test_random_depends_on_seed_only() -> None:
    x, y = _data(200, 3)
    assert np.array_equal(assign("random", x, y, 4, 7), assign("random", x, y, 4, 7))
    assert not np.array_equal(assign("random", x, y, 4, 7), assign("random", x, y, 4, 8))


@given(n=st.integers(1, 400), parts=st.integers(1, 9))
@settings(max_examples=60, deadline=None)
def test_sequential_gives_contiguous_ranges(n: int, parts: int) -> None:
    x, y = _data(n, 3)
    p = assign("sequential", x, y, parts, 0)
    assert np.all(np.diff(p) >= 0)  # non-decreasing
    if n >= parts:
        assert np.all(np.diff(p) <= 1) and len(np.unique(p)) == parts  # no partition left empty
    for part in np.unique(p):
        rows = np.flatnonzero(p == part)
        assert rows[-1] - rows[0] + 1 == len(rows)  # one contiguous range
    counts = np.bincount(p, minlength=parts)
    assert counts.max() - counts.min() <= 1


@given(parts=st.integers(1, 6), classes=st.integers(2, 10), seed=st.integers(0, 1000))
@settings(max_examples=60, deadline=None)
def test_stratified_gives_every_partition_every_class(parts: int, classes: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = np.concatenate([np.full(rng.integers(parts, parts + 40), c) for c in range(classes)])
    x = rng.normal(size=(len(y), 3))
    p = assign("stratified", x, y, parts, seed)
    for part in range(parts):
        assert set(y[p == part]) == set(range(classes))
    counts = np.bincount(p, minlength=parts)
    assert counts.max() - counts.min() <= 1  # dealing continues across classes: still balanced


def test_stratified_on_regression_targets_spreads_quantiles() -> None:
    y = np.linspace(-3, 3, 300).astype(np.float32)
    p = assign("stratified", np.zeros((300, 2)), y, 3, 0)
    for part in range(3):
        mine = y[p == part]
        assert mine.min() < -2.5 and mine.max() > 2.5  # every partition sees the whole range


def test_stratified_refuses_a_class_too_small_to_share() -> None:
    y = np.array([0, 0, 0, 1])
    with pytest.raises(AiaasError) as err:
        assign("stratified", np.zeros((4, 1)), y, 2, 0)
    assert err.value.details["field"] == "data.partitions"


@given(parts=st.integers(1, 6), extra=st.integers(0, 8), seed=st.integers(0, 1000))
@settings(max_examples=60, deadline=None)
def test_label_puts_each_class_on_exactly_one_partition(parts: int, extra: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    classes = parts + extra
    y = rng.permutation(np.concatenate([np.full(rng.integers(1, 40), c) for c in range(classes)]))
    p = assign("label", np.zeros((len(y), 2)), y, parts, seed)
    for c in range(classes):
        assert len(np.unique(p[y == c])) == 1  # by label value: a class never spans partitions
    assert set(np.unique(p)) == set(range(parts))  # and no partition is left empty
    counts = np.bincount(p, minlength=parts)
    assert counts.max() - counts.min() <= max(np.bincount(y))  # largest-first keeps them near even


def test_label_refuses_fewer_labels_than_partitions_naming_stratified() -> None:
    with pytest.raises(AiaasError) as err:
        assign("label", np.zeros((6, 1)), np.array([0, 0, 1, 1, 2, 2]), 4, 0)
    assert err.value.details["field"] == "data.strategy"
    assert "3 labels cannot fill 4 partitions" in err.value.reason and "stratified" in err.value.reason


def test_label_on_regression_targets_gives_each_value_range_one_partition() -> None:
    y = np.linspace(-3, 3, 300).astype(np.float32)
    p = assign("label", np.zeros((300, 2)), y, 2, 0)
    bins = np.searchsorted(np.quantile(y, np.linspace(0, 1, 11)[1:-1]), y, side="right")
    for b in np.unique(bins):
        assert len(np.unique(p[bins == b])) == 1


@given(rows=st.lists(st.lists(st.floats(-1e6, 1e6, width=32), min_size=3, max_size=3), min_size=1,
                     max_size=50), parts=st.integers(1, 8))
@settings(max_examples=60, deadline=None)
def test_hash_is_stable_per_row(rows: list[list[float]], parts: int) -> None:
    x = np.asarray(rows, np.float32)
    y = np.zeros(len(x), np.int64)
    p = assign("hash", x, y, parts, 0)
    again = assign("hash", x[::-1].copy(), y, parts, 123)[::-1]  # order and seed do not matter
    assert np.array_equal(p, again)
    for i, row in enumerate(x):
        assert p[i] == row_hash(row) % parts


def test_hash_is_stable_across_processes() -> None:
    """A fixed digest: Python's salted hash() would change between runs; blake2b must not."""
    assert row_hash(np.array([1.0, 2.0, 3.0], np.float32)) == row_hash(np.array([1, 2, 3], np.float64))
    assert row_hash(np.array([1.0, 2.0, 3.0], np.float32)) == 0x42FFA9F6DDCBAE4B


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_covers_all_rows(strategy: str) -> None:
    x, y = _data(500, 10)
    p = assign(strategy, x, y, 4, 0)
    assert p.shape == (500,) and set(np.unique(p)) == {0, 1, 2, 3}


def test_unknown_strategy_is_rejected_by_name() -> None:
    x, y = _data(10, 2)
    with pytest.raises(AiaasError) as err:
        assign("zigzag", x, y, 2, 0)
    assert err.value.details["field"] == "data.strategy"
