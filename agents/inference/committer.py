"""Offsets commit after the replies: each poll's records are marked done once every reply of the
poll is acknowledged (in poll order), and committed at most every ``interval_s`` — a commit per poll
cost the worker as much CPU as producing the poll's replies. A reply record the broker refuses
fails only the requests it answers (``undelivered``: error reply and dead letter), and the poll
commits; only when that fails too (the dead letters cannot be written: the broker is gone) does
``run`` raise, and the worker stops without committing, so the group re-serves those requests
(a poison pill no longer stops every worker that reads it). A commit the group
refuses because it is rebalancing is logged and left to the next one (``commit_quietly``): the
partitions that moved are re-served from their last commit, and a worker never dies of a rebalance."""

from __future__ import annotations

import asyncio
import time

from aiaas.agents.inference.outbox import Outbox, Owners, Sent, Unsent
from aiaas.streams.consumer import Consumer
from aiaas.streams.record import Record


class Committer:
    def __init__(self, consumer: Consumer, interval_s: float, undelivered: Unsent) -> None:
        self.consumer = consumer
        self.interval_s = interval_s
        self.undelivered = undelivered
        self._polls: asyncio.Queue[tuple[list[Record], list[Sent], list[Owners]]] = asyncio.Queue()

    def add(self, records: list[Record], sent: Outbox) -> None:
        """One poll's records and the acks of all its replies."""
        self._polls.put_nowait((records, sent.sent, sent.owners))

    async def join(self) -> None:
        """Until every poll added so far is marked done (the caller commits after it)."""
        await self._polls.join()

    async def run(self) -> None:
        last, dirty = time.monotonic(), False
        while True:
            wait = max(0.0, last + self.interval_s - time.monotonic()) if dirty else None
            try:
                async with asyncio.timeout(wait):
                    records, sent, owners = await self._polls.get()
            except TimeoutError:  # idle with done work: commit it now
                await self.consumer.commit_quietly()
                last, dirty = time.monotonic(), False
                continue
            try:
                if sent:
                    try:
                        await asyncio.gather(*sent)
                    except Exception:
                        await self._settle(sent, owners)
                self.consumer.mark_done(records)
                dirty = True
                if self._polls.empty() and time.monotonic() - last >= self.interval_s:
                    await self.consumer.commit_quietly()
                    last, dirty = time.monotonic(), False
            finally:
                self._polls.task_done()

    async def _settle(self, sent: list[Sent], owners: list[Owners]) -> None:
        """Some replies of a poll were refused: answer their requests with an error (and dead-letter
        them) once every send of the poll is settled."""
        await asyncio.wait(sent)
        for fut, whose in zip(sent, owners, strict=True):
            exc = fut.exception()
            if exc is not None:
                await self.undelivered(whose, exc if isinstance(exc, Exception) else RuntimeError(repr(exc)))
