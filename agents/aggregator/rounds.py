"""Contributions (decoded gradients, deltas or parameters) and the rounds that gather them.

A round collects at most one contribution per worker for one parameter version; it is ready when
every expected worker has contributed, or when its straggler deadline has passed and it holds at
least one. Each contribution's tensors are folded into the round's sample-weighted sum as it
arrives (and dropped from the contribution), so a round holds one parameter-sized buffer however
many trainers send (docs/architecture.md, "The aggregator"). Contributions for a later version (a
fast worker, or a replay after a restart) wait in ``Ahead`` until the version comes round.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np


@dataclass(slots=True)
class Contribution:
    worker: str
    base_version: int
    tensors: dict[str, np.ndarray]
    samples: int
    offset: int  # where it sits in its topic (checkpoints must not pass an unapplied one)
    partition: int = 0
    loss: float | None = None
    step: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    received_at: float = 0.0  # monotonic
    transit_ms: float = 0.0  # sender's send -> our receive (wall clocks of one machine)
    produce_ms: float | None = None  # sender's send -> the broker's append (LogAppendTime topics)
    nbytes: int = 0


def weighted_mean(items: Iterable[Contribution]) -> dict[str, np.ndarray]:
    """Sample-weighted mean of the contributions' tensors (plain mean when no samples are given)."""
    items = list(items)
    weights = np.array([max(c.samples, 0) for c in items], np.float64)
    weights = weights / weights.sum() if weights.sum() > 0 else np.full(len(items), 1.0 / len(items))
    out: dict[str, np.ndarray] = {}
    for name in items[0].tensors:
        acc = np.zeros_like(items[0].tensors[name], dtype=np.float32)
        for w, c in zip(weights, items, strict=True):
            acc += np.float32(w) * c.tensors[name]
        out[name] = acc
    return out


class Round:
    """The contributions for parameter version ``version``."""

    def __init__(self, version: int, opened_at: float) -> None:
        self.version = version
        self.opened_at = opened_at
        self.first_at: float | None = None
        self.by_worker: dict[str, Contribution] = {}  # metadata; tensors folded into ``_sum``
        self._sum: dict[str, np.ndarray] = {}
        self._weight = 0.0

    def add(self, c: Contribution) -> bool:
        """Keep the first contribution of each worker (its tensors go into the weighted sum);
        False for a duplicate. The tensors are the contribution's to use up: the first writable
        float32 ones (a chunked record's buffer, widened fp16, top-k's dense arrays) are scaled in
        place and become the sum, so a round holds no buffer beside the one it received."""
        if c.worker in self.by_worker:
            return False
        w = np.float32(c.samples if c.samples > 0 else 1)  # a contribution without samples counts 1
        for name, value in c.tensors.items():
            if name in self._sum:
                self._sum[name] += w * value
            elif value.dtype == np.float32 and value.flags.writeable:
                value *= w  # the contribution's own memory (its record's buffer) becomes the sum
                self._sum[name] = value
            else:
                self._sum[name] = (w * np.asarray(value, np.float32)).astype(np.float32, copy=False)
        self._weight += float(w)
        c.tensors = {}
        self.by_worker[c.worker] = c
        if self.first_at is None:
            self.first_at = c.received_at
        return True

    def mean(self) -> dict[str, np.ndarray]:
        """The sample-weighted mean of the contributions (in place: call once, when applying)."""
        scale = np.float32(1.0 / self._weight) if self._weight > 0 else np.float32(0.0)
        for value in self._sum.values():
            value *= scale
        return self._sum

    @property
    def workers(self) -> set[str]:
        return set(self.by_worker)

    def missing(self, expected: set[str]) -> set[str]:
        return expected - self.workers

    def ready(self, expected: set[str], now: float, deadline_s: float, min_workers: int = 1) -> bool:
        """All expected workers are in (and at least ``min_workers``), or the deadline passed."""
        if not self.by_worker:
            return False
        if len(self.by_worker) >= min_workers and not self.missing(expected):
            return True
        assert self.first_at is not None
        return now - self.first_at >= deadline_s

    def deadline_at(self, deadline_s: float) -> float | None:
        return None if self.first_at is None else self.first_at + deadline_s

    def min_offset(self) -> int | None:
        return min((c.offset for c in self.by_worker.values()), default=None)


class Ahead:
    """Contributions for versions not reached yet (bounded: the oldest are dropped first)."""

    def __init__(self, limit: int = 256) -> None:
        self.limit = limit
        self.items: list[Contribution] = []

    def add(self, c: Contribution) -> int:
        """Keep ``c``; returns how many old ones had to be dropped to stay under the limit."""
        self.items.append(c)
        dropped = max(0, len(self.items) - self.limit)
        if dropped:
            self.items.sort(key=lambda x: x.base_version)
            self.items = self.items[dropped:]
        return dropped

    def take(self, version: int) -> list[Contribution]:
        """Remove and return the contributions for ``version`` (older ones are discarded)."""
        now = [c for c in self.items if c.base_version == version]
        self.items = [c for c in self.items if c.base_version > version]
        return now

    def min_offset(self) -> int | None:
        return min((c.offset for c in self.items), default=None)
