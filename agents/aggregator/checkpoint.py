"""Checkpoints: parameters + optimizer state + consumed gradient offsets, in one Kafka transaction.

The checkpoint record (key ``checkpoint`` on the compacted params topic) and the offsets of the
gradients it reflects (``send_offsets_to_transaction`` for the aggregator's group) commit together
or not at all, so a restarted aggregator resumes exactly where its last checkpoint stood. Starting
the transactional producer fences a previous instance and aborts its open transaction.
Resuming reads the params topic backwards from its end (read_committed) for the newest checkpoint.
A sharded parameter server checkpoints per shard: each shard has its own params topic,
transactional id and group (``aiaas.ml.shards.shard_name``), so each resumes alone.
The writer is ``Checkpointer``; ``save_soon`` snapshots the state between two updates and writes it
in the background, one transaction at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import numpy as np
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import OffsetAndMetadata, TopicPartition

from aiaas.ml.shards import shard_name
from aiaas.schemas.errors import ChunkError, InvalidMessage
from aiaas.schemas.training import CHECKPOINT_KEY, PARAMS_KEY, ParameterSnapshot
from aiaas.streams import codecs
from aiaas.streams import headers as h
from aiaas.streams.chunking import Pieces, Reassembler, base_key
from aiaas.streams.jobs import aggregator_group
from aiaas.streams.lifecycle import stop_consumer
from aiaas.streams.producer import Producer
from aiaas.streams.readers import open_assigned
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics

from .state import ServerState

log = logging.getLogger(__name__)
WINDOW = 64


def transactional_id(settings: Settings, job_id: str, shard: int = 0) -> str:
    return shard_name(f"{settings.topic_prefix}train.{job_id}.aggregator", shard)


class Checkpointer:
    """Writes checkpoints transactionally (one writer per job and shard: the transactional id
    fences others)."""

    def __init__(self, settings: Settings, job_id: str, shard: int = 0) -> None:
        self.settings = settings
        self.job_id = job_id
        self.topic = shard_name(Topics(settings).train_params(job_id).name, shard)
        self.group = shard_name(aggregator_group(settings, job_id), shard)
        self.producer = Producer(settings, transactional_id=transactional_id(settings, job_id, shard),
                                 linger_ms=0, compression_type=None)
        self.written = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.producer.start()

    async def stop(self) -> None:
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
        await self.producer.stop()

    async def save_soon(self, state: ServerState, topic: str, offsets: dict[int, int], final: bool) -> None:
        """Snapshot ``state`` and the offsets it reflects now, then write them in the background;
        a writer still busy skips a regular checkpoint (a final one waits for it)."""
        if self._task is not None and not self._task.done():
            if not final:
                return
            await self._task
        value = await asyncio.to_thread(checkpoint_record, state, self.job_id, offsets, final)
        self._task = asyncio.create_task(self.save(value, state.version, topic, offsets))

    async def flush(self) -> None:
        """Wait for the checkpoint being written, if any."""
        if self._task is not None:
            await self._task

    async def save(self, value: bytes | Pieces, version: int, topic: str, offsets: dict[int, int]) -> None:
        """``write`` with the offsets of ``topic``'s partitions; a failure is logged, not raised
        (training goes on; the next checkpoint tries again)."""
        try:
            await self.write(value, {TopicPartition(topic, p): o for p, o in offsets.items()})
            log.info("checkpoint at version %d (offsets %s)", version, offsets)
        except Exception:
            log.exception("checkpoint at version %d failed; training goes on", version)

    async def write(self, value: bytes | Pieces, offsets: dict[TopicPartition, int]) -> None:
        """One transaction: the packed checkpoint record and the consumed offsets."""
        raw = self.producer.raw
        async with raw.transaction():
            await self.producer.send(self.topic, value, key=CHECKPOINT_KEY)
            if offsets:
                await raw.send_offsets_to_transaction(
                    {tp: OffsetAndMetadata(off, "") for tp, off in offsets.items()}, self.group)
        self.written += 1


def checkpoint_record(state: ServerState, job_id: str, offsets: dict[int, int],
                      final: bool) -> bytes | Pieces:
    """The packed checkpoint of ``state`` (blocking: call it in a worker thread). A regular one is
    written in the background while training goes on: a copy. The final one is written while
    nothing steps the model any more (the job waits for it before its export): the record's pieces,
    views of the live parameters and optimizer state, with no record-sized copy beside them."""
    tensors, meta = state.checkpoint()
    header = ParameterSnapshot(job_id=job_id, version=state.version, has_optimizer_state=True,
                               consumed_offsets={str(p): o for p, o in offsets.items()}, final=final,
                               samples=state.samples, server_state=meta)
    return codecs.pack_pieces(header, tensors) if final else codecs.pack(header, tensors)


@dataclass(slots=True)
class Found:
    checkpoint: tuple[ParameterSnapshot, dict[str, np.ndarray]] | None
    latest: ParameterSnapshot | None  # header of the newest published version


async def find_latest(settings: Settings, job_id: str, shard: int = 0) -> Found:
    """The newest committed checkpoint and the newest published version header of ``job_id``
    (of one shard's params topic)."""
    tp = TopicPartition(shard_name(Topics(settings).train_params(job_id).name, shard), 0)
    consumer = await open_assigned(settings)
    try:
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        span, found = WINDOW, Found(None, None)
        while True:
            start = max(0, end - span)
            found = await _scan(consumer, tp, start, end)
            if found.checkpoint is not None or start == 0:
                return found
            span *= 4
    finally:
        await stop_consumer(consumer)


async def _scan(consumer: AIOKafkaConsumer, tp: TopicPartition, start: int, end: int) -> Found:
    consumer.seek(tp, start)
    chunks = Reassembler(timeout_s=3600)
    ckpt: tuple[ParameterSnapshot, dict[str, np.ndarray]] | None = None
    latest_value: bytes | None = None
    idle = 0
    while await consumer.position(tp) < end and idle < 10:  # end is the LSO (read_committed)
        batch = await consumer.getmany(tp, timeout_ms=500)
        idle = 0 if batch else idle + 1
        for rec in batch.get(tp, []):
            try:
                done = chunks.add(tp, rec.offset, h.decode(rec.headers), rec.value or b"")
            except ChunkError as exc:
                log.warning("skipping a broken chunked record @%d: %s", rec.offset, exc.reason)
                continue
            if done is None:
                continue
            key = base_key(rec.key)
            if key == CHECKPOINT_KEY.encode():
                try:
                    ckpt = codecs.unpack(done[0], ParameterSnapshot)
                except InvalidMessage as exc:
                    log.warning("skipping an undecodable checkpoint @%d: %s", rec.offset, exc.reason)
            elif key == PARAMS_KEY.encode():
                latest_value = done[0]
    latest = None
    if latest_value is not None:
        try:
            latest = codecs.split_header(latest_value, ParameterSnapshot)[0]
        except InvalidMessage:
            latest = None
    return Found(ckpt, latest)
