"""Producer wrapper: idempotent, acks=all, compressed, chunking payloads over the record limit."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.structs import RecordMetadata

from aiaas.schemas.envelope import Envelope
from aiaas.schemas.errors import TooLarge
from aiaas.streams import chunking
from aiaas.streams import headers as h
from aiaas.streams.authz import forbidden_from
from aiaas.streams.checks import log_extensions
from aiaas.streams.lifecycle import Service
from aiaas.streams.retry import retrying, started
from aiaas.streams.settings import Settings

log = logging.getLogger(__name__)

HeadersIn = Mapping[str, str | int | float | None] | Sequence[tuple[str, bytes]] | None
MAX_PAYLOAD = 1 << 30  # refuse (clearly) payloads over 1 GiB rather than chunk them forever
CHUNKS_IN_FLIGHT = 4  # a chunked payload's chunks queued unacked at once: the producer's copy of a
# 90 MB payload is 16 MiB of batches, not all of it (the sender awaits the oldest before the next)


def _headers(value: HeadersIn) -> h.Headers:
    if value is None:
        return []
    if isinstance(value, Mapping):
        return h.encode(value)
    return list(value)


def _key(key: bytes | str | None) -> bytes | None:
    return key.encode() if isinstance(key, str) else key


class Producer(Service):
    """Lazily started aiokafka producer; ``send`` returns a future for the broker's ack."""

    def __init__(self, settings: Settings, **overrides: Any) -> None:
        self.settings = settings
        self._overrides = overrides
        self._producer: AIOKafkaProducer | None = None
        self._partitioner = DefaultPartitioner()

    async def start(self) -> None:
        log_extensions()
        kw = self.settings.producer_kwargs(**self._overrides)
        self._producer = await started(lambda: AIOKafkaProducer(**kw), self.settings, "starting a producer")

    async def stop(self) -> None:
        if self._producer is not None:
            try:
                await self._producer.flush()
            finally:
                await self._producer.stop()
                self._producer = None

    @property
    def running(self) -> bool:
        """Between ``start()`` and ``stop()``."""
        return self._producer is not None

    @property
    def raw(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError("Producer used before start()")
        return self._producer

    async def send(
        self,
        topic: str,
        value: bytes | chunking.Pieces,
        *,
        key: bytes | str | None = None,
        headers: HeadersIn = None,
        partition: int | None = None,
    ) -> asyncio.Future[RecordMetadata]:
        """Queue a record (chunked when over ``chunk_bytes``); await the result for the ack. A
        ``Pieces`` value is never joined when chunked (each chunk is cut from its pieces): its
        pieces are read until this returns, not after."""
        hdrs = _headers(headers)
        kb = _key(key)
        if len(value) <= self.settings.chunk_bytes:
            fut: asyncio.Future[RecordMetadata] = await self.raw.send(
                topic, value.join() if isinstance(value, chunking.Pieces) else value, key=kb,
                headers=hdrs, partition=partition
            )
            return fut
        return await self._send_chunked(topic, value, kb, hdrs, partition)

    async def send_and_wait(self, topic: str, value: bytes, **kw: Any) -> RecordMetadata:
        try:
            return await (await self.send(topic, value, **kw))
        except KafkaError as exc:  # an ACL refusal: one line naming the principal and the topic
            denied = forbidden_from(self.settings, exc, "writing", topic)
            if denied is None:
                raise
            raise denied from exc

    async def send_message(
        self, topic: str, message: Envelope, *, key: bytes | str | None = None,
        headers: HeadersIn = None, partition: int | None = None,
    ) -> asyncio.Future[RecordMetadata]:
        return await self.send(topic, message.to_record(), key=key, headers=headers, partition=partition)

    async def flush(self) -> None:
        await self.raw.flush()

    async def _send_chunked(
        self, topic: str, value: bytes | chunking.Pieces, key: bytes | None, hdrs: h.Headers,
        partition: int | None
    ) -> asyncio.Future[RecordMetadata]:
        if len(value) > MAX_PAYLOAD:
            raise TooLarge("payload over the chunking limit", size=len(value), limit=MAX_PAYLOAD)
        if partition is None:
            parts = sorted(await retrying(lambda: self.raw.partitions_for(topic), self.settings,
                                          f"looking up the partitions of {topic}", metadata_wait=True))
            partition = self._partitioner(key, parts, parts) if key is not None else parts[0]
        queued: list[asyncio.Future[RecordMetadata]] = []
        for i, (data, chunk_headers) in enumerate(chunking.iter_chunks(value, self.settings.chunk_bytes)):
            if len(queued) >= CHUNKS_IN_FLIGHT:
                await asyncio.wait([queued[0]])
                if queued[0].cancelled() or queued[0].exception() is not None:
                    return queued[0]  # a chunk refused: the payload cannot be whole, send no more
                queued.pop(0)
            ckey = chunking.chunk_key(key, i) if key is not None else None
            queued.append(await self.raw.send(  # a view of value: the producer's batch is its copy
                topic, data, key=ckey, headers=hdrs + chunk_headers, partition=partition
            ))
        return asyncio.ensure_future(_every_ack(queued))


async def _every_ack(acks: list[asyncio.Future[RecordMetadata]]) -> RecordMetadata:
    """The last chunk's ack once every chunk in flight has one, else the first chunk's failure: the
    broker may refuse an earlier chunk and take the last (a shorter one, under the topic's
    ``max.message.bytes``), and a payload with a chunk missing must not be reported sent."""
    return (await asyncio.gather(*acks))[-1]
