"""Training under faults on the real broker: processes are killed with SIGKILL, never asked to stop.

- one of two trainers dies mid-job: sync mode does not hang (straggler deadline, membership) and the
  job still meets its target;
- the aggregator dies mid-job and is started again: it resumes from its last transactional
  checkpoint (the parameter version continues, it does not restart at 0) and finishes;
- gradients with wrong shapes, NaN/Inf or junk bytes are rejected, counted and logged; the job goes on.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from aiaas.agents.aggregator.server import Aggregator
from aiaas.agents.launcher import LocalJob, run_in_process
from aiaas.agents.trainer.settings import TrainerSettings
from aiaas.agents.trainer.worker import Trainer
from aiaas.data.datapush import push
from aiaas.schemas.jobs import JobSpec
from aiaas.schemas.training import CHECKPOINT_KEY, PARAMS_KEY, GradientMessage
from aiaas.streams import codecs
from aiaas.streams.jobs import aggregator_group, params_versions, submit
from aiaas.streams.lifecycle import cancel, cancel_all
from aiaas.streams.producer import Producer
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics

pytestmark = pytest.mark.timeout(240)
SHAPES = {"0.weight": (128, 64), "0.bias": (128,), "2.weight": (10, 128), "2.bias": (10,)}


def spec(job_id: str, **over: Any) -> JobSpec:
    base: dict[str, Any] = {
        "job_id": job_id, "model": {"input_dim": 64, "hidden": [128], "output_dim": 10},
        "optimizer": {"name": "adam", "lr": 5e-4}, "batch_size": 64, "epochs": 60,
        "eval_interval": 5, "checkpoint_interval": 10,
        "sync": {"mode": "sync", "straggler_deadline_ms": 500},
        "target": {"metric": "test_accuracy", "value": 0.95},
        "data": {"source": "digits", "partitions": 2, "strategy": "stratified"},
    }
    return JobSpec.model_validate(base | over)


class VersionLog:
    """Every parameter version the job publishes, in log order (a background reader)."""

    def __init__(self, settings: Settings, job_id: str) -> None:
        self.versions: list[int] = []
        self.arrived: dict[int, float] = {}  # version -> monotonic time its first record was read
        self.next_offset = 0
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._read(settings, job_id))

    async def _read(self, settings: Settings, job_id: str) -> None:
        async for offset, snap in params_versions(settings, job_id):
            self.versions.append(snap.version)
            self.arrived.setdefault(snap.version, time.monotonic())
            self.next_offset = offset + 1
            self._changed.set()

    async def reach(self, version: int, timeout_s: float = 90.0) -> None:
        async with asyncio.timeout(timeout_s):
            while not self.versions or max(self.versions) < version:
                self._changed.clear()
                await self._changed.wait()

    async def caught_up(self, end_offset: int, timeout_s: float = 30.0) -> None:
        """Wait until every version record before ``end_offset`` has been read."""
        async with asyncio.timeout(timeout_s):
            while self.next_offset < end_offset:
                self._changed.clear()
                await self._changed.wait()

    async def close(self) -> None:
        await cancel(self._task, quiet=True)


class Cluster:
    """The job's processes: whatever is to be SIGKILLed runs as a real process (``LocalJob``), the
    rest runs in this process (start-up on a 2-core machine is mostly importing torch)."""

    def __init__(self, settings: Settings, job_spec: JobSpec, log_dir: Path) -> None:
        self.settings, self.spec = settings, job_spec
        self.procs = LocalJob(settings, job_spec, log_dir=log_dir, push_data=False, pin_cpus=True)
        self.tasks: list[asyncio.Task[Any]] = []
        self.parts: list[Aggregator | Trainer] = []

    async def prepare(self) -> None:
        await submit(self.settings, self.spec)
        await push(self.settings, self.spec)

    def trainer(self, worker_id: str) -> Trainer:
        t = Trainer(self.settings, self.spec, TrainerSettings(worker_id=worker_id))
        self.parts.append(t)
        return t

    def aggregator(self) -> Aggregator:
        a = Aggregator(self.settings, self.spec)
        self.parts.append(a)
        return a

    def run(self, part: Aggregator | Trainer) -> asyncio.Task[Any]:
        task = asyncio.create_task(part.run())
        self.tasks.append(task)
        return task

    async def close(self) -> None:
        await cancel_all(self.tasks)
        await asyncio.gather(*(p.stop() for p in self.parts), return_exceptions=True)
        await self.procs.stop()


async def test_sigkill_one_of_two_trainers_sync_job_still_meets_target(
    settings: Settings, tmp_path: Path
) -> None:
    job_spec = spec("kill-trainer")
    cluster = Cluster(settings, job_spec, tmp_path)
    versions = VersionLog(settings, job_spec.job_id)
    try:
        await cluster.prepare()
        victim = await cluster.procs.start_trainer("victim")
        agg, survivor = cluster.aggregator(), cluster.trainer("survivor")
        await asyncio.gather(agg.start(), survivor.start())  # the rendezvous waits for the victim too
        finished = cluster.run(agg)
        cluster.run(survivor)
        await versions.reach(8)
        assert agg.members.live() == {"victim", "survivor"}
        cluster.procs.kill(victim, signal.SIGKILL)
        assert await victim.wait() == -signal.SIGKILL
        killed_at, killed = max(versions.versions), time.monotonic()
        async with asyncio.timeout(150):
            status = await finished
    finally:
        await versions.close()
        await cluster.close()
    assert status.state == "succeeded", status.error
    assert status.metrics["test_accuracy"] >= 0.95
    assert "cpus [0]" in (tmp_path / "victim.log").read_text()  # the launcher pinned trainer 1 to CPU 0
    rounds_after = status.version - killed_at
    assert rounds_after > 5  # the job went on well past the kill
    # only the first round after the kill waited out the straggler deadline, not every round
    deadline_s = job_spec.sync.straggler_deadline_ms / 1000
    after_kill_s = versions.arrived[status.version] - killed
    assert after_kill_s < 2 * deadline_s + rounds_after * deadline_s / 4, (after_kill_s, rounds_after)


async def test_sigkill_aggregator_resumes_from_its_checkpoint(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="aiaas.agents.aggregator")
    job_spec = spec("kill-aggregator")
    cluster = Cluster(settings, job_spec, tmp_path)
    versions = VersionLog(settings, job_spec.job_id)
    try:
        await cluster.prepare()
        first = await cluster.procs.start_aggregator()
        trainers = [cluster.trainer("a"), cluster.trainer("b")]
        await asyncio.gather(*(t.start() for t in trainers))
        for t in trainers:
            cluster.run(t)
        await versions.reach(25)
        await _checkpoint_committed(settings, job_spec.job_id)
        cluster.procs.kill(first, signal.SIGKILL)
        assert await first.wait() == -signal.SIGKILL
        await versions.caught_up(await _last_version_offset(settings, job_spec.job_id))
        killed_at, before = max(versions.versions), len(versions.versions)
        second = cluster.aggregator()  # the restart (in this process; same transactional id)
        await second.start()
        async with asyncio.timeout(150):
            status = await cluster.run(second)
    finally:
        await versions.close()
        await cluster.close()
    assert status.state == "succeeded", status.error
    assert status.metrics["test_accuracy"] >= 0.95
    resumed = int(status.metrics["resumed_from_version"])
    # the newest committed checkpoint (a write still open at the kill was aborted by the restart)
    assert job_spec.checkpoint_interval <= resumed <= killed_at
    assert resumed % job_spec.checkpoint_interval == 0
    after = versions.versions[before:]
    assert after and after[0] == resumed and min(after) == resumed  # the version continues, not 0
    assert status.version > resumed
    assert f"resumed from checkpoint {resumed}" in caplog.text
    committed = await _committed_offset(settings, job_spec.job_id)
    assert committed is not None and committed > 0  # offsets went into the checkpoint transactions


async def _checkpoint_committed(settings: Settings, job_id: str, timeout_s: float = 60.0) -> None:
    """Wait until a checkpoint transaction has committed (read_committed sees its record)."""
    tp = TopicPartition(Topics(settings).train_params(job_id).name, 0)
    consumer = AIOKafkaConsumer(**settings.consumer_kwargs(None))  # isolation_level read_committed
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        async with asyncio.timeout(timeout_s):
            while True:
                records = (await consumer.getmany(tp, timeout_ms=500)).get(tp, [])
                if any(r.key == CHECKPOINT_KEY.encode() for r in records):
                    return
    finally:
        await consumer.stop()


async def _committed_offset(settings: Settings, job_id: str) -> int | None:
    """The gradient offset the aggregator's group committed (through its checkpoint transactions)."""
    consumer = AIOKafkaConsumer(**settings.consumer_kwargs(aggregator_group(settings, job_id)))
    await consumer.start()
    try:
        tp = TopicPartition(Topics(settings).train_grads(job_id).name, 0)
        committed: int | None = await consumer.committed(tp)
        return committed
    finally:
        await consumer.stop()


async def _last_version_offset(settings: Settings, job_id: str) -> int:
    """One past the last record the killed aggregator left on the params topic."""
    tp = TopicPartition(Topics(settings).train_params(job_id).name, 0)
    consumer = AIOKafkaConsumer(**settings.consumer_kwargs(None, isolation_level="read_uncommitted"))
    await consumer.start()
    try:
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        consumer.seek(tp, max(0, end - 8))
        last = 0
        while await consumer.position(tp) < end:
            for rec in (await consumer.getmany(tp, timeout_ms=500)).get(tp, []):
                if rec.key == PARAMS_KEY.encode():
                    last = rec.offset + 1
        return last
    finally:
        await consumer.stop()


def _bad_records(job_id: str) -> list[bytes]:
    head = GradientMessage(job_id=job_id, worker_id="mallory", step=1, base_version=0, samples=64)
    wrong = {k: np.zeros((s[0] + 1, *s[1:]), np.float32) for k, s in SHAPES.items()}
    nan = {k: np.zeros(s, np.float32) for k, s in SHAPES.items()}
    nan["2.bias"][3] = np.nan
    inf = {k: np.full(s, np.inf, np.float32) for k, s in SHAPES.items()}
    return [codecs.pack(head, wrong), codecs.pack(head, nan), codecs.pack(head, inf), b"not a gradient"]


async def test_bad_gradients_are_rejected_counted_logged_and_the_job_goes_on(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="aiaas.agents.aggregator.intake")
    job_spec = spec("bad-grads", optimizer={"name": "adam", "lr": 1e-3})
    versions = VersionLog(settings, job_spec.job_id)
    job = asyncio.create_task(run_in_process(settings, job_spec, timeout_s=150))
    try:
        await versions.reach(3)
        async with Producer(settings) as producer:
            for value in _bad_records(job_spec.job_id):
                await producer.send_and_wait(Topics(settings).train_grads(job_spec.job_id).name, value,
                                             key="mallory")
        status = await job
    finally:
        await versions.close()
        await cancel(job, quiet=True)
    assert status.state == "succeeded", status.error
    assert status.metrics["rejected"] == 4
    assert status.metrics["test_accuracy"] >= 0.95
    log = caplog.text
    assert log.count("rejected gradient record") == 4
    assert "wrong shape" in log and "NaN or Inf" in log and "not a tensor record" in log
