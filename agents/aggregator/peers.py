"""Shard 0's view of the other shards of a sharded parameter server (``aggregator.shards: N``).

Every shard steps, publishes and checkpoints its own tensors (``aiaas.ml.shards.plan``); shard 0
also evaluates, reports the job's status and exports, so it follows the others' parameter topics
(newest complete version of each, chunks reassembled) and loads their tensors into its model before
an evaluation and at the end. When it stops it tells them where (a ``stop`` record on each shard's
grads topic, so a shard that restarts from its checkpoint reads it again), then waits for their
final versions (docs/architecture.md, "Sharded parameter server").
"""

from __future__ import annotations

import asyncio
import logging

import numpy as np
from aiokafka.structs import TopicPartition

from aiaas.ml.compression import to_float
from aiaas.ml.shards import plan, shard_name
from aiaas.schemas.errors import InvalidMessage
from aiaas.schemas.jobs import JobSpec
from aiaas.schemas.training import PARAMS_KEY, GradientMessage, ParameterSnapshot
from aiaas.streams import codecs
from aiaas.streams.latest import LatestReader
from aiaas.streams.lifecycle import Service
from aiaas.streams.producer import Producer
from aiaas.streams.readers import open_assigned, stop_reader
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics

from .state import ServerState

log = logging.getLogger(__name__)
LEAD = "shard-0"  # the sender of stop records


class ShardPeers(Service):
    """The newest version of shards 1..N-1 (read_uncommitted, as the trainers read them)."""

    def __init__(self, settings: Settings, spec: JobSpec, producer: Producer) -> None:
        self.settings, self.spec, self.producer = settings, spec, producer
        topics = Topics(settings)
        n = spec.aggregator.shards
        params, grads = topics.train_params(spec.job_id).name, topics.train_grads(spec.job_id).name
        self.tps = {TopicPartition(shard_name(params, i), 0): i for i in range(1, n)}
        self.grads = [shard_name(grads, i) for i in range(1, n)]
        self.latest: dict[int, tuple[ParameterSnapshot, dict[str, np.ndarray]]] = {}
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._reader: LatestReader | None = None

    async def start(self) -> None:
        consumer = await open_assigned(self.settings, isolation_level="read_uncommitted",
                                       fetch_max_wait_ms=20)
        self._reader = LatestReader(consumer, list(self.tps), PARAMS_KEY.encode())
        await self._reader.start()
        self._task = asyncio.create_task(self._read(), name="shard-peers")

    async def stop(self) -> None:
        await stop_reader(self._task, self._reader.consumer if self._reader is not None else None)

    async def _read(self) -> None:
        assert self._reader is not None
        while True:
            got = await self._reader.decoded(lambda new: codecs.unpack(new.value, ParameterSnapshot), 500)
            for tp, (header, tensors) in got.items():
                async with self._changed:
                    self.latest[self.tps[tp]] = header, tensors
                    self._changed.notify_all()

    def load_into(self, state: ServerState) -> list[int]:
        """Load the shards' newest tensors into ``state``'s model; returns their versions (one that
        does not fit its slice of the plan is logged and skipped)."""
        slices = plan(state.all_shapes, self.spec.aggregator.shards)
        versions = []
        for shard, (header, tensors) in sorted(self.latest.items()):
            wide = {k: to_float(v) if v.dtype == np.float16 else v for k, v in tensors.items()}
            try:
                state.load(wide, {k: state.all_shapes[k] for k in slices[shard]})
            except InvalidMessage as exc:
                log.warning("shard %d's version %d does not fit its tensors: %s %s", shard, header.version,
                            exc.reason, exc.details)
                continue
            versions.append(header.version)
        return versions

    async def stop_all(self, version: int) -> None:
        """Tell every other shard to stop at ``version`` (sync/hybrid) or now (async)."""
        header = GradientMessage(job_id=self.spec.job_id, worker_id=LEAD, step=version, base_version=0,
                                 samples=0, payload="stop")
        value = codecs.pack(header, {})
        for topic in self.grads:
            await self.producer.send_and_wait(topic, value, key=LEAD)

    async def finals(self, timeout_s: float) -> list[int]:
        """Wait for every other shard's final version; returns the shards still missing after
        ``timeout_s`` (empty: all final)."""
        def missing() -> list[int]:
            return [i for i in self.tps.values() if i not in self.latest or not self.latest[i][0].final]

        async with self._changed:
            try:
                async with asyncio.timeout(timeout_s):
                    await self._changed.wait_for(lambda: not missing())
            except TimeoutError:
                log.warning("shards %s: no final version within %.0fs", missing(), timeout_s)
            return missing()
