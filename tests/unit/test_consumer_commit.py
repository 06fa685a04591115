"""Commits refused by a rebalancing group, without a broker: logged, not raised, and the done offsets
of partitions still owned wait for the next commit."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka.errors import CommitFailedError
from aiokafka.structs import TopicPartition

from aiaas.streams.consumer import Consumer
from aiaas.streams.record import Record
from aiaas.streams.settings import Settings

TP = TopicPartition("t", 0)


class Raw:
    """The part of AIOKafkaConsumer that commit uses; refuses commits while ``rebalancing``."""

    def __init__(self) -> None:
        self.rebalancing = True
        self.committed: list[dict[TopicPartition, Any]] = []

    def assignment(self) -> set[TopicPartition]:
        return {TP}

    async def commit(self, offsets: dict[TopicPartition, Any]) -> None:
        if self.rebalancing:
            raise CommitFailedError("Commit cannot be completed since the group has already rebalanced")
        self.committed.append(offsets)

    async def stop(self) -> None:
        pass


@pytest.fixture
def consumer() -> tuple[Consumer, Raw]:
    c = Consumer(Settings(), ["t"], "g")
    raw = Raw()
    c._consumer = raw  # type: ignore[assignment]
    return c, raw


async def test_a_refused_commit_is_retried_by_the_next(consumer: tuple[Consumer, Raw]) -> None:
    c, raw = consumer
    c.mark_done([Record("t", 0, 41, None, b"", {})])
    assert await c.commit_quietly() is False and raw.committed == []
    with pytest.raises(CommitFailedError):  # plain commit still says so
        await c.commit()
    raw.rebalancing = False
    assert await c.commit_quietly() is True and raw.committed == [{TP: 42}]


async def test_stop_survives_a_refused_final_commit(consumer: tuple[Consumer, Raw]) -> None:
    c, raw = consumer
    c.mark_done([Record("t", 0, 7, None, b"", {})])
    await c.stop()  # the group rebalanced as we stopped: the new owner re-reads from the last commit
    assert c._consumer is None and raw.committed == []
