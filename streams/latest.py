"""The newest complete record under one key, per partition, chunked or not: what a parameter reader
needs from ``train.<job>.params`` (and each shard's copy of it).

A version larger than ``chunk_bytes`` arrives as chunks (``aiaas.streams.chunking``); they are put
back together here and only the newest complete payload of a poll is handed out, so a reader holds at
most one payload being assembled and one complete per partition. A newcomer starts ``backlog``
records before the end; when that window holds no complete record (a version's chunks, or a
checkpoint's, fill it) it looks four times further back, until the partition's beginning.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from aiaas.schemas.errors import ChunkError, InvalidMessage
from aiaas.streams import headers as h
from aiaas.streams.chunking import Reassembler, base_key

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(slots=True)
class Latest:
    """One complete payload: ``offset`` is its last record's (grows with every newer payload)."""

    tp: TopicPartition
    offset: int
    value: bytes | bytearray  # a chunked payload: the buffer it was put together in
    headers: h.Headers
    timestamp_ms: int
    timestamp_type: int


class LatestReader:
    """Polls ``tps`` (assigned to ``consumer`` here) for the newest complete ``key`` payload of each."""

    def __init__(self, consumer: AIOKafkaConsumer, tps: list[TopicPartition], key: bytes, *,
                 backlog: int = 64, max_bytes: int = 1 << 30) -> None:
        self.consumer, self.tps, self.key = consumer, tps, key
        self.backlog = backlog
        self._chunks = Reassembler(max_pending=4 * len(tps), max_bytes=max_bytes, timeout_s=600.0)
        self._end: dict[TopicPartition, int] = {}
        self._start: dict[TopicPartition, int] = {}
        self._found: set[TopicPartition] = set()

    async def start(self) -> None:
        self.consumer.assign(self.tps)
        ends = await self.consumer.end_offsets(self.tps)
        for tp in self.tps:
            self._end[tp] = ends[tp]
            self._seek(tp, max(0, ends[tp] - self.backlog))

    def _seek(self, tp: TopicPartition, offset: int) -> None:
        self._start[tp] = offset
        self._chunks.drop_partition(tp)
        self.consumer.seek(tp, offset)

    async def poll(self, timeout_ms: int) -> dict[TopicPartition, Latest]:
        """The newest payload completed by this poll, per partition (none: empty)."""
        batch = await self.consumer.getmany(*self.tps, timeout_ms=timeout_ms)
        out: dict[TopicPartition, Latest] = {}
        for tp, records in batch.items():
            for rec in records:
                got = self._add(tp, rec.offset, rec.key, rec.value, rec.headers)
                if got is not None:
                    out[tp] = Latest(tp, rec.offset, got, list(rec.headers or ()), rec.timestamp,
                                     rec.timestamp_type)
        self._found.update(out)
        for tp in self.tps:
            if tp not in self._found and self._start[tp] > 0 and tp not in batch \
                    and await self.consumer.position(tp) >= self._end[tp]:
                self._seek(tp, max(0, self._end[tp] - 4 * (self._end[tp] - self._start[tp])))
        return out

    async def decoded(self, decode: Callable[[Latest], T], timeout_ms: int) -> dict[TopicPartition, T]:
        """``poll``, each newest payload decoded; an undecodable one is logged and left out."""
        out: dict[TopicPartition, T] = {}
        for tp, newest in (await self.poll(timeout_ms)).items():
            try:
                out[tp] = decode(newest)
            except InvalidMessage as exc:
                log.warning("skipping an undecodable record %s[%d]@%d: %s", tp.topic, tp.partition,
                            newest.offset, exc.reason)
        return out

    def _add(self, tp: TopicPartition, offset: int, key: bytes | None, value: bytes | None,
             headers: h.Headers | None) -> bytes | bytearray | None:
        if value is None or base_key(key) != self.key:
            return None
        try:
            done = self._chunks.add_into(tp, offset, h.decode(headers or []), value)
        except ChunkError as exc:  # a window that starts mid-payload, or a broken one: skipped
            log.debug("skipping a chunk of %s[%d]@%d: %s", tp.topic, tp.partition, offset, exc.reason)
            return None
        return None if done is None else done[0]
