"""Offsets commit after the replies: each poll's records are marked done once every reply of the
poll is acknowledged (in poll order), and committed at most every ``interval_s`` — a commit per poll
cost the worker as much CPU as producing the poll's replies. A failed produce raises out of ``run``:
the worker stops without committing, and the group re-serves those requests. A commit the group
refuses because it is rebalancing is logged and left to the next one (``commit_quietly``): the
partitions that moved are re-served from their last commit, and a worker never dies of a rebalance."""

from __future__ import annotations

import asyncio
import time

from aiokafka.structs import RecordMetadata

from streams.consumer import Consumer
from streams.record import Record

Sent = asyncio.Future[RecordMetadata]


class Committer:
    def __init__(self, consumer: Consumer, interval_s: float) -> None:
        self.consumer = consumer
        self.interval_s = interval_s
        self._polls: asyncio.Queue[tuple[list[Record], list[Sent]]] = asyncio.Queue()

    def add(self, records: list[Record], sent: list[Sent]) -> None:
        """One poll's records and the acks of all its replies."""
        self._polls.put_nowait((records, sent))

    async def join(self) -> None:
        """Until every poll added so far is marked done (the caller commits after it)."""
        await self._polls.join()

    async def run(self) -> None:
        last, dirty = time.monotonic(), False
        while True:
            wait = max(0.0, last + self.interval_s - time.monotonic()) if dirty else None
            try:
                async with asyncio.timeout(wait):
                    records, sent = await self._polls.get()
            except TimeoutError:  # idle with done work: commit it now
                await self.consumer.commit_quietly()
                last, dirty = time.monotonic(), False
                continue
            try:
                if sent:
                    await asyncio.gather(*sent)
                self.consumer.mark_done(records)
                dirty = True
                if self._polls.empty() and time.monotonic() - last >= self.interval_s:
                    await self.consumer.commit_quietly()
                    last, dirty = time.monotonic(), False
            finally:
                self._polls.task_done()
