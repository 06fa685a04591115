"""Requests sent in one event-loop tick leave as one record batch per topic (aiokafka's batch API).

``AIOKafkaProducer.send`` costs a partitioner call, an accumulator lookup and a future per record;
the pipelined client sends bursts (a reply batch frees many slots at once), so it appends a burst's
records to one ``BatchBuilder`` per topic and hands each over with ``send_batch`` at the next loop
iteration. Every request is still its own Kafka record with its own key and headers; a burst goes to
one partition and the next burst to the next one (round-robin by burst instead of by record).

``add_entry`` goes one step further for the pipelined client: requests with the same topic and shared
headers are packed as entries of *request batch records* (``aiaas.streams.batchwire``), up to ``pack_max``
requests or ``pack_bytes`` per record, each record to the next partition. The broker then validates,
stores and serves one record per pack, and the worker fetches one. Each entry keeps its own request
id, encoding and deadline, and gets its own reply or error.
``add_row`` goes further still for requests that share a tensor layout too: they travel as one
*request block* (``aiaas.streams.blockwire``), one stacked tensor per input, which a worker checks once and
runs as rows of its batch.
``Slots`` is the counting semaphore of the client's flow control.
"""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
from aiokafka import AIOKafkaProducer

from aiaas.streams import batchwire, blockwire
from aiaas.streams import headers as h

Failed = Callable[[list[str], BaseException], None]
PackKey = tuple[str, int, tuple[tuple[str, bytes], ...]]  # topic, its partitions, shared record headers
RowKey = tuple["RowStream", tuple[Any, ...]]  # ... and the rows' tensor layout


class RowStream:
    """What the rows of one ``infer_many`` share: topic, its partitions, record headers, timeout (or
    an explicit ``deadline`` header). Hashed by identity: one per call, cheap as part of a key."""

    __slots__ = ("deadline", "partitions", "shared", "timeout_s", "topic")

    def __init__(self, topic: str, partitions: int, shared: tuple[tuple[str, bytes], ...],
                 timeout_s: float, deadline: str | None) -> None:
        self.topic, self.partitions, self.shared = topic, partitions, shared
        self.timeout_s, self.deadline = timeout_s, deadline


class _Open:
    __slots__ = ("builder", "partition", "rids")

    def __init__(self, builder: Any, partition: int) -> None:
        self.builder, self.partition = builder, partition
        self.rids: list[str] = []


class _Pack:
    __slots__ = ("bytes", "entries", "rids")

    def __init__(self) -> None:
        self.entries: list[tuple[dict[str, str], bytes]] = []
        self.rids: list[str] = []
        self.bytes = 0


class _Rows:
    __slots__ = ("deadline", "rids", "row_bytes", "rows")

    def __init__(self, deadline: str, row_bytes: int) -> None:
        self.deadline, self.row_bytes = deadline, row_bytes  # the first row's deadline: the earliest
        self.rows: list[dict[str, np.ndarray]] = []
        self.rids: list[str] = []


class TickBatches:
    def __init__(self, producer: AIOKafkaProducer, failed: Failed, *, pack_max: int = 32,
                 pack_bytes: int = 128 * 1024) -> None:
        self.producer = producer
        self.failed = failed  # called with the request ids of a batch that was not delivered
        self.pack_max, self.pack_bytes = pack_max, pack_bytes
        self._packs: dict[PackKey, _Pack] = {}
        self._blocks: dict[RowKey, _Rows] = {}
        self._open: dict[str, _Open] = {}
        self._full: list[tuple[str, _Open]] = []
        self._next = 0
        self._flushes: set[asyncio.Task[None]] = set()

    def add(self, topic: str, partitions: int, rid: str, key: bytes, value: bytes,
            headers: list[tuple[str, bytes]]) -> None:
        """Queue one record (sent at the next loop iteration with the rest of this tick's records)."""
        batch = self._open.get(topic) or self._start(topic, partitions)
        if batch.builder.append(timestamp=None, key=key, value=value, headers=headers) is None:
            self._full.append((topic, self._open.pop(topic)))  # full: it goes as it is
            batch = self._start(topic, partitions)
            if batch.builder.append(timestamp=None, key=key, value=value, headers=headers) is None:
                raise ValueError("request record larger than the producer's batch size")
        batch.rids.append(rid)

    def add_entry(self, topic: str, partitions: int, rid: str, shared: tuple[tuple[str, bytes], ...],
                  headers: dict[str, str], value: bytes) -> None:
        """Queue one request as an entry of a request batch record (``headers``: its own, with its
        correlation-id; ``shared``: the record headers every entry of the pack has in common)."""
        key = (topic, partitions, shared)
        pack = self._packs.get(key)
        if pack is None:
            self._schedule()
            pack = self._packs[key] = _Pack()
        pack.entries.append((headers, value))
        pack.rids.append(rid)
        pack.bytes += len(value) + 64
        if len(pack.rids) >= self.pack_max or pack.bytes >= self.pack_bytes:
            self._seal(key)

    def add_row(self, stream: RowStream, layout: tuple[Any, ...], rid: str,
                arrays: dict[str, np.ndarray]) -> None:
        """Queue one request as a row of a request block (``arrays``: ``blockwire.blockable``, of
        ``layout``: their names, dtypes and shapes). Rows of one stream and layout go together; the
        block's deadline is its first row's, the earliest."""
        key = (stream, layout)
        rows = self._blocks.get(key)
        if rows is None:
            self._schedule()
            rows = self._blocks[key] = _Rows(stream.deadline or str(h.deadline_ms(stream.timeout_s)),
                                             sum(a.nbytes for a in arrays.values()))
        rows.rows.append(arrays)
        rows.rids.append(rid)
        if len(rows.rids) >= self.pack_max or len(rows.rids) * rows.row_bytes >= self.pack_bytes:
            self._seal_rows(key)

    def _seal_rows(self, key: RowKey) -> None:
        """One request block record, alone in a record batch for the next partition."""
        rows = self._blocks.pop(key)
        stream = key[0]
        stacked = {n: np.stack([r[n] for r in rows.rows]) for n in rows.rows[0]}
        value, kind = blockwire.encode(blockwire.REQUESTS, {}, "inputs", rows.rids, stacked)
        self._append_sealed(stream.topic, stream.partitions, rows.rids, value,
                            [*stream.shared, (h.DEADLINE, rows.deadline.encode()), *kind])

    def _seal(self, key: PackKey) -> None:
        """One request batch record for a pack, alone in a record batch for the next partition."""
        pack = self._packs.pop(key)
        topic, partitions, shared = key
        value, kind = batchwire.pack(pack.entries, batchwire.REQUESTS)
        self._append_sealed(topic, partitions, pack.rids, value, [*shared, *kind])

    def _append_sealed(self, topic: str, partitions: int, rids: list[str], value: bytes,
                       headers: list[tuple[str, bytes]]) -> None:
        batch = self._fresh(partitions)
        if batch.builder.append(timestamp=None, key=rids[0].encode(), value=value, headers=headers) is None:
            self.failed(rids, ValueError("request record larger than the producer's batch size"))
            return
        batch.rids = rids
        self._full.append((topic, batch))

    async def drain(self) -> None:
        """Wait until everything queued so far is handed to the producer."""
        while self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)

    def _schedule(self) -> None:
        """Start a flush at the next loop iteration, unless one is already due."""
        if not self._open and not self._full and not self._packs and not self._blocks:
            task = asyncio.get_running_loop().create_task(self._flush())
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)

    def _start(self, topic: str, partitions: int) -> _Open:
        self._schedule()
        batch = self._open[topic] = self._fresh(partitions)
        return batch

    def _fresh(self, partitions: int) -> _Open:
        """An empty record batch for the next partition (round-robin)."""
        self._next += 1
        return _Open(self.producer.create_batch(), self._next % partitions)

    async def _flush(self) -> None:
        for key in list(self._packs):
            self._seal(key)
        for rkey in list(self._blocks):
            self._seal_rows(rkey)
        ready, self._full = [*self._full, *self._open.items()], []
        self._open = {}
        for topic, batch in ready:
            batch.builder.close()
            try:
                sent = await self.producer.send_batch(batch.builder, topic, partition=batch.partition)
            except Exception as exc:
                self.failed(batch.rids, exc)
                continue
            sent.add_done_callback(functools.partial(self._delivered, batch.rids))

    def _delivered(self, rids: list[str], sent: asyncio.Future[Any]) -> None:
        if not sent.cancelled() and sent.exception() is not None:
            exc = sent.exception()
            assert exc is not None
            self.failed(rids, exc)


class Slots:
    """A counting semaphore for flow control: asyncio.Semaphore scans its waiters on every acquire
    (3% of the client's CPU at two acquires per request); here a free slot costs a compare."""

    __slots__ = ("_free", "_waiters")

    def __init__(self, count: int) -> None:
        self._free = count
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # a slot was handed over as we were cancelled: pass it on
            raise

    def release(self) -> None:
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_result(None)  # the slot goes straight to the longest waiter
                return
        self._free += 1
