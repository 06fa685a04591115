"""Consumer lag and arrival rate of one consumer group on one topic, read from the broker.

Lag is what KEDA's Kafka scaler measures: end offset minus committed offset, summed over
partitions; a partition the group never committed counts from its first offset (our consumers
start at ``earliest``). The arrival rate is the growth of the end offsets between two looks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from aiaas.streams.admin import Admin
from aiaas.streams.lifecycle import Service, stop_consumer
from aiaas.streams.readers import open_assigned
from aiaas.streams.settings import Settings


@dataclass(frozen=True, slots=True)
class LagSample:
    lag: int
    end_total: int
    partitions: int
    at: float


def arrival_rate(prev: LagSample | None, cur: LagSample) -> float:
    """Records per second appended between two samples (0 for the first one)."""
    if prev is None or cur.at <= prev.at:
        return 0.0
    return max(0, cur.end_total - prev.end_total) / (cur.at - prev.at)


def total_lag(end: dict[TopicPartition, int], begin: dict[TopicPartition, int],
              committed: dict[TopicPartition, int]) -> int:
    """Sum over partitions of end - committed (or end - begin where nothing is committed)."""
    lag = 0
    for tp, last in end.items():
        c = committed.get(tp, -1)
        start = c if c >= 0 else begin.get(tp, 0)
        lag += max(0, last - start)
    return lag


class LagProbe(Service):
    """Reads end offsets (a group-less consumer) and committed offsets (admin) of ``group``."""

    def __init__(self, settings: Settings, topic: str, group: str) -> None:
        self.settings, self.topic, self.group = settings, topic, group
        self._consumer: AIOKafkaConsumer | None = None
        self._admin: Admin | None = None

    async def start(self) -> None:
        self._consumer = await open_assigned(self.settings)
        admin = Admin(self.settings)
        await admin.start()
        self._admin = admin

    async def stop(self) -> None:
        if self._consumer is not None:
            await stop_consumer(self._consumer)
            self._consumer = None
        if self._admin is not None:
            await self._admin.stop()
            self._admin = None

    async def sample(self) -> LagSample:
        assert self._consumer is not None and self._admin is not None, "LagProbe used before start()"
        meta = await self._admin.client.describe_topics([self.topic])
        parts = [p["partition"] for t in meta if t["error_code"] == 0 for p in t["partitions"]]
        tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
        if not tps:
            return LagSample(0, 0, 0, time.monotonic())
        end = await self._consumer.end_offsets(tps)
        begin = await self._consumer.beginning_offsets(tps)
        client = self._admin.client
        raw = await self._admin.call(f"reading the committed offsets of group {self.group}",
                                     lambda: client.list_consumer_group_offsets(self.group, partitions=tps))
        committed = {tp: om.offset for tp, om in raw.items()}
        return LagSample(total_lag(end, begin, committed), sum(end.values()), len(tps), time.monotonic())

    async def members(self) -> int:
        """Members of the group now (what the broker sees; for tests and the status line)."""
        assert self._admin is not None, "LagProbe used before start()"
        client = self._admin.client
        responses = await self._admin.call(f"describing group {self.group}",
                                           lambda: client.describe_consumer_groups([self.group]))
        # raw DescribeGroupsResponse: groups are (error, id, state, protocol_type, protocol, members..)
        return sum(len(g[5]) for r in responses for g in r.groups)
