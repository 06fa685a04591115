"""The replies of one poll: single OIP reply records as they come, frame entries gathered per reply
topic and written by ``flush`` as one reply frame (several past ``limit_bytes``): one record per poll
and topic instead of one per request. Every send's ack future lands in ``sent``, beside the requests
it answers (``owners``): the poll commits only after all of them, and a send the broker refuses
fails only its own requests (``Replier.undelivered``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from aiokafka.structs import RecordMetadata

from aiaas.streams import frame
from aiaas.streams import headers as h
from aiaas.streams.record import Record

Sent = asyncio.Future[RecordMetadata]
Send = Callable[[str, bytes, bytes | None, list[tuple[str, bytes]], int | None], Awaitable[Sent]]
Owner = tuple[Record, Sequence[str]]  # a request record and the ids of it a record answers
Owners = Sequence[Owner]
Unsent = Callable[[Owners, Exception], Awaitable[None]]
_Gathered = tuple[int | None, list[frame.Entry], list[Owner]]
_Where = tuple[str, str | None]  # reply topic, and the data key of the requests (docs/security.md)


class Outbox:
    def __init__(self, send: Send, limit_bytes: int, unsent: Unsent | None = None) -> None:
        """``unsent``: answers the requests of a frame that could not be sent (else it raises)."""
        self._send = send
        self._unsent = unsent
        self.limit_bytes = limit_bytes
        self.sent: list[Sent] = []
        self.owners: list[Owners] = []  # per ``sent`` future: the requests its record answers
        self._gathered: dict[_Where, _Gathered] = {}
        self._bytes: dict[_Where, int] = {}

    def track(self, fut: Sent, owners: Owners) -> None:
        """One sent record's ack future and the requests it answers."""
        self.sent.append(fut)
        self.owners.append(owners)

    async def add(self, topic: str, partition: int | None, entry: frame.Entry, owner: Owner) -> None:
        """Gather one reply entry for ``topic`` (flushing that topic first when the frame would get
        too big; an entry over half the limit goes alone, chunked if need be). Replies to requests
        sealed under different data keys go in different frames, each sealed under its key."""
        size = entry.nbytes + 64 + 40 * len(entry.ids) + 64 * len(entry.tensors)  # >= its head share
        where = (topic, owner[0].headers.get(h.DATA_KEY))
        if size > self.limit_bytes // 2:
            await self._write(where, (partition, [entry], [owner]))
            return
        if self._bytes.get(where, 0) + size > self.limit_bytes:
            await self.flush(where)
        gathered = self._gathered.setdefault(where, (partition, [], []))
        gathered[1].append(entry)
        gathered[2].append(owner)
        self._bytes[where] = self._bytes.get(where, 0) + size

    async def flush(self, where: _Where | None = None) -> None:
        """Write the frame gathered for ``where``, or every gathered frame (the end of a poll)."""
        for w in list(self._gathered) if where is None else [where]:
            gathered = self._gathered.pop(w, None)
            self._bytes.pop(w, None)
            if gathered is not None:
                await self._write(w, gathered)

    async def _write(self, where: _Where, gathered: _Gathered) -> None:
        (topic, data_key), (partition, entries, owners) = where, gathered
        try:
            value, headers = frame.encode(entries)
            if data_key is not None:  # the sender seals the value under it
                headers = [*headers, *h.sealed(data_key, [i for e in entries for i in e.ids])]
            fut = await self._send(topic, value, entries[0].id.encode(), headers, partition)
        except Exception as exc:
            if self._unsent is None:
                raise
            await self._unsent(owners, exc)
            return
        self.track(fut, owners)
