"""Read a user's topic as decoded numpy rows, per source partition, within a resolved offset range.

Trainers and the aggregator of a job that trains from a declared source (README, "Train from your
topic") each read the topic with one of these; what they keep is decided per row by
``aiaas.data.streamsplit``. The decoder is compiled once by the caller (``aiaas.sources``) and passed
in: this module only needs its ``decode(values)``. Records the decoder refuses are counted and logged
with the field and the reason, and handed to the reader's ``refused`` callback when it has one (the
aggregator dead-letters them: ``agents/aggregator/source.py``); the read goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import numpy as np
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import OffsetAndMetadata, TopicPartition

from aiaas.schemas.errors import AiaasError, Unavailable
from aiaas.schemas.jobs import JobSpec
from aiaas.schemas.sources import Source
from aiaas.streams.admin import Admin
from aiaas.streams.dlq import refused_field
from aiaas.streams.lifecycle import stop_consumer
from aiaas.streams.record import Record, plain_record
from aiaas.streams.retry import started
from aiaas.streams.settings import Settings

from .datainfo import JobData
from .streamsplit import key_hashes

log = logging.getLogger(__name__)
UNBOUNDED = -1
MAX_RECORDS = 2000


class DecodedRows(Protocol):
    x: np.ndarray
    ok: np.ndarray
    y: np.ndarray | None
    rejected: Sequence[Any]
    schema_ids: set[int]


class Decoding(Protocol):
    def decode(self, values: Sequence[bytes]) -> Any: ...


Ranges = dict[int, tuple[int, int]]  # source partition -> [first offset, end offset); end -1: unbounded
Refused = Callable[[list[tuple[Record, AiaasError]]], Awaitable[None]]  # a poll's refused records


@dataclass
class Rows:
    """The decoded records of one poll of one source partition."""

    partition: int
    offsets: np.ndarray  # int64, of the decoded records
    hashes: np.ndarray  # uint64 key hashes of the decoded records
    x: np.ndarray
    y: np.ndarray | None
    read: int  # records consumed (decoded or refused)
    next_offset: int
    schema_ids: set[int] = field(default_factory=set)


async def _consumer(settings: Settings, group: str | None) -> AIOKafkaConsumer:
    kw = settings.consumer_kwargs(group, isolation_level="read_committed", fetch_max_wait_ms=50)
    return await started(lambda: AIOKafkaConsumer(**kw), settings, "opening a reader of a source topic")


async def _partitions(settings: Settings, topic: str, wait_s: float) -> list[int]:
    async with asyncio.timeout(wait_s), Admin(settings) as admin:
        while True:
            with contextlib.suppress(AiaasError):  # not there yet: an unknown topic's error
                n = await admin.partitions(topic)
                if n:
                    return list(range(n))
            await asyncio.sleep(0.5)  # the user's topic does not exist yet: poll its metadata


async def _at(consumer: AIOKafkaConsumer, tps: list[TopicPartition], when: datetime | str,
              ends: dict[TopicPartition, int]) -> dict[TopicPartition, int]:
    if when == "earliest":
        return dict(await consumer.beginning_offsets(tps))
    if when == "latest":
        return dict(ends)
    assert isinstance(when, datetime)
    found = await consumer.offsets_for_times({tp: int(when.timestamp() * 1000) for tp in tps})
    return {tp: (found[tp].offset if found.get(tp) is not None else ends[tp]) for tp in tps}


async def resolve_ranges(settings: Settings, source: Source, *, bounded: bool,
                         wait_s: float = 120.0) -> Ranges:
    """The offsets to read per partition: from ``source.start`` to ``source.end`` (offsets or a time),
    or, for a bounded job with no ``end``, to the end offsets now; unbounded otherwise."""
    consumer = await _consumer(settings, None)
    try:
        try:
            parts = await _partitions(settings, source.topic, wait_s)
        except TimeoutError as exc:
            raise Unavailable("the source topic does not exist", topic=source.topic) from exc
        tps = [TopicPartition(source.topic, p) for p in parts]
        ends = dict(await consumer.end_offsets(tps))
        lo = await _at(consumer, tps, source.start, ends)
        end = source.end
        if isinstance(end, dict):
            hi = {tp: int(end.get(tp.partition, lo[tp])) for tp in tps}
        elif isinstance(end, datetime):
            hi = await _at(consumer, tps, end, ends)
        else:
            hi = ends if bounded else {tp: UNBOUNDED for tp in tps}
        return {tp.partition: (lo[tp], hi[tp]) for tp in tps}
    finally:
        await stop_consumer(consumer)


class SourceReader:
    """Decoded rows of ``source`` from ``positions`` (default: each range's start) to each range's
    end; ``async for rows in reader.batches()`` ends when every bounded partition is read."""

    def __init__(self, settings: Settings, source: Source, decoder: Decoding, ranges: Ranges, *,
                 positions: dict[int, int] | None = None, group: str | None = None,
                 refused: Refused | None = None, classes: int | None = None) -> None:
        self.settings, self.source, self.decoder = settings, source, decoder
        self.refused = refused
        self.classes = classes  # with refused: a label that is not a class index below it is refused too
        self._refusals: list[tuple[Record, AiaasError]] = []
        self.ranges = ranges
        self.positions = {p: max(lo, (positions or {}).get(p, lo)) for p, (lo, _) in ranges.items()}
        self.group = group  # commit read positions there (``commit``)
        self.rejected = 0
        self.read = 0
        self.schema_ids: set[int] = set()
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        self._consumer = await _consumer(self.settings, self.group)
        tps = [TopicPartition(self.source.topic, p) for p in self.ranges]
        self._consumer.assign(tps)
        for tp in tps:
            self._consumer.seek(tp, self.positions[tp.partition])

    async def stop(self) -> None:
        if self._consumer is not None:
            await stop_consumer(self._consumer)
            self._consumer = None

    async def end_offsets(self) -> dict[int, int]:
        assert self._consumer is not None
        tps = [TopicPartition(self.source.topic, p) for p in self.ranges]
        return {tp.partition: int(o) for tp, o in (await self._consumer.end_offsets(tps)).items()}

    def seek(self, positions: dict[int, int]) -> None:
        """Move the read positions (kept within each range's start)."""
        assert self._consumer is not None
        for p, off in positions.items():
            lo = self.ranges[p][0]
            self.positions[p] = max(lo, off)
            self._consumer.seek(TopicPartition(self.source.topic, p), self.positions[p])

    def done(self) -> bool:
        return all(hi != UNBOUNDED and self.positions[p] >= hi for p, (_, hi) in self.ranges.items())

    async def committed(self) -> dict[int, int]:
        """Positions committed to ``group`` earlier (partitions without one are left out)."""
        assert self._consumer is not None
        out = {}
        for p in self.ranges:
            off = await self._consumer.committed(TopicPartition(self.source.topic, p))
            if off is not None:
                out[p] = int(off)
        return out

    async def commit(self) -> None:
        """Commit the read positions to ``group`` (after the caller filed the rows)."""
        assert self._consumer is not None and self.group is not None
        await self._consumer.commit({TopicPartition(self.source.topic, p): OffsetAndMetadata(o, "")
                                     for p, o in self.positions.items()})

    async def batches(self, timeout_ms: int = 200) -> AsyncIterator[list[Rows]]:
        """Every poll's decoded rows (an empty list when nothing arrived within ``timeout_ms``)."""
        assert self._consumer is not None
        while not self.done():
            got = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=MAX_RECORDS)
            out = []
            for tp, recs in got.items():
                _, hi = self.ranges[tp.partition]
                if hi != UNBOUNDED:
                    recs = [r for r in recs if r.offset < hi]
                if recs:
                    out.append(self._decode(tp.partition, recs))
                if hi != UNBOUNDED and self.positions[tp.partition] >= hi:
                    self._consumer.pause(tp)
            if self._refusals and self.refused is not None:
                await self.refused(self._refusals)
            self._refusals = []
            yield out

    def _decode(self, partition: int, recs: list[Any]) -> Rows:
        decoded = self.decoder.decode([r.value or b"" for r in recs])
        for rej in decoded.rejected:
            rec = recs[rej.index]
            log.warning("source %s[%d]@%d refused: field %r %s", self.source.topic, partition,
                        rec.offset, rej.field, rej.reason)
            if self.refused is not None:
                self._refusals.append((plain_record(rec), refused_field(rej.field, rej.reason)))
        self.rejected += len(decoded.rejected)
        self.read += len(recs)
        self.schema_ids |= decoded.schema_ids
        ok = np.asarray(decoded.ok, np.int64)
        if self.refused is not None and self.classes is not None and decoded.y is not None and len(ok):
            self._label_refusals(recs, ok, np.asarray(decoded.y).reshape(len(ok), -1)[:, 0])
        offsets = np.asarray([recs[i].offset for i in ok], np.int64)
        declared = getattr(decoded, "keys", None)  # the value at source.key, when declared
        keys = [recs[i].key for i in ok] if declared is None else \
            [None if k is None else str(k).encode() for k in declared]
        self.positions[partition] = recs[-1].offset + 1
        return Rows(partition, offsets, key_hashes(keys, partition, offsets),
                    np.asarray(decoded.x, np.float32), decoded.y, len(recs), recs[-1].offset + 1,
                    set(decoded.schema_ids))

    def _label_refusals(self, recs: list[Any], ok: np.ndarray, y: np.ndarray) -> None:
        """Decoded records whose label is not a class of the model (training skips them, ``usable``)."""
        n = self.classes
        assert n is not None and self.source.label is not None
        bad = np.flatnonzero(~class_indices(y, n))
        for i in bad.tolist():
            reason = f"not a class index below {n} (got {y[i]:g})"
            self._refusals.append((plain_record(recs[int(ok[i])]), refused_field(self.source.label, reason)))


def prepared(spec: JobSpec, jd: JobData, rows: Rows, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scaled x and the labels as training takes them (class indices, or scaled targets)."""
    x = (rows.x[keep] - jd.x_mean) / jd.x_std
    y = rows.y[keep] if rows.y is not None else np.zeros(int(keep.sum()), np.float32)
    if spec.loss == "cross_entropy":
        return x.astype(np.float32), np.asarray(y).reshape(len(x), -1)[:, 0].astype(np.int64)
    y = np.asarray(y, np.float32)
    if jd.info.task == "regression":
        y = (y - jd.info.y_mean) / jd.info.y_std
    return x.astype(np.float32), y


def usable(spec: JobSpec, rows: Rows) -> np.ndarray:
    """Rows with a label training can use (a class index inside the model's outputs)."""
    if rows.y is None:
        return np.zeros(len(rows.offsets), bool)
    if spec.loss != "cross_entropy":
        return np.ones(len(rows.offsets), bool)
    return class_indices(np.asarray(rows.y).reshape(len(rows.offsets), -1)[:, 0], spec.model.output_dim)


def class_indices(y: np.ndarray, n: int) -> np.ndarray:
    """Which labels are class indices of an ``n``-class model (whole numbers in 0..n-1)."""
    return np.asarray((y >= 0) & (y < n) & (np.mod(y, 1) == 0), bool)
