"""A chunked send is reported sent only when every chunk was (``Producer._send_chunked``).

The broker can refuse one chunk and take the others (the last chunk is shorter than the topic's
record limit, the full ones are not); an idempotent producer usually fails the later ones too
(tests/integration/test_streams.py), but the send must not rest on that. The aiokafka producer is
replaced here by a recorder whose acks this test decides.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.structs import RecordMetadata, TopicPartition

from aiaas.streams.producer import CHUNKS_IN_FLIGHT, Producer
from aiaas.streams.settings import Settings


class Acks:
    """``send`` as aiokafka's: a future per record; ``refuse`` names the chunk indices that fail."""

    def __init__(self, refuse: set[int]) -> None:
        self.refuse = refuse
        self.sent = 0

    async def send(self, topic: str, value: Any, **kw: Any) -> asyncio.Future[RecordMetadata]:
        fut: asyncio.Future[RecordMetadata] = asyncio.get_running_loop().create_future()
        if self.sent in self.refuse:
            fut.set_exception(MessageSizeTooLargeError())
        else:
            fut.set_result(RecordMetadata(topic, 0, TopicPartition(topic, 0), self.sent, -1, 0, -1))
        self.sent += 1
        return fut


def producer(acks: Acks) -> Producer:
    prod = Producer(Settings(chunk_bytes=1024))
    prod._producer = acks  # type: ignore[assignment]
    return prod


@pytest.mark.parametrize("refused", [0, 3, 5])
async def test_one_refused_chunk_fails_the_send(refused: int) -> None:
    acks = Acks({refused})
    fut = await producer(acks).send("t", b"x" * (6 * 1024), key="k", partition=0)
    with pytest.raises(MessageSizeTooLargeError):
        await fut
    if refused < 6 - CHUNKS_IN_FLIGHT:  # found before the last chunks were queued: no more are sent
        assert acks.sent < 6


async def test_every_chunk_taken_reports_the_last_ack() -> None:
    acks = Acks(set())
    meta = await (await producer(acks).send("t", b"x" * (6 * 1024 + 1), key="k", partition=0))
    assert acks.sent == 7 and meta.offset == 6
