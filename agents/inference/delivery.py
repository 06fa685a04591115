"""Sending the worker's reply records to Kafka, whatever they hold: the partition of a reply topic
(and whether the topic exists: a request whose reply topic does not is dead-lettered), sealing
under the request's data key (docs/security.md), chunks past ``chunk_bytes``
(``aiaas.streams.chunking``) and nothing over ``max_reply_bytes`` (413).
"""

from __future__ import annotations

from collections import Counter
from typing import Literal

from aiaas.agents.inference.outbox import Sent
from aiaas.agents.inference.sealing import WorkerSealing
from aiaas.schemas.errors import NotFound, TooLarge
from aiaas.streams.dlq import DeadLetters
from aiaas.streams.metadata import partition_count
from aiaas.streams.producer import Producer
from aiaas.streams.record import Record
from aiaas.streams.settings import MIB


class Delivery:
    def __init__(self, producer: Producer, dead_letters: DeadLetters, stats: Counter[str], *,
                 chunk_bytes: int = 4 * MIB, max_reply_bytes: int = 64 * MIB,
                 sealing: WorkerSealing | None = None) -> None:
        self.producer, self.dead_letters, self.stats = producer, dead_letters, stats
        self.chunk_bytes, self.max_reply_bytes = chunk_bytes, max_reply_bytes
        self.sealing = sealing  # replies to sealed requests are sealed under the request's key
        self._reply_topics: dict[str, int | None] = {}  # reply topic -> fixed partition (1-partition topics)

    async def _partition(self, rec: Record, reply_to: str,
                         letter: bool = True) -> int | Literal[False] | None:
        """The partition replies to ``reply_to`` go to (None: by key); False when the topic does not
        exist (then ``rec`` is dead-lettered, when ``letter``)."""
        if reply_to not in self._reply_topics:
            parts = await partition_count(self.producer.raw.client, reply_to)
            if parts == 0:
                self.stats["no_reply_topic"] += 1
                if letter:
                    await self.dead_letters.send(rec, NotFound("reply-to topic does not exist",
                                                               reply_to=reply_to))
                return False
            self._reply_topics[reply_to] = 0 if parts == 1 else None  # one partition: skip hashing the key
        return self._reply_topics[reply_to]

    async def send_raw(self, topic: str, value: bytes, key: bytes | None, headers: list[tuple[str, bytes]],
                       partition: int | None = None) -> Sent:
        """Send one record (sealed when its headers name a data key); over ``chunk_bytes`` in chunks,
        over ``max_reply_bytes`` not at all (413)."""
        if self.sealing is not None:
            value = self.sealing.seal_out(value, headers)
        if len(value) <= self.chunk_bytes:
            fut: Sent = await self.producer.raw.send(topic, value, key=key, headers=headers,
                                                     partition=partition)
            return fut
        if len(value) > self.max_reply_bytes:
            raise TooLarge("reply over the worker's size limit (max_reply_bytes)", size=len(value),
                           limit=self.max_reply_bytes)
        self.stats["chunked_replies"] += 1
        return await self.producer.send(topic, value, key=key, headers=headers, partition=partition)
