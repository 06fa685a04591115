"""Who is training right now: workers heard from recently, checked against the consumer group.

A sync round waits for every *expected* worker: one that sent recently, is not marked late and
(when the group view is known) is still a member of the trainers' consumer group. A worker that
misses a round's straggler deadline is marked late and not waited for again until it is heard from,
so a trainer that dies costs one deadline, never a stall; leaving the group drops it at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable


class Membership:
    def __init__(self, forget_after_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.forget_after_s = forget_after_s
        self.clock = clock
        self.last_seen: dict[str, float] = {}
        self.late: set[str] = set()
        self.group: set[str] | None = None

    def seen(self, worker: str) -> None:
        """A valid message from ``worker`` arrived: it is alive and on time again."""
        self.last_seen[worker] = self.clock()
        self.late.discard(worker)

    def mark_late(self, workers: Iterable[str]) -> None:
        self.late.update(workers)

    def set_group(self, members: set[str] | None, asked_at: float) -> None:
        """The consumer group's members (client ids) as of ``asked_at`` (None when unknown); a
        worker heard from after the question was asked is kept (it may have joined since)."""
        self.group = members
        if members is not None:
            for gone in [w for w, t in self.last_seen.items() if w not in members and t < asked_at]:
                self.forget(gone)

    def forget(self, worker: str) -> None:
        self.last_seen.pop(worker, None)
        self.late.discard(worker)

    def _expire(self) -> None:
        now = self.clock()
        for w in [w for w, t in self.last_seen.items() if now - t > self.forget_after_s]:
            self.forget(w)

    def live(self) -> set[str]:
        """Workers heard from recently (late or not)."""
        self._expire()
        return set(self.last_seen)

    def expected(self) -> set[str]:
        """Workers a round should wait for."""
        return self.live() - self.late
