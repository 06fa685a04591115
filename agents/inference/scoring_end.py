"""Where a bounded scoring run stops, the source's ``end:`` (README, "Score your topic"), and
where a new group starts at a ``start:`` timestamp (``seek_to_time``).

``end: {partition: offset}`` scores each partition up to that offset (exclusive; a partition not
named has nothing to score); ``end: <timestamp>`` scores each partition up to its first record at
or after that time (``offsets_for_times`` when the worker takes the partition over; while no record
has reached that time yet, the first one that does, as it arrives). A worker stops fetching a
partition once it is scored to its end, and ``ScoringWorker.run`` returns (the worker exits 0)
once every partition it owns is, its transactions committed. With no ``end`` nothing changes.
"""

from __future__ import annotations

from datetime import datetime
from typing import TypeAlias

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord, TopicPartition

from aiaas.schemas.sources import Source

Raw: TypeAlias = ConsumerRecord[bytes, bytes]


class SourceEnd:
    """The end offset of each owned partition (None while a timestamp end is not reached yet)."""

    def __init__(self, source: Source) -> None:
        self.end = source.end
        self.offsets: dict[TopicPartition, int | None] = {}
        self._end_ms = int(self.end.timestamp() * 1000) if isinstance(self.end, datetime) else None

    @property
    def bounded(self) -> bool:
        return self.end is not None

    async def resolve(self, consumer: AIOKafkaConsumer, tps: set[TopicPartition]) -> None:
        """The end offsets of newly owned partitions (a timestamp looked up on the broker)."""
        if isinstance(self.end, dict):
            self.offsets = {tp: int(self.end.get(tp.partition, 0)) for tp in tps}
        elif self._end_ms is not None:
            found = await consumer.offsets_for_times({tp: self._end_ms for tp in tps})
            self.offsets = {tp: (at.offset if (at := found.get(tp)) is not None else None) for tp in tps}

    def cut(self, tp: TopicPartition, recs: list[Raw]) -> list[Raw]:
        """The records of ``recs`` before the partition's end (a timestamp end is fixed by the first
        record at or after it)."""
        if not self.bounded:
            return recs
        end = self.offsets.get(tp)
        if end is None and self._end_ms is not None:
            first = next((r.offset for r in recs if r.timestamp >= self._end_ms), None)
            if first is None:
                return recs
            end = self.offsets[tp] = first
        if end is None or not recs or recs[-1].offset < end:
            return recs
        return [r for r in recs if r.offset < end]

    async def reached(self, consumer: AIOKafkaConsumer, tp: TopicPartition, handed: int | None) -> bool:
        """Is ``tp`` scored to its end? ``handed``: past the last record handed to a transaction;
        the consumer's position counts too (a transaction marker may sit just before the end)."""
        end = self.offsets.get(tp)
        if end is None:
            return False
        if handed is not None and handed >= end:
            return True
        return int(await consumer.position(tp)) >= end

    async def all_reached(self, consumer: AIOKafkaConsumer, owned: set[TopicPartition],
                          handed: dict[TopicPartition, int | None]) -> bool:
        """Is every owned partition (some at least) scored to its end? Each that is stops fetching."""
        done = [tp for tp in owned if await self.reached(consumer, tp, handed.get(tp))]
        consumer.pause(*done)
        return bool(owned) and len(done) == len(owned)


async def seek_to_time(consumer: AIOKafkaConsumer, tp: TopicPartition, when: datetime) -> None:
    """Read ``tp`` from its first record at or after ``when`` (its end while there is none)."""
    found = await consumer.offsets_for_times({tp: int(when.timestamp() * 1000)})
    at = found.get(tp)
    if at is not None:
        consumer.seek(tp, at.offset)
    else:  # nothing at or after that time yet
        await consumer.seek_to_end(tp)
