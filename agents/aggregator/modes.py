"""How contributions become parameter versions, per sync mode (docs/architecture.md, "Sync modes").

- ``RoundMode`` (sync: gradients -> optimizer step; hybrid: deltas -> parameters += mean delta):
  BSP rounds over the live membership with a straggler deadline.
- ``AsyncMode``: gradients are applied as they come if ``version - base_version <= staleness``,
  else dropped and counted; those that arrive together (one poll) are averaged into one step, so
  the server keeps up with any number of trainers instead of queueing them into staleness.
- ``RingMode``: the trainers average among themselves; this only follows their newest parameters
  and publishes their mean as a version (for evaluation, checkpoints and export).

``take`` returns the blocking work for a worker thread (None when nothing is due); it applies the
update to the ``ServerState`` and returns how many samples it consumed.
"""

from __future__ import annotations

from collections.abc import Callable

from aiaas.schemas.jobs import JobSpec

from .members import Membership
from .rounds import Ahead, Contribution, Round, weighted_mean
from .state import ServerState

Work = Callable[[], int]


class RoundMode:
    def __init__(self, spec: JobSpec, state: ServerState, members: Membership, *,
                 first_deadline_s: float, first_min_workers: int) -> None:
        self.spec, self.state, self.members = spec, state, members
        self.deadline_s = spec.sync.straggler_deadline_ms / 1000
        self.first_deadline_s, self.first_min_workers = first_deadline_s, first_min_workers
        self.round = Round(state.version, 0.0)
        self.ahead = Ahead()
        self.first = True
        self.dropped = 0
        self.waits_ms: list[float] = []  # how long each round's first arrival waited for the last

    def offer(self, c: Contribution) -> None:
        if c.base_version == self.state.version:
            self.round.add(c)
        elif c.base_version > self.state.version:
            self.dropped += self.ahead.add(c)
        else:
            self.dropped += 1

    def _limits(self) -> tuple[float, int]:
        return (self.first_deadline_s, self.first_min_workers) if self.first else (self.deadline_s, 1)

    def next_deadline(self) -> float | None:
        return self.round.deadline_at(self._limits()[0])

    def take(self, now: float) -> Work | None:
        deadline, least = self._limits()
        expected = self.members.expected()
        if not self.round.ready(expected, now, deadline, least):
            return None
        self.members.mark_late(self.round.missing(expected))
        done = list(self.round.by_worker.values())
        if self.round.first_at is not None:
            self.waits_ms.append((max(c.received_at for c in done) - self.round.first_at) * 1000)
        self.first = False
        mean = self.round.mean()
        delta = self.spec.sync.mode == "hybrid"

        def work() -> int:
            (self.state.apply_delta if delta else self.state.apply_gradient)(mean)
            mean.clear()  # applied: gone before the version is packed (a parameter copy less)
            return sum(c.samples for c in done)

        return work

    def advanced(self, now: float) -> None:
        """Open the round of the new version (with what already arrived for it)."""
        self.round = Round(self.state.version, now)
        for c in self.ahead.take(self.state.version):
            self.round.add(c)

    def unapplied_offset(self) -> dict[int, int]:
        """Lowest offset per partition of contributions held but not applied yet."""
        out: dict[int, int] = {}
        for c in [*self.round.by_worker.values(), *self.ahead.items]:
            out[c.partition] = min(out.get(c.partition, c.offset), c.offset)
        return out


class AsyncMode:
    def __init__(self, spec: JobSpec, state: ServerState, members: Membership) -> None:
        self.spec, self.state, self.members = spec, state, members
        self.queue: list[Contribution] = []
        self.dropped = 0
        self.waits_ms: list[float] = []

    def offer(self, c: Contribution) -> None:
        self.queue.append(c)

    def next_deadline(self) -> float | None:
        return None

    def take(self, now: float) -> Work | None:
        if not self.queue:
            return None
        todo, self.queue = self.queue, []
        fresh = [c for c in todo if self.state.version - c.base_version <= self.spec.sync.staleness]
        self.dropped += len(todo) - len(fresh)
        if not fresh:
            return None
        mean = weighted_mean(fresh)

        def work() -> int:
            self.state.apply_gradient(mean)
            mean.clear()
            return sum(c.samples for c in fresh)

        return work

    def advanced(self, now: float) -> None:
        return None

    def unapplied_offset(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for c in self.queue:
            out[c.partition] = min(out.get(c.partition, c.offset), c.offset)
        return out


class RingMode:
    def __init__(self, spec: JobSpec, state: ServerState, members: Membership) -> None:
        self.spec, self.state, self.members = spec, state, members
        self.deadline_s = spec.sync.straggler_deadline_ms / 1000
        self.latest: dict[str, Contribution] = {}
        self.fresh: dict[str, Contribution] = {}
        self.first_at: float | None = None
        self.dropped = 0
        self.waits_ms: list[float] = []

    def offer(self, c: Contribution) -> None:
        if c.worker in self.fresh:  # a newer message of a worker already in this round
            self.latest[c.worker] = c
            return
        self.latest[c.worker] = self.fresh[c.worker] = c
        self.first_at = c.received_at if self.first_at is None else self.first_at

    def next_deadline(self) -> float | None:
        return None if self.first_at is None else self.first_at + self.deadline_s

    def take(self, now: float) -> Work | None:
        if not self.fresh or self.first_at is None:
            return None
        expected = self.members.expected()
        if (expected - set(self.fresh)) and now - self.first_at < self.deadline_s:
            return None
        live = [c for w, c in self.latest.items() if w in expected or w in self.fresh]
        samples = sum(c.samples for c in self.fresh.values())
        self.waits_ms.append((now - self.first_at) * 1000)
        self.fresh, self.first_at = {}, None
        mean = weighted_mean([Contribution(c.worker, 0, c.tensors, 1, c.offset) for c in live])

        def work() -> int:
            self.state.set_params(mean)
            mean.clear()
            return samples

        return work

    def advanced(self, now: float) -> None:
        return None

    def unapplied_offset(self) -> dict[int, int]:
        return {}


Mode = RoundMode | AsyncMode | RingMode
