"""The replies of one poll: single reply records as they come, batched ones gathered per reply topic.

A request whose sender opted in (header ``reply-batch: 1``, see ``aiaas.streams.replywire``) has its reply
gathered with the other opted-in replies to the same topic; ``flush`` writes them as one batched
record (several when they pass ``limit_bytes``). One record per batch instead of one per request
saves a producer send on the worker and a consumer record on the client, per request. Every send's
ack future lands in ``sent``, beside the requests it answers in ``owners``: the poll's offsets
commit only after all of them, and a send the broker refuses (e.g. a reply over the reply topic's
record limit) fails only its own requests (``Replier.undelivered``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from aiokafka.structs import RecordMetadata

from aiaas.streams import headers as h
from aiaas.streams.record import Record
from aiaas.streams.replywire import pack_batch

Sent = asyncio.Future[RecordMetadata]
Send = Callable[[str, bytes, bytes | None, list[tuple[str, bytes]], int | None], Awaitable[Sent]]
ReplyHeaders = dict[str, str]
Owner = tuple[Record, Sequence[str]]  # a request record and the ids of it a record answers
Owners = Sequence[Owner]
Unsent = Callable[[Owners, Exception], Awaitable[None]]


class Outbox:
    def __init__(self, send: Send, limit_bytes: int, unsent: Unsent | None = None) -> None:
        """``unsent``: answers the requests of a batch that could not be sent (else it raises)."""
        self._send = send
        self._unsent = unsent
        self.limit_bytes = limit_bytes
        self.sent: list[Sent] = []
        self.owners: list[Owners] = []  # per ``sent`` future: the requests its record answers
        self._gathered: dict[str, tuple[int | None, list[tuple[ReplyHeaders, bytes]], list[Owner]]] = {}
        self._bytes: dict[str, int] = {}

    def track(self, fut: Sent, owners: Owners) -> None:
        """One sent record's ack future and the requests it answers."""
        self.sent.append(fut)
        self.owners.append(owners)

    def fits(self, value: bytes) -> bool:
        """Small enough to travel in a batch (a big reply goes alone, chunked if need be)."""
        return len(value) <= self.limit_bytes // 2

    async def add(self, topic: str, partition: int | None, headers: ReplyHeaders, value: bytes,
                  owner: Owner) -> None:
        """Gather one reply for ``topic`` (flushing that topic first when the batch would get too big)."""
        size = len(value) + 16 + 40 * len(headers) + sum(map(len, headers.values()))  # >= its JSON
        if self._bytes.get(topic, 0) + size > self.limit_bytes:
            await self._flush(topic)
        entry = self._gathered.get(topic)
        if entry is None:
            entry = self._gathered[topic] = (partition, [], [])
        entry[1].append((headers, value))
        entry[2].append(owner)
        self._bytes[topic] = self._bytes.get(topic, 0) + size

    async def flush(self) -> None:
        """Write every gathered batch (the end of a poll)."""
        for topic in list(self._gathered):
            await self._flush(topic)

    async def _flush(self, topic: str) -> None:
        gathered = self._gathered.pop(topic, None)
        self._bytes.pop(topic, None)
        if not gathered or not gathered[1]:
            return
        partition, replies, owners = gathered
        value, headers = pack_batch(replies)
        key = replies[0][0][h.CORRELATION_ID].encode()
        try:
            fut = await self._send(topic, value, key, headers, partition)
        except Exception as exc:
            if self._unsent is None:
                raise
            await self._unsent(owners, exc)
            return
        self.track(fut, owners)
