"""Routing rows of a user's topic (aiaas.data.streamsplit) and a continuous trainer's window (no broker).

Every process of a job must route a record the same way, so routing depends on the record only;
the held-out share is a stable function of the key; a continuous trainer keeps its newest rows.
"""

from __future__ import annotations

import numpy as np
import pytest

from aiaas.agents.trainer.data import LocalData
from aiaas.data.streamsplit import fit_scaling, held_out, key_hashes, route

OFFS = np.arange(10_000, dtype=np.int64)
KEYS = [f"r{i}".encode() for i in range(10_000)]


def _route(strategy: str, **kw: object) -> np.ndarray:
    hashes = key_hashes(KEYS, 0, OFFS)
    y = np.arange(10_000) % 10
    return route(strategy, 4, seed=1, partition=0, offsets=OFFS, hashes=hashes, y=y, **kw)  # type: ignore[arg-type]


def test_held_out_is_a_stable_share_of_keys() -> None:
    h = key_hashes(KEYS, 0, OFFS)
    again = key_hashes(list(reversed(KEYS)), 1, OFFS[::-1])[::-1]  # another partition, order: same keys
    assert np.array_equal(h, again)
    share = held_out(h, 0.2).mean()
    assert 0.18 < share < 0.22
    assert not held_out(h, 0.0).any() and held_out(h, 1.0).all()


def test_records_without_a_key_hash_by_partition_and_offset() -> None:
    a = key_hashes([None, None], 0, np.array([5, 6]))
    b = key_hashes([None, None], 1, np.array([5, 6]))
    assert a[0] != a[1] and a[0] != b[0]
    assert np.array_equal(a, key_hashes([None, None], 0, np.array([5, 6])))


@pytest.mark.parametrize("strategy", ["random", "stratified", "hash"])
def test_balanced_strategies_spread_rows_evenly_and_deterministically(strategy: str) -> None:
    parts = _route(strategy)
    assert np.array_equal(parts, _route(strategy))
    counts = np.bincount(parts, minlength=4)
    assert counts.min() > 2200 and counts.max() < 2800


def test_sequential_cuts_a_bounded_range_into_contiguous_ranges() -> None:
    parts = _route("sequential", span=(0, 10_000))
    assert np.all(np.diff(parts) >= 0) and list(np.bincount(parts)) == [2500] * 4
    unbounded = _route("sequential", block=100)
    assert set(unbounded[:100]) == {0} and set(unbounded[100:200]) == {1}


def test_label_puts_each_class_on_one_partition() -> None:
    parts = _route("label")
    y = np.arange(10_000) % 10
    for c in range(10):
        assert len(set(parts[y == c])) == 1


def test_fit_scaling_leaves_constant_columns_alone() -> None:
    x = np.stack([np.arange(10.0), np.full(10, 3.0)], axis=1)
    mean, std = fit_scaling(x)
    assert mean[1] == 3.0 and std[1] == 1.0 and std[0] > 0


def test_window_keeps_the_newest_rows() -> None:
    data = LocalData(batch_size=8, window=100)
    data.assign([0, 1])
    for i in range(10):
        data.add(i % 2, i, np.full((40, 2), i, np.float32), np.zeros(40, np.int64))
    assert 100 <= data.rows < 140
    batch = data.next_batch()
    assert batch is not None and batch[0].min() >= 7  # only the newest batches are left
