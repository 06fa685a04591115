"""Continuous training from the user's topic under SIGKILL (real processes, real broker).

- a continuous trainer is killed and started again under its worker id: it resumes from the feed's
  committed positions (one window back, not the topic's start) and, after a concept drift, the job
  promotes a version that follows it;
- the aggregator is killed and started again: it resumes from its last checkpoint (the version
  continues), compares candidates with the production version the registry serves, and promotions
  go on after the drift.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from aiaas.agents.aggregator.checkpoint import find_latest
from aiaas.agents.aggregator.server import Aggregator
from aiaas.agents.launcher import LocalJob
from aiaas.agents.trainer.settings import TrainerSettings
from aiaas.agents.trainer.worker import Trainer
from aiaas.registry.store import Registry
from aiaas.schemas.jobs import JobSpec
from aiaas.streams.jobs import submit
from aiaas.streams.lifecycle import cancel_all
from aiaas.streams.settings import Settings
from tests.driftscenario import GOOD, Prober, continuous_spec, log_if_failed
from tests.sourcestreams import PERMUTATION, digits_split, make_topic, produce, records

pytestmark = pytest.mark.timeout(420)  # above the sum of the tests' own waits (120 + 60 + 150 s)
PRE, POST = 6000, 6000


class Job:
    """Whatever is SIGKILLed runs as a process (``LocalJob``), the rest as tasks of this process."""

    def __init__(self, settings: Settings, spec: JobSpec, log_dir: Path) -> None:
        self.settings, self.spec = settings, spec
        self.procs = LocalJob(settings, spec, log_dir=log_dir, push_data=False)
        self.parts: list[Aggregator | Trainer] = []
        self.tasks: list[asyncio.Task[Any]] = []

    async def start(self, part: Aggregator | Trainer) -> None:
        self.parts.append(part)
        await part.start()
        self.tasks.append(task := asyncio.create_task(part.run()))
        task.add_done_callback(log_if_failed)

    async def close(self) -> None:
        await cancel_all(self.tasks)
        await asyncio.gather(*(p.stop() for p in self.parts), return_exceptions=True)
        await self.procs.stop()


@contextlib.asynccontextmanager
async def stream_job(settings: Settings, name: str, tmp_path: Path) -> AsyncIterator[tuple[Job, Prober, Any]]:
    topic = f"{settings.topic_prefix}user.{name}"
    await make_topic(settings, topic)
    data = digits_split()
    await produce(settings, topic, records(data[0], data[1], 0, PRE))
    spec = continuous_spec(name, topic)
    await submit(settings, spec)
    job = Job(settings, spec, tmp_path)
    async with Registry(settings) as reg:
        try:
            yield job, Prober(reg, spec.model_name), data
        finally:
            await job.close()


async def drift_is_followed(settings: Settings, job: Job, prober: Prober, data: Any) -> int:
    """Permute the labels on the topic; the version production serves then follows (returns it)."""
    x, y, px, py = data
    await produce(settings, job.spec.source.topic if job.spec.source else "",
                  records(x, y, PRE, POST, label_map=PERMUTATION))
    version, acc = await prober.wait_until(px, PERMUTATION[py], GOOD, 150.0)  # generous: a fault test
    assert acc >= GOOD
    return version


async def test_sigkill_continuous_trainer_resumes_from_committed_offsets(
    settings: Settings, tmp_path: Path
) -> None:
    async with stream_job(settings, "kill-ctrainer", tmp_path) as (job, prober, data):
        _, _, px, py = data
        victim = await job.procs.start_trainer("victim")
        await job.start(Aggregator(settings, job.spec))
        await job.start(Trainer(settings, job.spec, TrainerSettings(worker_id="survivor")))
        first, _ = await prober.wait_until(px, py, GOOD, 90.0)
        assert "trainer victim ready with" in job.procs.log_text("victim")  # it was training
        job.procs.kill(victim, signal.SIGKILL)
        assert await victim.wait() == -signal.SIGKILL
        again = Trainer(settings, job.spec, TrainerSettings(worker_id="victim"))
        await job.start(again)
        assert again.feed is not None
        async with asyncio.timeout(30):
            await again.feed.filed.wait()
        # resumed one window back from the committed positions, not from the topic's start
        resumed = again.feed.resumed_at
        assert resumed is not None and all(p > 0 for p in resumed.values()), resumed
        assert sum(resumed.values()) < PRE
        followed = await drift_is_followed(settings, job, prober, data)
    assert followed > first


async def test_sigkill_continuous_aggregator_resumes_and_promotions_go_on(
    settings: Settings, tmp_path: Path
) -> None:
    async with stream_job(settings, "kill-cagg", tmp_path) as (job, prober, data):
        _, _, px, py = data
        first_agg = await job.procs.start_aggregator()
        for wid in ("a", "b"):
            await job.start(Trainer(settings, job.spec, TrainerSettings(worker_id=wid)))
        first, _ = await prober.wait_until(px, py, GOOD, 120.0)
        async with asyncio.timeout(60):
            while (await find_latest(settings, job.spec.job_id)).checkpoint is None:  # noqa: ASYNC110
                await asyncio.sleep(0.5)  # written by another process: the broker is asked again
        job.procs.kill(first_agg, signal.SIGKILL)
        assert await first_agg.wait() == -signal.SIGKILL
        second = Aggregator(settings, job.spec)
        await job.start(second)
        assert second.resumed_from is not None and second.resumed_from > 0
        assert second.gate is not None and second.gate.production is not None
        assert second.gate.production.version == first  # it compares with what serves
        followed = await drift_is_followed(settings, job, prober, data)
    assert followed > first
