"""Stream scoring on the broker, for tests and benchmarks: write a user's input topic, and read what
the scoring workers committed (``isolation.level=read_committed``, as the README tells readers to)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from aiaas.streams import headers as h
from aiaas.streams.admin import Admin
from aiaas.streams.settings import Settings
from aiaas.streams.topics import TopicSpec


@dataclass(frozen=True)
class Prediction:
    partition: int
    key: bytes | None
    value: dict[str, Any]
    source: tuple[str, int, int]  # the input record's topic, partition, offset (its headers)


async def make_topic(settings: Settings, name: str, partitions: int) -> None:
    async with Admin(settings) as admin:
        await admin.ensure_topics([TopicSpec(name=name, partitions=partitions)])


async def produce(settings: Settings, topic: str, records: Sequence[tuple[bytes | None, bytes]],
                  partitions: int) -> None:
    """Write ``records`` (key, value) round-robin over ``partitions``, in batches (fast)."""
    producer = AIOKafkaProducer(**settings.producer_kwargs(linger_ms=20))
    await producer.start()
    try:
        await send_round_robin(producer, topic, records, partitions)
    finally:
        await producer.stop()


async def send_round_robin(producer: AIOKafkaProducer, topic: str,
                           records: Sequence[tuple[bytes | None, bytes]], partitions: int) -> None:
    """Record i to partition i % partitions, in full batches, and wait for every ack."""
    batches = [producer.create_batch() for _ in range(partitions)]
    acks = []
    for i, (key, value) in enumerate(records):
        p = i % partitions
        if batches[p].append(key=key, value=value, timestamp=None) is None:
            acks.append(await producer.send_batch(batches[p], topic, partition=p))
            batches[p] = producer.create_batch()
            batches[p].append(key=key, value=value, timestamp=None)
    for p, b in enumerate(batches):
        if b.record_count():
            acks.append(await producer.send_batch(b, topic, partition=p))
    await asyncio.gather(*acks)


def _prediction(partition: int, key: bytes | None, value: bytes | None,
                headers: Sequence[tuple[str, bytes]]) -> Prediction:
    hd = h.decode(headers)
    src = (hd[h.SOURCE_TOPIC], int(hd[h.SOURCE_PARTITION]), int(hd[h.SOURCE_OFFSET]))
    return Prediction(partition, key, json.loads(value or b"null"), src)


async def read_committed(settings: Settings, topic: str, *, until: Callable[[int], bool] | None = None,
                         timeout_s: float = 60.0, parse: bool = True,
                         isolation: str = "read_committed") -> list[Any]:
    """The committed records of ``topic`` (as ``Prediction`` when ``parse``, else raw): up to its
    end as of now (its last stable offsets), or, with ``until``, until ``until(count)`` holds.
    ``isolation="read_uncommitted"`` reads aborted records too (what a transaction left behind)."""
    tps = await _partitions(settings, topic)
    consumer = AIOKafkaConsumer(**settings.consumer_kwargs(None, isolation_level=isolation))
    await consumer.start()
    out: list[Any] = []
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps) if until is None else {}
        async with asyncio.timeout(timeout_s):
            while True:
                if until is not None and until(len(out)):
                    break
                if until is None and all([await consumer.position(tp) >= ends[tp] for tp in tps]):
                    break
                for tp, recs in (await consumer.getmany(timeout_ms=200, max_records=5000)).items():
                    out += [_prediction(tp.partition, r.key, r.value, r.headers) if parse else r
                            for r in recs]
    finally:
        await consumer.stop()
    return out


async def committed_total(settings: Settings, group: str, topic: str) -> int:
    """How many records of ``topic`` ``group`` has committed (the sum of its committed offsets)."""
    tps = await _partitions(settings, topic)
    consumer = AIOKafkaConsumer(**settings.consumer_kwargs(group))
    await consumer.start()
    try:
        return sum([await consumer.committed(tp) or 0 for tp in tps])
    finally:
        await consumer.stop()


async def group_caught_up(settings: Settings, group: str, topic: str, timeout_s: float = 60.0,
                          ends: dict[int, int] | None = None, poll_s: float = 0.2) -> None:
    """Wait until ``group`` has committed every partition of ``topic`` to its end (all scored), or
    to ``ends`` (partition -> offset): a topic written in transactions ends with a commit marker,
    which takes an offset no reader commits past."""
    tps = await _partitions(settings, topic)
    consumer = AIOKafkaConsumer(**settings.consumer_kwargs(group))
    await consumer.start()
    try:
        ends_at = await consumer.end_offsets(tps) if ends is None else \
            {TopicPartition(topic, p): o for p, o in ends.items()}
        async with asyncio.timeout(timeout_s):
            while True:
                committed = {tp: await consumer.committed(tp) for tp in tps}
                if all((committed[tp] or 0) >= ends_at[tp] for tp in tps):
                    return
                await asyncio.sleep(poll_s)  # polling the committed offsets, not a synchronising sleep
    finally:
        await consumer.stop()


async def _partitions(settings: Settings, topic: str) -> list[TopicPartition]:
    async with Admin(settings) as admin:
        return [TopicPartition(topic, p) for p in range(await admin.partitions(topic))]
