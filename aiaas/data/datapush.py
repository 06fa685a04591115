"""Put a dataset onto Kafka for a job: train batches on the data topic, the test split apart.

Each train batch is ``codecs.pack(DataBatch, {"x": float32 [rows, features], "y": int64 [rows] or
float32 [rows(, k)]})`` written to the partition the strategy chose (explicit partition number, so
partition p *is* the data of whichever trainer owns p). The held-out split goes to the job's test
topic with ``split="test"``, after a ``DataInfo`` record (key ``info``, ``aiaas.data.datainfo``): the
data's shape and the scaling training sees, which the exported model folds into its graph. Epochs
replay the data topic from the beginning; pushing twice would double the data, so ``push`` refuses
a data topic that already holds records.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import RecordMetadata
from pydantic import BaseModel, Field

from aiaas.data.datainfo import describe
from aiaas.data.datasets import Dataset, load_dataset
from aiaas.data.partitioners import assign
from aiaas.schemas.errors import AiaasError, ErrorCode
from aiaas.schemas.jobs import DataSpec, JobSpec
from aiaas.schemas.training import DATA_INFO_KEY, DataBatch
from aiaas.streams import codecs
from aiaas.streams.admin import Admin
from aiaas.streams.envelope import Sealer, configured
from aiaas.streams.lifecycle import stop_consumer
from aiaas.streams.producer import Producer
from aiaas.streams.retry import started
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics, TopicSpec

TEST_BATCH_ROWS = 1024


class PushReport(BaseModel):
    """What ``push`` wrote: rows, batches and classes per partition, and the test split."""

    job_id: str
    data_topic: str
    test_topic: str
    strategy: str
    partitions: int
    task: str
    n_features: int
    n_classes: int
    train_rows: int
    test_rows: int
    rows_per_partition: dict[int, int]
    batches_per_partition: dict[int, int]
    classes_per_partition: dict[int, int] = Field(default_factory=dict)
    test_batches: int = 0
    bytes_written: int = 0
    seconds: float = 0.0


def job_topics(settings: Settings, job_id: str, partitions: int) -> list[TopicSpec]:
    """Every topic a training job uses (data with ``partitions`` partitions)."""
    t = Topics(settings)
    return [t.train_data(job_id, partitions), t.train_test(job_id), t.train_grads(job_id),
            t.train_params(job_id), t.train_metrics(job_id)]


async def _check_empty(settings: Settings, spec: TopicSpec, admin: Admin) -> None:
    """Refuse a data topic with another partition count or with records already in it."""
    have = await admin.partitions(spec.name)
    if have != spec.partitions:
        raise AiaasError("data topic exists with another partition count", code=ErrorCode.CONFLICT,
                         field="data.partitions", topic=spec.name, partitions=have, wanted=spec.partitions)
    consumer = await started(lambda: AIOKafkaConsumer(**settings.common_kwargs(), enable_auto_commit=False),
                             settings, f"reading the end offsets of {spec.name}")
    try:
        ends = await consumer.end_offsets([TopicPartition(spec.name, p) for p in range(have)])
    finally:
        await stop_consumer(consumer)
    if any(ends.values()):
        raise AiaasError("data topic already holds records (pushed before?)", code=ErrorCode.CONFLICT,
                         topic=spec.name, records=sum(ends.values()))


def _batches(x: np.ndarray, y: np.ndarray, rows: int) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(x[i:i + rows], y[i:i + rows]) for i in range(0, len(x), rows)]


def _x_wire(x: np.ndarray) -> np.ndarray:
    """float32 features, or int64 token rows (input_ids then attention_mask) as they are."""
    return np.ascontiguousarray(x, np.int64 if x.dtype == np.int64 else np.float32)


def _y_wire(y: np.ndarray, task: str) -> np.ndarray:
    return y.astype(np.int64) if task == "classification" else y.astype(np.float32)


async def _send_split(
    prod: Producer, topic: str, batches: list[tuple[int, np.ndarray, np.ndarray]],
    header: DataBatch, task: str, sealer: Sealer | None = None,
) -> tuple[int, list[asyncio.Future[RecordMetadata]]]:
    """Queue (partition, x, y) batches (sealed under the tenant's data key when ``sealer`` has
    one, docs/security.md); returns bytes queued and the ack futures."""
    futures, size = [], 0
    data_key = sealer.key_for() if sealer is not None else None
    for i, (part, xb, yb) in enumerate(batches):
        head = header.model_copy(update={"batch_index": header.batch_index + i, "rows": len(xb)})
        value = codecs.pack(head, {"x": _x_wire(xb), "y": _y_wire(yb, task)})
        headers: list[tuple[str, bytes]] = []
        if sealer is not None and data_key is not None:
            value, headers = sealer.seal_record(value, headers, data_key)
        size += len(value)
        futures.append(await prod.send(topic, value, key=f"{header.split}:{head.batch_index}",
                                       headers=headers, partition=part))
    return size, futures


def _layout(ds: Dataset, d: DataSpec) -> tuple[np.ndarray, list[tuple[int, np.ndarray, np.ndarray]]]:
    """Partition of each train row and the train batches, partition by partition."""
    parts = assign(d.strategy, ds.x_train, ds.y_train, d.partitions, d.seed)
    batches = []
    for p in range(d.partitions):
        rows = np.flatnonzero(parts == p)
        batches += [(p, xb, yb) for xb, yb in _batches(ds.x_train[rows], ds.y_train[rows], d.batch_rows)]
    return parts, batches


async def push(settings: Settings, spec: JobSpec, dataset: Dataset | None = None) -> PushReport:
    """Ensure the job's topics and write its train batches and test split; returns what was written."""
    return await push_data(settings, spec.job_id, spec.data, dataset)


async def push_data(
    settings: Settings, job_id: str, data: DataSpec, dataset: Dataset | None = None
) -> PushReport:
    """``push`` for callers without a full JobSpec (the CLI's ``--job/--source`` form)."""
    started = time.perf_counter()
    ds = dataset if dataset is not None else await asyncio.to_thread(load_dataset, data)
    topics = job_topics(settings, job_id, data.partitions)
    data_topic, test_topic = topics[0], topics[1]
    async with Admin(settings) as admin:
        await admin.ensure_topics(topics)
        await _check_empty(settings, data_topic, admin)
    parts, train = _layout(ds, data)
    test = [(0, xb, yb) for xb, yb in _batches(ds.x_test, ds.y_test, TEST_BATCH_ROWS)]
    base = DataBatch(job_id=job_id, batch_index=0, rows=1, strategy=data.strategy)
    info = describe(job_id, data, ds).pack()  # shapes, scaling, classes: not sealed
    sealer = configured()  # AIAAS_DATA_KEY_TENANT's key seals the rows, when one is set
    async with Producer(settings) as prod:
        f0 = await prod.send(test_topic.name, info, key=DATA_INFO_KEY, partition=0)
        n1, f1 = await _send_split(prod, data_topic.name, train, base, ds.task, sealer)
        n2, f2 = await _send_split(prod, test_topic.name, test, base.model_copy(update={"split": "test"}),
                                   ds.task, sealer)
        await asyncio.gather(f0, *f1, *f2)
    return PushReport(
        job_id=job_id, data_topic=data_topic.name, test_topic=test_topic.name, strategy=data.strategy,
        partitions=data.partitions, task=ds.task, n_features=ds.n_features, n_classes=ds.n_classes,
        train_rows=ds.train_rows, test_rows=ds.test_rows, test_batches=len(test),
        bytes_written=len(info) + n1 + n2,
        seconds=time.perf_counter() - started, **_counts(ds, parts, train, data.partitions),
    )


def _counts(
    ds: Dataset, parts: np.ndarray, train: list[tuple[int, np.ndarray, np.ndarray]], n: int
) -> dict[str, dict[int, int]]:
    rows = np.bincount(parts, minlength=n)
    batches = np.bincount(np.asarray([b[0] for b in train], np.int64), minlength=n)
    classes = {p: len(np.unique(ds.y_train[parts == p])) for p in range(n)} \
        if ds.task == "classification" else {}
    return {"rows_per_partition": {p: int(c) for p, c in enumerate(rows)},
            "batches_per_partition": {p: int(c) for p, c in enumerate(batches)},
            "classes_per_partition": classes}
