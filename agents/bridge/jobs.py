"""The thin jobs API: submit a JobSpec to the ``jobs`` topic, read status and metrics back.

The ``jobs`` topic (compacted, keyed by job id) holds each job's spec and later its JobStatus
records; a reader started on first use keeps the latest of each in memory. Metrics are the last
record of ``train.<job>.metrics``, read on demand.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from aiaas.schemas.errors import InvalidMessage
from aiaas.schemas.jobs import JobSpec
from aiaas.schemas.records import JobStatus
from aiaas.schemas.training import MetricsMessage
from aiaas.streams import headers as h
from aiaas.streams import tensorcodec as tc
from aiaas.streams.lifecycle import stop_consumer, within
from aiaas.streams.metadata import end_offset
from aiaas.streams.producer import Producer
from aiaas.streams.readers import TABLE_WAIT_MS, open_assigned, read_forever, stop_reader
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics

log = logging.getLogger(__name__)


class JobsView:
    def __init__(self, settings: Settings, producer: Producer) -> None:
        self.settings = settings
        self.topics = Topics(settings)
        self.producer = producer
        self.specs: dict[str, JobSpec] = {}
        self.status: dict[str, JobStatus] = {}
        self._tp = TopicPartition(self.topics.jobs().name, 0)
        self._consumer: AIOKafkaConsumer | None = None
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._polled = asyncio.Condition()

    async def _ensure_started(self) -> AIOKafkaConsumer:
        async with self._lock:
            if self._consumer is None:
                # a 2 s long-poll (one empty fetch per 2 s at rest): get() asks the end offset over
                # the producer's connection, not behind this fetch (streams.metadata.end_offset)
                consumer = await open_assigned(self.settings, self._tp, fetch_max_wait_ms=TABLE_WAIT_MS)
                self._consumer = consumer
                reading = read_forever(consumer, self._tp, self._apply, self._polled)
                self._reader = asyncio.create_task(reading, name="jobs-reader")
            return self._consumer

    async def stop(self) -> None:
        await stop_reader(self._reader, self._consumer)
        self._reader, self._consumer = None, None

    async def submit(self, spec: JobSpec, tenant: str) -> None:
        await self.producer.send_and_wait(
            self._tp.topic, spec.to_record(), key=spec.job_id, headers={h.TENANT: tenant}
        )
        self.specs[spec.job_id] = spec

    async def get(self, job_id: str, timeout_s: float = 10.0) -> tuple[JobSpec | None, JobStatus | None]:
        """Latest spec and status of a job, after catching up with the topic."""
        consumer = await self._ensure_started()
        end = await end_offset(self.producer.raw.client, self._tp)
        if end is None:  # leader unknown to the producer: the consumer's (behind its fetch)
            end = (await consumer.end_offsets([self._tp]))[self._tp]
        async with asyncio.timeout(timeout_s), self._polled:
            while await consumer.position(self._tp) < end:
                await within(self._polled.wait(), 0.5)
        return self.specs.get(job_id), self.status.get(job_id)

    async def latest_metrics(self, job_id: str) -> dict[str, Any] | None:
        """The last metrics record of the job, or None when there is none yet."""
        tp = TopicPartition(self.topics.train_metrics(job_id).name, 0)
        consumer = await open_assigned(self.settings)
        try:
            if tp.topic not in await consumer.topics():
                return None
            consumer.assign([tp])
            end = (await consumer.end_offsets([tp]))[tp]
            if end == 0:
                return None
            consumer.seek(tp, end - 1)
            async with asyncio.timeout(5.0):
                while True:
                    recs = (await consumer.getmany(tp, timeout_ms=500)).get(tp, [])
                    if recs:
                        msg = MetricsMessage.from_record(recs[-1].value)
                        return msg.model_dump(exclude_none=True)
        except (InvalidMessage, TimeoutError) as exc:
            log.warning("metrics of %s unreadable: %s", job_id, exc)
            return None
        finally:
            await stop_consumer(consumer)

    def _apply(self, value: bytes | None) -> None:
        if value is None:
            return
        kind = tc.peek_kind(value)
        try:
            if kind == JobSpec.KIND:
                spec = JobSpec.from_record(value)
                self.specs[spec.job_id] = spec
            elif kind == JobStatus.KIND:
                status = JobStatus.from_record(value)
                self.status[status.job_id] = status
        except InvalidMessage as exc:
            log.warning("skipping a bad record on jobs: %s", exc.reason)
