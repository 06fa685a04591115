"""Ring mode's mailbox: parameters from the neighbour land on the inbox partitions this trainer owns.

Trainer owning data partitions S sends its parameters to ring partition ``(max(S) + 1) % P`` and
reads ring partitions S (the same numbers as its data partitions, so a rebalance moves the inbox
with the data). A reader newly given a partition starts at its end: old rounds are of no use.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

import numpy as np
from aiokafka.structs import TopicPartition

from aiaas.schemas.errors import InvalidMessage
from aiaas.schemas.training import GradientMessage
from aiaas.streams import codecs
from aiaas.streams.settings import Settings

from .reader import BackgroundReader

log = logging.getLogger(__name__)


def ring_target(owned: Iterable[int], partitions: int) -> int | None:
    """Where to send: the partition after the highest owned one; None when it is ours (alone)."""
    mine = set(owned)
    if not mine:
        return None
    target = (max(mine) + 1) % partitions
    return None if target in mine else target


class RingInbox(BackgroundReader):
    """Keeps the newest unread parameter message from another trainer."""

    def __init__(self, settings: Settings, topic: str, worker_id: str) -> None:
        super().__init__(settings, "ring-inbox")
        self.topic = topic
        self.worker_id = worker_id
        self._newest: tuple[GradientMessage, dict[str, np.ndarray]] | None = None
        self._arrived = asyncio.Event()
        self._owned: set[int] = set()

    async def start(self) -> None:
        await self._open()
        self._spawn()

    async def own(self, partitions: Iterable[int]) -> None:
        """Follow these inbox partitions from their end (a re-assignment resets positions anyway)."""
        assert self._consumer is not None
        wanted = set(partitions)
        if wanted == self._owned:
            return
        tps = [TopicPartition(self.topic, p) for p in sorted(wanted)]
        self._consumer.assign(tps)
        if tps:
            await self._consumer.seek_to_end(*tps)
        self._owned = wanted

    async def _read(self) -> None:
        assert self._consumer is not None
        while True:
            if not self._owned:
                await asyncio.sleep(0.05)
                continue
            batch = await self._consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for rec in records:
                    self._take(rec.key, rec.value)

    def _take(self, key: bytes | None, value: bytes | None) -> None:
        if key is not None and key.decode(errors="replace") == self.worker_id:
            return
        try:
            header, tensors = codecs.unpack(value, GradientMessage)
        except InvalidMessage as exc:
            log.warning("skipping undecodable ring message: %s", exc.reason)
            return
        if header.worker_id == self.worker_id or header.payload != "params":  # e.g. a ready signal
            return
        self._newest = (header, tensors)
        self._arrived.set()

    async def receive(self, timeout_s: float) -> tuple[GradientMessage, dict[str, np.ndarray]] | None:
        """The newest unread message, waiting up to ``timeout_s`` (0: only look)."""
        if self._newest is None and timeout_s > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await self._arrived.wait()
        got, self._newest = self._newest, None
        self._arrived.clear()
        return got
