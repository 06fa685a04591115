"""What the aggregator reads once at start: the held-out test split and the size of the train data."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import numpy as np
from aiokafka.structs import ConsumerRecord, TopicPartition

from aiaas.data.datainfo import JobData
from aiaas.schemas.errors import InvalidMessage, Unavailable
from aiaas.schemas.jobs import JobSpec
from aiaas.schemas.training import DATA_INFO_KEY, DataBatch
from aiaas.streams import codecs
from aiaas.streams.envelope import configured
from aiaas.streams.lifecycle import stop_consumer
from aiaas.streams.readers import open_assigned
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics

log = logging.getLogger(__name__)


async def _read_all(
    settings: Settings, topic: str, partitions: int, wait_s: float
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of ``topic``'s partitions, waiting up to ``wait_s`` for it to be non-empty."""
    consumer = await open_assigned(settings)
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    try:
        async with asyncio.timeout(wait_s):
            while True:
                ends = await consumer.end_offsets(tps)
                if sum(ends.values()) > 0:
                    break
                await asyncio.sleep(0.2)  # polling for data that is not pushed yet
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        out: list[ConsumerRecord[bytes, bytes]] = []
        for tp in tps:
            while await consumer.position(tp) < ends[tp]:
                out += (await consumer.getmany(tp, timeout_ms=500)).get(tp, [])
        return out
    except TimeoutError as exc:
        raise Unavailable("topic holds no data (was the data pushed?)", topic=topic) from exc
    finally:
        await stop_consumer(consumer)


@dataclass(frozen=True, slots=True)
class HeldOut:
    """The job's held-out rows (as trained on: scaled) and what the push said about its data."""

    x: np.ndarray
    y: np.ndarray
    data: JobData | None  # None: pushed by a version that wrote no DataInfo


async def load_test_split(settings: Settings, spec: JobSpec, wait_s: float = 120.0) -> HeldOut:
    """The job's test rows (x, y), in offset order, and its DataInfo."""
    topic = Topics(settings).train_test(spec.job_id).name
    xs, ys, data = [], [], None
    sealer = configured(opening_only=True)  # sealed test batches open in memory (docs/security.md)
    for rec in await _read_all(settings, topic, 1, wait_s):
        try:
            if rec.key == DATA_INFO_KEY.encode():
                data = JobData.unpack(rec.value)
                continue
            header, tensors = codecs.unpack(sealer.open_record(rec.value, rec.headers), DataBatch)
        except InvalidMessage as exc:
            log.warning("skipping an undecodable test record @%d: %s", rec.offset, exc.reason)
            continue
        if header.job_id == spec.job_id and "x" in tensors and "y" in tensors:
            xs.append(tensors["x"].astype(np.float32))
            ys.append(tensors["y"])
    if not xs:
        raise Unavailable("the test split is empty", topic=topic)
    if data is None:
        log.warning("job %s: the pushed data carries no DataInfo; the served model will expect "
                    "features scaled as in training", spec.job_id)
    return HeldOut(np.concatenate(xs), np.concatenate(ys), data)


async def train_rows(settings: Settings, spec: JobSpec, wait_s: float = 120.0) -> int:
    """Rows in the data topic (from the batch headers only: tensors are not decoded)."""
    topic = Topics(settings).train_data(spec.job_id, spec.data.partitions).name
    rows = 0
    sealer = configured(opening_only=True)
    for rec in await _read_all(settings, topic, spec.data.partitions, wait_s):
        try:
            rows += codecs.split_header(sealer.open_record(rec.value, rec.headers), DataBatch)[0].rows
        except InvalidMessage:
            continue
    return rows
