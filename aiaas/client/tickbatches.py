"""Requests sent in one event-loop tick leave as one record batch per topic (aiokafka's batch API),
their requests packed as entries of frames (``aiaas.streams.frame``).

``AIOKafkaProducer.send`` costs a partitioner call, an accumulator lookup and a future per record,
and Kafka's costs are per record, so the requests of a tick that share a topic and record headers
go as entries of one frame, up to ``pack_max`` requests or ``pack_bytes`` per frame, each frame to
the next partition (round-robin by frame). Requests of numeric arrays of one layout are stacked as
the rows of one entry: what the worker computes anyway, checked once. Each request keeps its own id
and deadline, and gets its own reply or error.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from aiokafka import AIOKafkaProducer

from aiaas.streams import frame
from aiaas.streams import headers as h

Failed = Callable[[list[str], BaseException], None]
Seal = Callable[[bytes, list[tuple[str, bytes]], list[str]], tuple[bytes, list[tuple[str, bytes]]]]
Shared = tuple[tuple[str, bytes], ...]  # the record headers a frame's entries have in common
Layout = tuple[tuple[str, Any, tuple[int, ...]], ...]
RowsKey = tuple[Layout, float, str | None]  # the rows' layout, timeout and explicit deadline
# an entry to be: its ids, their tensors (one mapping per id: rows to stack), its headers and fields
_Rows = tuple[list[str], list[dict[str, np.ndarray]], dict[str, str], dict[str, Any]]


class Stream:
    """Where a frame goes and the record headers its requests share: topic, its partitions, headers.
    Hashed by identity (the client keeps one per topic and headers): cheap as a key per request."""

    __slots__ = ("partitions", "shared", "topic")

    def __init__(self, topic: str, partitions: int, shared: Shared) -> None:
        self.topic, self.partitions, self.shared = topic, partitions, shared


def layout_of(arrays: Mapping[str, Any], rows: bool = True) -> Layout | None:
    """The layout (names, dtypes, shapes) of a request that can travel as a row (fixed-size numeric
    native arrays; ``rows``: the caller allows it), else None once every array is known to have an
    OIP datatype (raises InvalidMessage: the request fails now, not the frame later)."""
    out = []
    for name, a in arrays.items():
        if not rows or type(a) is not np.ndarray or a.dtype not in frame.BY_DTYPE or a.dtype.kind == "b" \
                or a.dtype.byteorder not in "=<|":
            for x in arrays.values():
                frame.datatype_of(x)
            return None
        out.append((name, a.dtype, a.shape))
    return tuple(out) if out else None


class _Pack:
    __slots__ = ("bytes", "entries", "rids")

    def __init__(self) -> None:
        self.entries: dict[RowsKey | int, _Rows] = {}
        self.rids: list[str] = []
        self.bytes = 0


class TickBatches:
    def __init__(self, producer: AIOKafkaProducer, failed: Failed, *, pack_max: int = 32,
                 pack_bytes: int = 128 * 1024, seal: Seal | None = None, linger_s: float = 0.0,
                 in_flight: Callable[[], int] = lambda: 0) -> None:
        self.producer = producer
        self.failed = failed  # called with the request ids of a batch that was not delivered
        self.seal = seal  # (value, headers, ids) -> sealed under a tenant data key (docs/security.md)
        self.pack_max, self.pack_bytes = pack_max, pack_bytes
        # > 0: a flush waits this long for more requests while others are in flight (their replies
        # bring the next ones: the HTTP bridge's callers); a lone request goes at once
        self.linger_s, self.in_flight = linger_s, in_flight
        self._packs: dict[Stream, _Pack] = {}
        self._full: list[tuple[str, Any, int, list[str]]] = []  # topic, batch, partition, request ids
        self._next = 0
        self._flushes: set[asyncio.Task[None]] = set()

    def add_request(self, stream: Stream, rid: str, tensors: dict[str, np.ndarray], timeout_s: float,
                    deadline: str | None = None, fields: dict[str, Any] | None = None,
                    layout: Layout | None = None, own: dict[str, str] | None = None) -> None:
        """Queue one request as an entry of this tick's frame for ``stream`` (``layout``: its
        tensors' ``layout_of``, to travel as a row of an entry with the others of that layout and
        timeout; the entry's deadline is its first row's, the earliest; ``own``: headers of its own,
        e.g. its ``traceparent``, for a request that travels as an entry of its own)."""
        pack = self._packs.get(stream)
        if pack is None:
            self._schedule()
            pack = self._packs[stream] = _Pack()
        size = 0
        for a in tensors.values():
            size += a.nbytes
        key: RowsKey | int = len(pack.rids)  # an entry of its own
        if layout is not None and size <= self.pack_bytes // 2:
            key = (layout, timeout_s, deadline)
        rows = pack.entries.get(key)
        if rows is None:
            hd = {h.DEADLINE: deadline or str(h.deadline_ms(timeout_s)), **(own or {})}
            rows = pack.entries[key] = ([], [], hd, fields or {})
        rows[0].append(rid)
        rows[1].append(tensors)
        pack.rids.append(rid)
        pack.bytes += size + 64
        if len(pack.rids) >= self.pack_max or pack.bytes >= self.pack_bytes:
            self._seal(stream)

    def _seal(self, stream: Stream) -> None:
        """One frame for a pack, alone in a record batch for the next partition."""
        pack = self._packs.pop(stream)
        entries = []
        for rids, rows, hd, fields in pack.entries.values():
            if len(rids) == 1:
                entries.append(frame.Entry(rids, rows[0], hd, fields))
            else:
                stacked = {n: np.stack([r[n] for r in rows]) for n in rows[0]}
                entries.append(frame.Entry(rids, stacked, hd, rows=True))
        try:
            value, kind = frame.encode(entries)
            headers = [*stream.shared, *kind]
            if self.seal is not None:
                value, headers = self.seal(value, headers, pack.rids)
        except Exception as exc:  # e.g. an array of no OIP datatype: those requests fail, not the tick
            self.failed(pack.rids, exc)
            return
        self._next += 1  # each frame in a record batch of its own, for the next partition (round-robin)
        batch = self.producer.create_batch()
        if batch.append(timestamp=None, key=pack.rids[0].encode(), value=value, headers=headers) is None:
            self.failed(pack.rids, ValueError("request record larger than the producer's batch size"))
            return
        self._full.append((stream.topic, batch, self._next % stream.partitions, pack.rids))

    async def drain(self) -> None:
        """Wait until everything queued so far is handed to the producer."""
        while self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)

    def _schedule(self) -> None:
        """Start a flush at the next loop iteration, unless one is already due."""
        if not self._full and not self._packs:
            task = asyncio.get_running_loop().create_task(self._flush())
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)

    async def _flush(self) -> None:
        if self.linger_s > 0 and self.in_flight() > sum(len(p.rids) for p in self._packs.values()):
            await asyncio.sleep(self.linger_s)
        for stream in list(self._packs):
            self._seal(stream)
        ready, self._full = self._full, []
        for topic, batch, partition, rids in ready:
            batch.close()
            try:
                sent = await self.producer.send_batch(batch, topic, partition=partition)
            except Exception as exc:
                self.failed(rids, exc)
                continue
            sent.add_done_callback(functools.partial(self.delivered, rids))

    def delivered(self, rids: list[str], sent: asyncio.Future[Any]) -> None:
        """A sent record's ack: its requests fail when the broker refused it."""
        exc = None if sent.cancelled() else sent.exception()
        if exc is not None:
            self.failed(rids, exc)
