"""Follow ``train.<job>.params`` (one copy per shard): always know the newest parameter version, wake
whoever waits for one.

Only records keyed ``latest`` matter here (checkpoints, keyed ``checkpoint``, are the aggregator's);
versions larger than a record arrive in chunks and are put back together
(``aiaas.streams.latest``). The reader runs read_uncommitted so an open checkpoint transaction never
holds back a new version; of a poll's records only the newest complete version is decoded.

With ``aggregator.shards: N`` each shard publishes its own tensors on its own topic, and a version
is the set of shard versions of one round: in sync and hybrid mode a snapshot is made once every
shard stands at the same version (a shard that restarted from its checkpoint first replays up to
the others); in async mode once every shard has published past the last snapshot. The job is over
when every shard has published its final version.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

import numpy as np
from aiokafka.structs import TopicPartition

from aiaas.ml.compression import to_float
from aiaas.ml.shards import shard_name
from aiaas.schemas.training import PARAMS_KEY, ParameterSnapshot
from aiaas.streams import codecs
from aiaas.streams.headers import SENT_AT
from aiaas.streams.latest import Latest, LatestReader
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics

from .reader import BackgroundReader

log = logging.getLogger(__name__)
LATEST = PARAMS_KEY.encode()
BACKLOG = 64  # how far back from the end a newcomer first looks for the newest version
LOG_APPEND_TIME = 1


@dataclass(slots=True)
class Snapshot:
    offset: int  # grows with every newer snapshot (sharded: the sum of the shards' record offsets)
    header: ParameterSnapshot
    tensors: dict[str, np.ndarray]
    sent_at: float  # the aggregator's send time (epoch s)
    received_at: float
    appended_at: float | None = None  # the broker's append time (LogAppendTime topics)
    versions: tuple[int, ...] = ()  # each shard's version (one entry when unsharded)
    offsets: tuple[int, ...] = field(default=())  # each shard's record offset
    released: bool = False  # its tensors were dropped once loaded (``ParamFollower.release``)

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


def decode(got: Latest) -> Snapshot:
    """One shard's record as a Snapshot (float16 tensors widened); InvalidMessage on junk."""
    header, tensors = codecs.unpack(got.value, ParameterSnapshot)
    tensors = {k: to_float(v) if v.dtype == np.float16 else v for k, v in tensors.items()}
    sent = _sent_at(got.headers, got.timestamp_ms / 1000)
    appended = got.timestamp_ms / 1000 if got.timestamp_type == LOG_APPEND_TIME else None
    return Snapshot(got.offset, header, tensors, sent, time.time(), appended, (header.version,),
                    (got.offset,))


def combine(parts: list[Snapshot], lockstep: bool, last: Snapshot | None) -> Snapshot | None:
    """The shards' newest versions as one snapshot, or None while they do not make a new one."""
    if len(parts) == 1:
        return parts[0]
    final = all(p.header.final for p in parts)
    if not final:
        if any(p.released for p in parts):  # loaded already (their offsets say so too)
            return None
        if lockstep and len({p.version for p in parts}) != 1:
            return None
        if last is not None and any(p.offset <= o for p, o in zip(parts, last.offsets, strict=True)):
            return None
    tensors: dict[str, np.ndarray] = {}
    for p in parts:
        tensors.update(p.tensors)
    lead = parts[0]
    header = lead.header.model_copy(update={"final": final, "samples": lead.header.samples})
    return Snapshot(sum(p.offset for p in parts), header, tensors, min(p.sent_at for p in parts),
                    max(p.received_at for p in parts), None, tuple(p.version for p in parts),
                    tuple(p.offset for p in parts))


class ParamFollower(BackgroundReader):
    """Background reader of the parameter topic(s) with ``wait_newer``."""

    def __init__(self, settings: Settings, job_id: str, shards: int = 1, lockstep: bool = True) -> None:
        super().__init__(settings, "param-follower")
        name = Topics(settings).train_params(job_id).name
        self.tps = [TopicPartition(shard_name(name, i), 0) for i in range(shards)]
        self.tp = self.tps[0]
        self.lockstep = lockstep
        self.latest: Snapshot | None = None
        self._parts: dict[TopicPartition, Snapshot] = {}
        self._reader: LatestReader | None = None
        self._changed = asyncio.Condition()

    async def start(self) -> None:
        consumer = await self._open()
        self._reader = LatestReader(consumer, self.tps, LATEST, backlog=BACKLOG,
                                    max_bytes=self.settings.max_message_bytes * 64 + (1 << 26))
        await self._reader.start()
        self._spawn()

    async def _read(self) -> None:
        assert self._reader is not None
        while True:
            got = await self._reader.decoded(decode, 500)
            self._parts.update(got)
            if not got or len(self._parts) < len(self.tps):
                continue
            snap = combine([self._parts[tp] for tp in self.tps], self.lockstep, self.latest)
            if snap is None:
                continue
            async with self._changed:
                self.latest = snap
                self._changed.notify_all()

    def release(self, snap: Snapshot) -> None:
        """Drop ``snap``'s tensors (and its shards' parts', when they are still the newest): a mode
        that loaded it into its model and needs no base (all but hybrid) holds no copy of a version
        beside the model's. Safe from the worker thread: the dicts are replaced, never changed, so
        the reader's ``combine`` sees either one whole."""
        snap.tensors, snap.released = {}, True
        for tp, offset in zip(self.tps, snap.offsets, strict=False):
            part = self._parts.get(tp)
            if part is not None and part.offset == offset:
                part.tensors, part.released = {}, True

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
