"""Large parameter records and the sharded parameter server on the real broker (issue 17).

One trainer (the same worker id, so the same data order, in every run) and a small MLP in sync
mode, in this process: gradients and versions several times ``chunk_bytes`` travel in chunks and
give the parameters of an unchunked run; ``aggregator.shards: 2`` gives the parameters of one shard.
(The kill of a shard lives in tests/faults/test_shard_faults.py.)
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from aiokafka.structs import TopicPartition

from aiaas.agents.aggregator.server import Aggregator
from aiaas.agents.launcher import load_checked
from aiaas.agents.trainer.settings import TrainerSettings
from aiaas.agents.trainer.worker import Trainer
from aiaas.data.datapush import push
from aiaas.schemas.jobs import JobSpec
from aiaas.schemas.records import JobStatus
from aiaas.streams.jobs import submit
from aiaas.streams.readers import open_assigned
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics
from tests.shardjobs import shard_job

pytestmark = pytest.mark.timeout(180)
STEPS = 6
CHUNK = 2048  # a gradient of this model is ~19 KB: ~10 chunks


def spec(job_id: str, shards: int = 1) -> JobSpec:
    return shard_job(job_id, shards, steps=STEPS)


async def train(settings: Settings, job: JobSpec, chunk_bytes: int | None = None
                ) -> tuple[JobStatus, dict[str, np.ndarray]]:
    """Run ``job`` to its end (gradients and versions in chunks of ``chunk_bytes``; the data is
    pushed whole); the final parameters are the shards' tensors put together."""
    await submit(settings, job)
    await push(settings, job, await load_checked(job))
    if chunk_bytes is not None:
        settings = settings.model_copy(update={"chunk_bytes": chunk_bytes})
    shards = [Aggregator(settings, job, shard=i) for i in range(job.aggregator.shards)]
    trainer = Trainer(settings, job, TrainerSettings(worker_id="w0"))
    try:
        await asyncio.gather(*(a.start() for a in shards), trainer.start())
        tasks = [asyncio.create_task(a.run()) for a in shards]
        training = asyncio.create_task(trainer.run())
        async with asyncio.timeout(120):
            status = await tasks[0]
            await asyncio.gather(*tasks[1:], training)
    finally:
        await asyncio.gather(*(a.stop() for a in shards), trainer.stop(), return_exceptions=True)
    params: dict[str, np.ndarray] = {}
    for a in shards:
        assert not set(params) & set(a.state.owned)  # every tensor has one owner
        params |= a.state.params()
    return status, params


async def records(settings: Settings, topic: str) -> int:
    tp = TopicPartition(topic, 0)
    consumer = await open_assigned(settings, tp)
    try:
        return int((await consumer.end_offsets([tp]))[tp])
    finally:
        await consumer.stop()


async def test_chunked_and_sharded_runs_give_the_unchunked_parameters(settings: Settings) -> None:
    status, base = await train(settings, spec("whole"))
    assert status.state == "succeeded" and status.version == STEPS, status

    status, chunked = await train(settings, spec("chunked"), CHUNK)
    assert status.state == "succeeded" and status.version == STEPS, status
    grads = Topics(settings).train_grads("chunked").name
    # ready + STEPS gradients, each ~10 chunks: the records on the topic say they were chunked
    assert await records(settings, grads) > 5 * STEPS
    for name, value in base.items():
        np.testing.assert_allclose(chunked[name], value, rtol=0, atol=1e-6, err_msg=name)

    status, sharded = await train(settings, spec("sharded", shards=2), CHUNK)
    assert status.state == "succeeded" and status.version == STEPS, status
    assert status.metrics["test_accuracy"] > 0.1
    assert set(sharded) == set(base)
    for name, value in base.items():
        np.testing.assert_allclose(sharded[name], value, rtol=0, atol=1e-5, err_msg=name)
    # shard 1 has its own topics, with its own versions and checkpoints
    assert await records(settings, Topics(settings).train_params("sharded").name + ".s1") > STEPS
