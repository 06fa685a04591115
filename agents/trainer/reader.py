"""A consumer drained by one background task: what the parameter follower and the ring inbox share.

Both read without a group (they assign partitions themselves) and read_uncommitted, so an open
checkpoint transaction on the same topic never holds a record back; a short fetch wait keeps a new
record's latency low.
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer

from aiaas.streams.lifecycle import Service
from aiaas.streams.readers import open_assigned, stop_reader
from aiaas.streams.settings import Settings

FETCH_MAX_WAIT_MS = 20


class BackgroundReader(Service):
    """Subclasses implement ``_read`` (the task's loop) and call ``_open`` then ``_spawn`` in ``start``."""

    def __init__(self, settings: Settings, task_name: str) -> None:
        self.settings = settings
        self.task_name = task_name
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def _open(self) -> AIOKafkaConsumer:
        self._consumer = await open_assigned(self.settings, isolation_level="read_uncommitted",
                                             fetch_max_wait_ms=FETCH_MAX_WAIT_MS)
        return self._consumer

    def _spawn(self) -> None:
        self._task = asyncio.create_task(self._read(), name=self.task_name)

    async def _read(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        await stop_reader(self._task, self._consumer)
