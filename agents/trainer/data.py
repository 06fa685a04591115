"""The rows of the data partitions this trainer owns, and minibatches drawn from them epoch by epoch.

The faust agent reads the partitions from the beginning (the data topic is a dataset, not a queue:
nothing is committed on it) and files every batch under (partition, offset), so a re-delivery after a
rebalance overwrites instead of duplicating. Later epochs replay these rows from memory; when a
rebalance takes a partition away its rows go, and a partition handed over is read from its start.
A continuous job (``window``) keeps only the newest rows: the oldest batches filed go first, so the
trainer follows the stream as it moves (README, "Train from your topic").
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

import numpy as np


class LocalData:
    """Rows per owned partition; ``next_batch`` deals shuffled minibatches, one epoch after another."""

    def __init__(self, batch_size: int, seed: int = 0, window: int | None = None) -> None:
        self.batch_size = batch_size
        self.window = window  # keep at most this many rows, the newest
        self._filed: deque[tuple[int, int]] = deque()  # (partition, offset) in filing order
        self._rng = np.random.default_rng(seed)
        self._parts: dict[int, dict[int, tuple[np.ndarray, np.ndarray]]] = {}
        self._owned: set[int] = set()
        self._x: np.ndarray | None = None
        self._y: np.ndarray | None = None
        self._order: np.ndarray = np.zeros(0, np.int64)
        self._pos = 0
        self.epochs_done = 0
        self.changed = 0  # bumped on every change of the row set
        self.fatal: str | None = None  # the data cannot be trained on (e.g. it does not fit the model)

    @property
    def partitions(self) -> set[int]:
        """Partitions owned now (by the latest assignment)."""
        return set(self._owned)

    @property
    def rows(self) -> int:
        return sum(len(x) for part in self._parts.values() for x, _ in part.values())

    def assign(self, partitions: Iterable[int]) -> None:
        """The new assignment: forget rows of partitions no longer owned."""
        self._owned = set(partitions)
        for p in [p for p in self._parts if p not in self._owned]:
            del self._parts[p]
        self._invalidate()

    def add(self, partition: int, offset: int, x: np.ndarray, y: np.ndarray) -> None:
        """File one batch (a re-delivered offset replaces the earlier copy)."""
        if self._owned and partition not in self._owned:
            return
        part = self._parts.setdefault(partition, {})
        if self.window is not None and offset not in part:
            self._filed.append((partition, offset))
        part[offset] = (x, y)
        self._evict()
        self._invalidate()

    def _evict(self) -> None:
        """Drop the oldest batches while more than ``window`` rows are held."""
        if self.window is None:
            return
        held = self.rows
        while self._filed and held - self._oldest_rows() >= self.window:
            p, o = self._filed.popleft()
            batch = self._parts.get(p, {}).pop(o, None)
            held -= 0 if batch is None else len(batch[0])

    def _oldest_rows(self) -> int:
        p, o = self._filed[0]
        batch = self._parts.get(p, {}).get(o)
        return 0 if batch is None else len(batch[0])

    def _invalidate(self) -> None:
        self._x = self._y = None
        self.changed += 1

    def _rebuild(self) -> None:
        batches = [self._parts[p][o] for p in sorted(self._parts) for o in sorted(self._parts[p])]
        if not batches:
            self._x = self._y = None
            return
        self._x = np.concatenate([b[0] for b in batches])
        self._y = np.concatenate([b[1] for b in batches])
        self._order = self._rng.permutation(len(self._x))
        self._pos = 0

    def next_batch(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The next minibatch (the last of an epoch may be short); None while no rows are held."""
        if self._x is None:
            self._rebuild()
            if self._x is None or self._y is None:
                return None
        if self._pos >= len(self._order):
            self.epochs_done += 1
            self._order = self._rng.permutation(len(self._x))
            self._pos = 0
        idx = self._order[self._pos:self._pos + self.batch_size]
        self._pos += self.batch_size
        assert self._y is not None
        return self._x[idx], self._y[idx]
