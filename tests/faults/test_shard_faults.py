"""A sharded parameter server under a fault on the real broker: shard 1's process is killed with
SIGKILL mid-job; the launcher (``LocalJob.wait``) starts it again, it resumes from its own last
checkpoint, replays the gradients after it up to where shard 0 stands, and the job completes its
step budget. Shard 0 and the trainer run in this process (fewer interpreters to start); shard 1
writes its versions and checkpoints in 2 KiB chunks, so its resume and its readers reassemble them.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import pytest
from aiokafka.structs import TopicPartition

from aiaas.agents.aggregator.server import Aggregator
from aiaas.agents.launcher import LocalJob
from aiaas.agents.trainer.settings import TrainerSettings
from aiaas.agents.trainer.worker import Trainer
from aiaas.schemas.jobs import JobSpec
from aiaas.schemas.training import CHECKPOINT_KEY
from aiaas.streams.lifecycle import cancel_all
from aiaas.streams.readers import open_assigned
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics
from tests.shardjobs import shard_job

pytestmark = pytest.mark.timeout(240)
STEPS = 150


def spec(job_id: str) -> JobSpec:
    return shard_job(job_id, shards=2, steps=STEPS, eval_interval=50, checkpoint_interval=5,
                         sync={"mode": "sync", "straggler_deadline_ms": 2000})


async def checkpoint_committed(settings: Settings, topic: str, timeout_s: float = 90.0) -> bytes:
    """Wait until a checkpoint transaction on ``topic`` has committed (read_committed sees it);
    the key of its first record."""
    tp = TopicPartition(topic, 0)
    consumer = await open_assigned(settings, tp)
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                for r in (await consumer.getmany(tp, timeout_ms=500)).get(tp, []):
                    if (r.key or b"").startswith(CHECKPOINT_KEY.encode()):
                        return bytes(r.key)
    finally:
        await consumer.stop()


async def test_sigkill_one_shard_mid_job_the_job_completes(settings: Settings, tmp_path: Path) -> None:
    job = spec("kill-shard")
    procs = LocalJob(settings, job, log_dir=tmp_path, env={"AIAAS_CHUNK_BYTES": "2048"})
    lead = Aggregator(settings, job, shard=0)
    trainer = Trainer(settings, job, TrainerSettings(worker_id="w0"))
    tasks: list[asyncio.Task[Any]] = []
    try:
        await procs.prepare()
        victim = await procs.start_aggregator(1)
        await asyncio.gather(lead.start(), trainer.start())
        tasks = [asyncio.create_task(lead.run()), asyncio.create_task(trainer.run())]
        key = await checkpoint_committed(settings, Topics(settings).train_params(job.job_id).name + ".s1")
        assert key == CHECKPOINT_KEY.encode() + b"#chunk0"  # shard 1's checkpoints go in chunks
        procs.kill(victim, signal.SIGKILL)
        assert await victim.wait() == -signal.SIGKILL
        status = await procs.wait(180)  # revives shard 1
        await asyncio.gather(*tasks)
    finally:
        await cancel_all(tasks)
        await asyncio.gather(lead.stop(), trainer.stop(), procs.stop(), return_exceptions=True)
    assert procs.restarts == {1: 1}
    assert status.state == "succeeded", status.error
    assert status.version == STEPS
    revived = procs.log_text("aggregator-s1")
    assert "resumed from checkpoint" in revived and "shard 1 of 2" in revived
