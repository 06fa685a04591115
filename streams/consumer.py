"""Consumer wrapper: batched polling, chunk reassembly, decode-or-dead-letter, commit after work.

Offsets are committed only for records the caller says are done (and never past the first chunk
of a payload still being reassembled), so a crash re-delivers work instead of losing it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import CommitFailedError, KafkaError
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata, TopicPartition

from aiaas.schemas.errors import AiaasError, ChunkError, ErrorCode
from aiaas.streams import headers as h
from aiaas.streams.authz import forbidden_from
from aiaas.streams.checks import log_extensions
from aiaas.streams.chunking import Reassembler, base_key
from aiaas.streams.dlq import DeadLetters
from aiaas.streams.lifecycle import Service, stop_consumer
from aiaas.streams.record import Record
from aiaas.streams.retry import started
from aiaas.streams.settings import Settings

log = logging.getLogger(__name__)

Decoder = Callable[[Record], Any]
Handler = Callable[[list[Record]], Awaitable[None]]


class Consumer(Service):
    """A lazily started consumer of ``topics`` in ``group_id`` (None: manual, no commits)."""

    def __init__(
        self,
        settings: Settings,
        topics: Sequence[str],
        group_id: str | None,
        *,
        dead_letters: DeadLetters | None = None,
        chunk_timeout_s: float = 60.0,
        **overrides: Any,
    ) -> None:
        self.settings = settings
        self.topics = list(topics)
        self.group_id = group_id
        self.dead_letters = dead_letters
        self._overrides = overrides
        self._consumer: AIOKafkaConsumer | None = None
        self._reassembler = Reassembler(timeout_s=chunk_timeout_s)
        self._done: dict[TopicPartition, int] = {}
        self._stopping = asyncio.Event()
        self.rejected = 0

    async def start(self) -> None:
        log_extensions()
        kw = self.settings.consumer_kwargs(self.group_id, **self._overrides)
        what = f"starting a consumer of {', '.join(self.topics) or 'no topic yet'} (group {self.group_id})"
        self._consumer = await started(lambda: AIOKafkaConsumer(*self.topics, **kw), self.settings, what)

    async def stop(self) -> None:
        self._stopping.set()
        if self._consumer is not None:
            try:
                if self.group_id is not None:
                    await self.commit_quietly()
            finally:
                await stop_consumer(self._consumer)
                self._consumer = None

    @property
    def running(self) -> bool:
        """Between ``start()`` and ``stop()``."""
        return self._consumer is not None

    @property
    def raw(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("Consumer used before start()")
        return self._consumer

    async def getmany(
        self, timeout_ms: int = 100, max_records: int | None = 500, decode: Decoder | None = None
    ) -> list[Record]:
        """Next batch of whole records; undecodable ones go to the DLQ and count as done."""
        try:
            batches = await self.raw.getmany(timeout_ms=timeout_ms, max_records=max_records)
        except KafkaError as exc:  # an ACL refusal: one line naming the principal and the topic
            denied = forbidden_from(self.settings, exc, "reading")
            if denied is None:
                raise
            raise denied from exc
        out: list[Record] = []
        for tp, raws in batches.items():
            for raw in raws:
                rec = await self._reassemble(tp, raw)
                if rec is not None and decode is not None:
                    rec = await self._decode(rec, decode)
                if rec is not None:
                    out.append(rec)
        await self._expire_chunks()
        return out

    def mark_done(self, records: Sequence[Record]) -> None:
        """Record that these records are fully processed (their offsets may be committed)."""
        for r in records:
            tp = r.tp
            if r.offset >= self._done.get(tp, -1):
                self._done[tp] = r.offset

    async def commit(self, records: Sequence[Record] = ()) -> None:
        """Mark ``records`` done and commit every partition's done offset + 1."""
        self.mark_done(records)
        if self.group_id is None or not self._done:
            return
        offsets: dict[TopicPartition, OffsetAndMetadata | int] = {}
        assigned = self.raw.assignment()
        for tp, last in self._done.items():
            if tp not in assigned:
                continue
            nxt = last + 1
            pending = self._reassembler.pending_first_offset(tp)
            offsets[tp] = min(nxt, pending) if pending is not None else nxt
        self._done = {tp: o for tp, o in self._done.items() if tp in assigned}
        if offsets:
            await self.raw.commit(offsets)

    async def commit_quietly(self) -> bool:
        """``commit``, except that a commit the group refuses because it rebalanced meanwhile is
        logged, not raised: those partitions' new owner re-reads from the last committed offsets
        (at-least-once), and offsets still ours stay marked for the next commit."""
        try:
            await self.commit()
        except CommitFailedError as exc:
            log.warning("commit for group %s refused (the group rebalanced): %s", self.group_id,
                        str(exc).splitlines()[0])
            return False
        return True

    async def reject(self, record: Record, error: AiaasError) -> None:
        """Dead-letter one record (or log it when no DLQ is configured) and mark it done."""
        self.rejected += 1
        if self.dead_letters is not None:
            await self.dead_letters.send(record, error)
        else:
            log.warning("rejected %s[%d]@%d: %s", record.topic, record.partition, record.offset, error)
        self.mark_done([record])

    async def run(
        self, handler: Handler, *, decode: Decoder | None = None,
        max_records: int = 500, timeout_ms: int = 100,
    ) -> None:
        """Poll, hand batches to ``handler``, commit after it returns; until ``stop()``."""
        while not self._stopping.is_set():
            records = await self.getmany(timeout_ms, max_records, decode)
            if records:
                try:
                    await handler(records)
                except AiaasError as exc:
                    for r in records:
                        await self.reject(r, exc)
                except Exception as exc:  # a bad batch must not kill the loop
                    log.exception("handler failed; dead-lettering %d records", len(records))
                    err = AiaasError("handler failed", code=ErrorCode.INTERNAL, detail=repr(exc))
                    for r in records:
                        await self.reject(r, err)
            self.mark_done(records)
            await self.commit_quietly()  # a rebalance meanwhile must not end the loop (at-least-once)

    def request_stop(self) -> None:
        self._stopping.set()

    async def _reassemble(self, tp: TopicPartition, raw: ConsumerRecord[bytes, bytes]) -> Record | None:
        values = h.decode(raw.headers)
        rec = Record(raw.topic, raw.partition, raw.offset, raw.key, raw.value, values,
                     raw.timestamp, raw.offset)
        if h.CHUNK_ID not in values:
            return rec
        try:
            done = self._reassembler.add(tp, raw.offset, values, raw.value or b"")
        except ChunkError as exc:
            await self.reject(rec, exc)
            return None
        if done is None:
            return None
        rec.value, rec.first_offset = done
        if rec.key is not None:
            rec.key = base_key(rec.key) or rec.key
        return rec

    async def _decode(self, rec: Record, decode: Decoder) -> Record | None:
        try:
            rec.message = decode(rec)
        except AiaasError as exc:
            await self.reject(rec, exc)
            return None
        return rec

    async def _expire_chunks(self) -> None:
        for tp, first, err in self._reassembler.expire():
            assert isinstance(tp, TopicPartition)
            stub = Record(tp.topic, tp.partition, first, None, None, {}, 0, first)
            await self.reject(stub, err)
