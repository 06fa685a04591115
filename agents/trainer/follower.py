"""Follow ``train.<job>.params``: always know the newest parameter version, wake whoever waits for one.

Only records keyed ``latest`` matter here (checkpoints, keyed ``checkpoint``, are the aggregator's).
The reader runs read_uncommitted so an open checkpoint transaction never holds back a new version;
of a batch of records only the newest is decoded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import numpy as np
from aiokafka.structs import TopicPartition

from aiaas.ml.compression import to_float
from aiaas.schemas.errors import InvalidMessage
from aiaas.schemas.training import PARAMS_KEY, ParameterSnapshot
from aiaas.streams import codecs
from aiaas.streams.headers import SENT_AT
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics

from .reader import BackgroundReader

log = logging.getLogger(__name__)
LATEST = PARAMS_KEY.encode()
BACKLOG = 64  # how far back from the end a newcomer looks for the newest version
LOG_APPEND_TIME = 1


@dataclass(slots=True)
class Snapshot:
    offset: int
    header: ParameterSnapshot
    tensors: dict[str, np.ndarray]
    sent_at: float  # the aggregator's send time (epoch s)
    received_at: float
    appended_at: float | None = None  # the broker's append time (LogAppendTime topics)

    def phases(self) -> dict[str, float]:
        """Transit of this version (ms): total, and produce / fetch when the broker stamped it."""
        out = {"params_transit": max(0.0, (self.received_at - self.sent_at) * 1000)}
        if self.appended_at is not None:
            produce = max(0.0, (self.appended_at - self.sent_at) * 1000)
            out["params_produce"] = min(out["params_transit"], produce)
            out["params_fetch"] = out["params_transit"] - out["params_produce"]
        return out

    @property
    def version(self) -> int:
        return self.header.version


class ParamFollower(BackgroundReader):
    """Background reader of the parameter topic with ``wait_newer``."""

    def __init__(self, settings: Settings, job_id: str) -> None:
        super().__init__(settings, "param-follower")
        self.tp = TopicPartition(Topics(settings).train_params(job_id).name, 0)
        self.latest: Snapshot | None = None
        self._changed = asyncio.Condition()

    async def start(self) -> None:
        consumer = await self._open()
        consumer.assign([self.tp])
        end = (await consumer.end_offsets([self.tp]))[self.tp]
        consumer.seek(self.tp, max(0, end - BACKLOG))
        self._spawn()

    async def _read(self) -> None:
        assert self._consumer is not None
        while True:
            batch = await self._consumer.getmany(self.tp, timeout_ms=500)
            newest = None
            for rec in batch.get(self.tp, []):
                if rec.key == LATEST and rec.value is not None:
                    newest = rec
            if newest is None:
                continue
            try:
                header, tensors = codecs.unpack(newest.value, ParameterSnapshot)
                tensors = {k: to_float(v) if v.dtype == np.float16 else v for k, v in tensors.items()}
            except InvalidMessage as exc:
                log.warning("skipping undecodable parameter record @%d: %s", newest.offset, exc.reason)
                continue
            sent = _sent_at(newest.headers, newest.timestamp / 1000)
            appended = newest.timestamp / 1000 if newest.timestamp_type == LOG_APPEND_TIME else None
            snap = Snapshot(newest.offset, header, tensors, sent, time.time(), appended)
            async with self._changed:
                self.latest = snap
                self._changed.notify_all()

    async def wait_newer(self, than_offset: int, timeout_s: float | None = None) -> Snapshot | None:
        """The newest snapshot once one past ``than_offset`` exists; None after ``timeout_s``."""
        async with self._changed:
            try:
                async with asyncio.timeout(timeout_s):
                    await self._changed.wait_for(
                        lambda: self.latest is not None and self.latest.offset > than_offset)
            except TimeoutError:
                return None
            return self.latest


def _sent_at(headers: object, default: float) -> float:
    for key, value in headers or ():  # type: ignore[attr-defined]
        if key == SENT_AT:
            try:
                return float(value)
            except ValueError:
                return default
    return default
