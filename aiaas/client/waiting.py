"""The client's requests awaiting replies: a future (or a callback) per request id, matched,
deduplicated, timed out.

A reply (an entry, or a row of an entry, of a reply frame; or a single OIP reply record) resolves
the waiter of its ``correlation-id``; a reply for an id no longer waited for (a duplicate after a worker
restart, or a late reply after a timeout) is dropped and counted in ``duplicates``. A reply over
the record limit comes in chunks (``aiaas.streams.chunking``) and is put back together first (a chunk
that does not fit fails its request). ``Slots`` bounds how many requests wait at once (the
client's backpressure).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaConsumer

from aiaas.client.slots import Slots
from aiaas.schemas.errors import AiaasError, ChunkError, EnvelopeError, ErrorCode, InferenceError
from aiaas.streams import headers as h
from aiaas.streams.chunking import Reassembler
from aiaas.streams.envelope import Sealer
from aiaas.streams.frame import is_frame
from aiaas.streams.replywire import Reply, replies_of

log = logging.getLogger(__name__)
Sink = Callable[[Reply | BaseException], None]


def _deliver(waiter: asyncio.Future[Reply] | Sink, outcome: Reply | BaseException) -> None:
    if not isinstance(waiter, asyncio.Future):
        waiter(outcome)
    elif waiter.done():  # a caller may have cancelled it
        return
    elif isinstance(outcome, BaseException):
        waiter.set_exception(outcome)
    else:
        waiter.set_result(outcome)


class Waiting:
    def __init__(self, max_in_flight: int) -> None:
        self.slots = Slots(max_in_flight)
        self.duplicates = 0
        self.malformed = 0  # reply records that could not be read (logged, dropped)
        self._by_id: dict[str, tuple[asyncio.Future[Reply] | Sink, float]] = {}  # id -> (waiter, deadline)
        self._chunks = Reassembler()
        self._pending = asyncio.Event()  # set while anything waits: an idle client sweeps nothing
        self.sealer: Sealer | None = None  # opens replies sealed under a data key (docs/security.md)

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, rid: str) -> bool:
        return rid in self._by_id

    async def add(self, rid: str, timeout_s: float) -> asyncio.Future[Reply]:
        """A future for the reply to ``rid`` (waits for a free slot first)."""
        await self.slots.acquire()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Reply] = loop.create_future()
        self._by_id[rid] = (fut, loop.time() + timeout_s)
        self._pending.set()
        return fut

    def put(self, rid: str, deadline: float, sink: Sink) -> None:
        """Wait for ``rid`` with a callback instead of a future (the pipelined client's rows: no
        future, no done-callback, no loop hop per request). The caller holds a slot already, and
        ``deadline`` is on the loop's clock. ``sink`` gets the Reply or the exception, at once."""
        self._by_id[rid] = (sink, deadline)
        self._pending.set()

    def fail(self, rid: str, exc: BaseException) -> None:
        entry = self._by_id.pop(rid, None)
        if entry is not None:
            self.slots.release()
            _deliver(entry[0], exc)

    def fail_all(self, rids: Sequence[str], exc: BaseException) -> None:
        for rid in list(rids):
            self.fail(rid, exc)

    def ids(self) -> list[str]:
        return list(self._by_id)

    def resolve(self, reply: Reply) -> None:
        entry = self._by_id.pop(reply.request_id, None)
        if entry is None:
            self.duplicates += 1
            return
        self.slots.release()
        _deliver(entry[0], reply)

    async def expire_forever(self, every_s: float = 0.05) -> None:
        """Fail requests whose time is up (one sweep for all, not a timer per request)."""
        loop = asyncio.get_running_loop()
        while True:
            if not self._by_id:  # idle: no wake-ups until a request waits (cost at rest)
                self._pending.clear()
                await self._pending.wait()
            await asyncio.sleep(every_s)
            now = loop.time()
            for rid in [r for r, (_, deadline) in self._by_id.items() if deadline <= now]:
                self.fail(rid, InferenceError("no reply in time", code=ErrorCode.TIMEOUT, request_id=rid))

    async def read_forever(self, consumer: AIOKafkaConsumer, topic: str) -> None:
        """Resolve replies as they arrive on ``topic`` (reply frames, single OIP reply records)."""
        while True:
            # a record ends the wait at once: the timeout only bounds an empty poll (1 s: few idle wake-ups)
            batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for records in batches.values():
                for rec in records:
                    values = h.decode(rec.headers)
                    value = rec.value
                    if h.CHUNK_ID in values and (value := self._reassembled(rec.partition, rec.offset, values,
                                                                           value, topic)) is None:
                        continue
                    if h.DATA_KEY in values and (value := self._opened(value, values, topic)) is None:
                        continue
                    if is_frame(values):
                        self._resolve_frame(value, values, topic)
                        continue
                    rid = values.get(h.CORRELATION_ID) or (rec.key or b"").decode("utf-8", "replace")
                    self.resolve(Reply(rid, value or b"", values))
            if batches:
                self._chunks.expire()

    def _reassembled(self, partition: int, offset: int, values: dict[str, str], value: bytes | None,
                     topic: str) -> bytes | None:
        """The whole reply once its last chunk is in (its chunk headers dropped from ``values``)."""
        try:
            done = self._chunks.add(partition, offset, values, value or b"")
        except ChunkError as exc:
            self._dropped("a broken chunked reply", topic, exc, values)
            return None
        return None if done is None else done[0]

    def _opened(self, value: bytes | None, values: dict[str, str], topic: str) -> bytes | None:
        """A sealed reply's clear value; None (logged, its request failed when it names one) when
        it does not open here."""
        try:
            if self.sealer is None:
                raise EnvelopeError("sealed reply but this client has no data keys",
                                    data_key=values[h.DATA_KEY])
            return self.sealer.open(value, values[h.DATA_KEY])
        except EnvelopeError as exc:
            self._dropped("a reply", topic, exc, values)
            return None

    def _dropped(self, what: str, topic: str, exc: AiaasError,
                 values: dict[str, str]) -> None:
        """Count and log a reply that cannot be read; fail its request when it names one."""
        self.malformed += 1
        log.warning("dropped %s on %s: %s %s", what, topic, exc.reason, exc.details)
        rid = values.get(h.CORRELATION_ID)
        if rid is not None:
            self.fail(rid, InferenceError(exc.reason, code=exc.code, request_id=rid, **exc.details))

    def _resolve_frame(self, value: bytes | None, headers: dict[str, str], topic: str) -> None:
        try:
            replies = replies_of(value, headers)
        except AiaasError as exc:
            self.malformed += 1
            log.warning("dropped a malformed reply frame on %s: %s", topic, exc)
            return
        for reply in replies:
            self.resolve(reply)
