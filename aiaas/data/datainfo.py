"""What a job's data is (``DataInfo``): written by the push, read before a job starts and at export.

The push puts one ``DataInfo`` record (key ``info``) on ``train.<job>.test`` ahead of the test
batches. It carries the preprocessing training saw (feature means and standard deviations, the
regression target scaling, the class values), which the exported model folds into its graph, and the
data's shape, which ``check_fit`` compares with the spec before any process starts: a spec that does
not fit its data is refused in one line naming both numbers instead of trainers waiting forever.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np
from aiokafka import TopicPartition

from aiaas.data.datasets import Dataset
from aiaas.schemas.errors import AiaasError, ErrorCode, InvalidMessage
from aiaas.schemas.jobs import DataSpec, JobSpec
from aiaas.schemas.training import DATA_INFO_KEY, DataInfo
from aiaas.streams import codecs
from aiaas.streams.lifecycle import stop_consumer
from aiaas.streams.readers import open_assigned
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics


@dataclass(frozen=True, slots=True)
class JobData:
    """A DataInfo header with its feature statistics."""

    info: DataInfo
    x_mean: np.ndarray
    x_std: np.ndarray
    # a job trained from a declared source: partition -> [first, end) offsets it reads (end -1:
    # unbounded), fixed once by its aggregator so every trainer reads the same range
    ranges: dict[int, tuple[int, int]] | None = None

    def pack(self) -> bytes:
        tensors = {"x_mean": self.x_mean, "x_std": self.x_std}
        if self.ranges is not None:
            tensors["src_ranges"] = np.asarray([(p, lo, hi) for p, (lo, hi) in sorted(self.ranges.items())],
                                               np.int64).reshape(-1, 3)
        return codecs.pack(self.info, tensors)

    @classmethod
    def unpack(cls, value: bytes | None) -> JobData:
        info, tensors = codecs.unpack(value, DataInfo)
        mean, std = tensors.get("x_mean"), tensors.get("x_std")
        if mean is None or std is None or mean.shape != (info.n_features,) or std.shape != mean.shape:
            raise InvalidMessage("data info needs x_mean and x_std of n_features values",
                                 n_features=info.n_features, found=sorted(tensors))
        src = tensors.get("src_ranges")
        ranges = None if src is None else {int(p): (int(lo), int(hi)) for p, lo, hi in src.reshape(-1, 3)}
        return cls(info, mean.astype(np.float32), std.astype(np.float32), ranges)


def describe(job_id: str, data: DataSpec, ds: Dataset) -> JobData:
    """The DataInfo of ``ds`` as pushed with ``data``."""
    target_dim = int(ds.y_train.shape[1]) if ds.y_train.ndim == 2 else 1
    info = DataInfo(
        job_id=job_id, source=data.source, task=ds.task, n_features=ds.n_features,
        n_classes=ds.n_classes, classes=[float(c) for c in ds.classes], target_dim=target_dim,
        y_mean=ds.y_mean, y_std=ds.y_std, train_rows=ds.train_rows, test_rows=ds.test_rows,
        strategy=data.strategy, partitions=data.partitions)
    return JobData(info, np.asarray(ds.x_mean, np.float32), np.asarray(ds.x_std, np.float32))


def check_fit(spec: JobSpec, info: DataInfo) -> None:
    """Raise a BAD_REQUEST naming the spec's field and the data's number when they disagree."""
    m, what = spec.model, f"the data of job {info.job_id}"
    if m.kind == "transformer-classifier":
        _check_text(spec, info)
    if m.input_dim != info.n_features:
        raise _misfit(f"model.input_dim is {m.input_dim} but {what} has {info.n_features} features",
                      "model.input_dim", m.input_dim, info.n_features)
    if spec.loss == "cross_entropy":
        if info.task != "classification":
            raise _misfit(f"loss cross_entropy needs class labels but {what} is a regression task "
                          "(use loss: mse)", "loss", spec.loss, info.task)
        if m.output_dim < info.n_classes:
            raise _misfit(f"model.output_dim is {m.output_dim} but {what} has {info.n_classes} classes",
                          "model.output_dim", m.output_dim, info.n_classes)
    elif m.output_dim != info.target_dim:
        raise _misfit(f"model.output_dim is {m.output_dim} but {what} has {info.target_dim} target "
                      f"value(s) per row (loss {spec.loss})", "model.output_dim", m.output_dim,
                      info.target_dim)
    if spec.data.partitions != info.partitions:
        raise _misfit(f"data.partitions is {spec.data.partitions} but {what} was pushed to "
                      f"{info.partitions} partitions", "data.partitions", spec.data.partitions,
                      info.partitions)


def _check_text(spec: JobSpec, info: DataInfo) -> None:
    """A text model reads token rows made by its own tokenizer at its own length."""
    m, text = spec.model, spec.data.text
    assert m.kind == "transformer-classifier"
    if info.source != "debian" or spec.data.source != "debian":
        raise _misfit(f"model kind transformer-classifier needs text data (data.source: debian), not "
                      f"{info.source}", "data.source", spec.data.source, info.source)
    if text.tokenizer != m.pretrained:
        raise _misfit(f"data.text.tokenizer is {text.tokenizer} but model.pretrained is {m.pretrained}",
                      "data.text.tokenizer", text.tokenizer, m.pretrained)
    if info.n_features != m.input_dim:
        raise _misfit(f"model.max_seq_len is {m.max_seq_len} but the data of job {info.job_id} was "
                      f"tokenized to {info.n_features // 2} tokens (data.text.max_length)",
                      "model.max_seq_len", m.max_seq_len, info.n_features // 2)


def _misfit(reason: str, field: str, spec_value: object, data_value: object) -> AiaasError:
    return AiaasError(reason, code=ErrorCode.BAD_REQUEST, field=field, spec=spec_value, data=data_value)


async def read_info(settings: Settings, job_id: str) -> JobData | None:
    """The job's DataInfo from its test topic (None when the topic holds none: not pushed yet, or
    pushed by an older version)."""
    tp = TopicPartition(Topics(settings).train_test(job_id).name, 0)
    consumer = await open_assigned(settings)
    try:
        if tp.topic not in await consumer.topics():  # partitions_for_topic is not a coroutine
            return None
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        while await consumer.position(tp) < end:
            for rec in (await consumer.getmany(tp, timeout_ms=500)).get(tp, []):
                if rec.key == DATA_INFO_KEY.encode():
                    return JobData.unpack(rec.value)
            await asyncio.sleep(0)
        return None
    finally:
        await stop_consumer(consumer)
