"""Where stream scoring writes: predictions, dead letters and the consumed offsets, exactly once.

``TransactionalSink``: one transactional producer per input partition the worker owns, with the
transactional id ``<group>.<topic>.<partition>``. aiokafka's ``send_offsets_to_transaction`` sends
no consumer-group generation (no KIP-447), so fencing is by transactional id, as Kafka Streams did
before it: whoever is given a partition starts that partition's producer first, which fences any
previous owner (a worker killed, or one the group expelled that still runs) and aborts its open
transaction; only then does it read the committed offset. Each write is one transaction per
partition: its predictions, its dead letters and the next offset to read, committed together, so
a reader with ``isolation.level=read_committed`` sees every input offset scored exactly once.

A write that fails with a retriable error (the broker gone for a moment, a timeout whose fate is
unknown) is aborted and tried again with backoff until ``deadline_s``: the aborted predictions are
never read, and the offsets did not move (``aiaas.streams.retry``). The producer is replaced
before the next try (a new one under the same id aborts whatever the old one left open).

Predictions are small JSON values: compressing them cost the worker more CPU (lz4 took a sixth of
the event loop's time) than it saved. ``PlainSink`` (``--at-least-once``): one idempotent
producer, offsets committed after the acks; a crash may write some predictions twice, never skip
one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaTimeoutError, ProducerFenced
from aiokafka.structs import OffsetAndMetadata, TopicPartition

from aiaas.schemas.errors import AiaasError
from aiaas.streams import headers as h
from aiaas.streams.dlq import dead_letter
from aiaas.streams.lifecycle import bounded
from aiaas.streams.producer import Producer
from aiaas.streams.record import Record
from aiaas.streams.retry import retrying
from aiaas.streams.settings import Settings

log = logging.getLogger(__name__)

Commit = Callable[[dict[TopicPartition, int]], Awaitable[None]]


@dataclass(slots=True)
class Outgoing:
    """What one input partition's share of a poll writes: predictions and dead letters, and the
    offset to read next once they are written."""

    tp: TopicPartition
    next_offset: int
    predictions: list[tuple[bytes | None, bytes, h.Headers]] = field(default_factory=list)
    rejects: list[tuple[Record, AiaasError]] = field(default_factory=list)


class Target:
    """The output and dead-letter topics, and which output partition an input partition writes to:
    the same number (modulo the output's partitions), so the output keeps each partition's order."""

    def __init__(self, topic: str, partitions: int, dlq_topic: str) -> None:
        self.topic = topic
        self.partitions = partitions
        self.dlq_topic = dlq_topic

    async def send(self, raw: AIOKafkaProducer, out: Outgoing) -> list[asyncio.Future[object]]:
        """Queue ``out``'s records (predictions in full batches; the rare dead letters one by one);
        the futures are the broker's acks."""
        acks: list[asyncio.Future[object]] = []
        partition = out.tp.partition % self.partitions
        batch = raw.create_batch()
        for key, value, headers in out.predictions:
            if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                acks.append(await raw.send_batch(batch, self.topic, partition=partition))
                batch = raw.create_batch()
                batch.append(key=key, value=value, timestamp=None, headers=headers)
        if batch.record_count():
            acks.append(await raw.send_batch(batch, self.topic, partition=partition))
        for rec, err in out.rejects:
            log.warning("dead-letter %s[%d]@%d: %s %s", rec.topic, rec.partition, rec.offset,
                        err.reason, err.details)
            acks.append(await raw.send(self.dlq_topic, dead_letter(rec, err).to_record(), key=rec.key))
        return acks


class TransactionalSink:
    """Exactly once: a transactional producer per owned input partition (see the module doc)."""

    def __init__(self, settings: Settings, group: str, target: Target, *,
                 deadline_s: float, transaction_timeout_ms: int) -> None:
        self.settings = settings
        self.group = group
        self.target = target
        self.deadline_s = deadline_s
        self.transaction_timeout_ms = transaction_timeout_ms
        self.producers: dict[TopicPartition, Producer] = {}
        self.transactions = 0
        self.failed_attempts = 0  # aborted and tried again
        self.attempt_failed = asyncio.Event()  # set on the first (tests wait on it)
        self.attempt_s = settings.request_timeout_ms / 1000 + 5.0

    def transactional_id(self, tp: TopicPartition) -> str:
        return f"{self.group}.{tp.topic}.{tp.partition}"

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        await asyncio.gather(*(self._close(tp) for tp in list(self.producers)))

    async def assign(self, owned: Iterable[TopicPartition]) -> None:
        """Own exactly ``owned``: close the producers of partitions gone, start (and so fence any
        previous owner of) the new ones. Returns once every previous owner is fenced."""
        owned = set(owned)
        await asyncio.gather(*(self._close(tp) for tp in list(self.producers) if tp not in owned))
        await asyncio.gather(*(self._open(tp) for tp in owned if tp not in self.producers))

    async def write(self, outs: Sequence[Outgoing]) -> list[TopicPartition]:
        """One transaction per partition, all at once; returns the partitions another worker
        fenced us from (it owns them now: our work for them is dropped, theirs goes on)."""
        fenced = await asyncio.gather(*(self._write_one(o) for o in outs))
        return [tp for tp in fenced if tp is not None]

    async def _write_one(self, out: Outgoing) -> TopicPartition | None:
        what = f"scoring transaction for {out.tp.topic}[{out.tp.partition}]"
        try:
            await retrying(lambda: self._transaction(out), self.settings, what,
                           deadline_s=self.deadline_s, metadata_wait=True)
        except ProducerFenced:  # not retriable: retrying passes it at once
            log.warning("%s[%d]: fenced by a newer owner; leaving it to them", out.tp.topic, out.tp.partition)
            await self._close(out.tp)
            return out.tp
        self.transactions += 1
        return None

    async def _transaction(self, out: Outgoing) -> None:
        producer = self.producers.get(out.tp)
        if producer is None:  # a failed try closed it, or the partition was fenced
            producer = await self._open(out.tp)
        try:  # a broker gone mid-commit: abort, try again (a deadline that a lost cancel cannot undo)
            await bounded(self._attempt(producer.raw, out), self.attempt_s)
        except TimeoutError:
            self._failed()
            await self._close(out.tp)
            raise KafkaTimeoutError(f"transaction not committed in {self.attempt_s:.0f}s") from None
        except ProducerFenced:
            raise
        except Exception:
            self._failed()
            await self._close(out.tp)  # the next try starts a fresh producer, aborting what is open
            raise

    async def _attempt(self, raw: AIOKafkaProducer, out: Outgoing) -> None:
        await raw.begin_transaction()
        acks = await self.target.send(raw, out)
        await raw.send_offsets_to_transaction({out.tp: OffsetAndMetadata(out.next_offset, "")}, self.group)
        await raw.commit_transaction()
        await asyncio.gather(*acks)  # settled by the commit; a failure there has raised already

    def _failed(self) -> None:
        self.failed_attempts += 1
        self.attempt_failed.set()

    async def _open(self, tp: TopicPartition) -> Producer:
        producer = Producer(self.settings, transactional_id=self.transactional_id(tp),
                            transaction_timeout_ms=self.transaction_timeout_ms, compression_type=None)
        await producer.start()  # InitProducerId: fences the previous owner, ends its transaction
        self.producers[tp] = producer
        return producer

    async def _close(self, tp: TopicPartition) -> None:
        producer = self.producers.pop(tp, None)
        if producer is None or not producer.running:
            return
        with contextlib.suppress(Exception):
            await bounded(producer.stop(), 5.0)


class PlainSink:
    """At-least-once: one idempotent producer; offsets committed (``commit``) after every ack."""

    def __init__(self, settings: Settings, target: Target, commit: Commit) -> None:
        self.target = target
        self.commit = commit
        self.producer = Producer(settings, compression_type=None)
        self.transactions = 0

    async def start(self) -> None:
        await self.producer.start()

    async def stop(self) -> None:
        await self.producer.stop()

    async def assign(self, owned: Iterable[TopicPartition]) -> None:
        return None

    async def write(self, outs: Sequence[Outgoing]) -> list[TopicPartition]:
        acks: list[asyncio.Future[object]] = []
        for out in outs:
            acks += await self.target.send(self.producer.raw, out)
        await asyncio.gather(*acks)
        await self.commit({o.tp: o.next_offset for o in outs})
        return []
