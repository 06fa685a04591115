"""A partition read by a background task: open its consumer, and stop task and consumer in order.

The registry, the bridge's job view and the trainers' followers all keep a group-less consumer on
a partition (a compacted table or a stream) drained by one task; this is their shared plumbing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from aiaas.streams.lifecycle import cancel, stop_consumer
from aiaas.streams.retry import retrying, started
from aiaas.streams.settings import Settings

# A table reader's fetch long-poll and empty-poll period (``read_forever``). A record ends either at
# once, and the readers' users ask end offsets over another connection (streams.metadata.end_offset),
# so only the wake-ups at rest depend on it: one fetch and one poll per 2 s (issue 18 item 5).
TABLE_WAIT_MS = 2000


async def open_assigned(settings: Settings, tp: TopicPartition | None = None, *,
                        from_beginning: bool = True, **overrides: Any) -> AIOKafkaConsumer:
    """A started consumer without a group, assigned ``tp`` (if given) at its beginning; a broker
    not ready yet is retried to the settings' deadline (``aiaas.streams.retry``)."""
    kw = settings.consumer_kwargs(None, **overrides)
    what = f"opening a reader of {tp.topic}[{tp.partition}]" if tp is not None else "opening a reader"
    consumer = await started(lambda: AIOKafkaConsumer(**kw), settings, what)
    if tp is not None:
        consumer.assign([tp])
        if from_beginning:
            try:
                await retrying(lambda: consumer.seek_to_beginning(tp), settings, what, metadata_wait=True)
            except BaseException:
                await stop_consumer(consumer)
                raise
    return consumer


async def stop_reader(task: asyncio.Task[None] | None, consumer: AIOKafkaConsumer | None) -> None:
    """Cancel the reading task first (it may be inside ``getmany``), then close the consumer."""
    await cancel(task)
    if consumer is not None:
        await stop_consumer(consumer)


async def read_forever(consumer: AIOKafkaConsumer, tp: TopicPartition, apply: Callable[[bytes | None], None],
                       polled: asyncio.Condition) -> None:
    """Apply every record value of ``tp`` as it arrives and wake ``polled``'s waiters after each poll
    (they compare the position with an end offset to know they caught up; they look again every
    0.5 s anyway, e.g. for a position moved past transaction markers by an empty poll)."""
    while True:
        batch = await consumer.getmany(tp, timeout_ms=TABLE_WAIT_MS)
        for rec in batch.get(tp, []):
            apply(rec.value)
        async with polled:
            polled.notify_all()


async def catch_up(consumer: AIOKafkaConsumer, tps: list[TopicPartition],
                   positions: dict[TopicPartition, int], start: Callable[[TopicPartition, int], int],
                   add: Callable[[TopicPartition, bytes | None], None], within_s: float = 5.0) -> None:
    """Hand ``add`` what ``tps`` hold up to their end offsets of now, from ``positions`` (a partition
    not read before from ``start(tp, end)``), for at most ``within_s`` (TimeoutError past it).
    ``positions`` is updated to where the next call goes on, whether or not this one got to the end."""
    consumer.assign(tps)
    ends = await consumer.end_offsets(tps)
    for tp in tps:
        consumer.seek(tp, positions.get(tp, start(tp, ends[tp])))
    try:
        async with asyncio.timeout(within_s):
            while any([await consumer.position(tp) < end for tp, end in ends.items()]):
                for tp, recs in (await consumer.getmany(timeout_ms=200, max_records=2000)).items():
                    for rec in recs:
                        add(tp, rec.value)
    finally:
        for tp in tps:
            positions[tp] = await consumer.position(tp)
