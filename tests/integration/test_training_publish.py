"""In sync mode a new parameter version is on the broker before the aggregator evaluates it, so the
trainers' next round overlaps the evaluation instead of waiting behind it (server._delivered)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from aiaas.agents.aggregator.server import Aggregator
from aiaas.agents.aggregator.settings import AggregatorSettings
from aiaas.agents.trainer.settings import TrainerSettings
from aiaas.agents.trainer.worker import Trainer
from aiaas.data.datapush import push
from aiaas.schemas.jobs import JobSpec
from aiaas.streams.jobs import submit
from aiaas.streams.lifecycle import cancel_all
from aiaas.streams.settings import Settings

pytestmark = pytest.mark.timeout(120)


class Watched(Aggregator):
    """Records, at each evaluation, whether the broker had acknowledged the newest version."""

    acked: list[bool]

    async def _evaluate(self) -> bool:
        self.acked.append(self._published is not None and self._published.done())
        return await super()._evaluate()


async def test_sync_version_is_on_the_broker_before_its_evaluation(settings: Settings) -> None:
    spec = JobSpec.model_validate({
        "job_id": f"publish-{uuid.uuid4().hex[:6]}",
        "model": {"input_dim": 64, "hidden": [16], "output_dim": 10},
        "batch_size": 64, "epochs": None, "steps": 20, "eval_interval": 5, "checkpoint_interval": 1000,
        "sync": {"mode": "sync", "straggler_deadline_ms": 1000},
        "data": {"source": "digits", "partitions": 2, "strategy": "random"},
    })
    await submit(settings, spec)
    await push(settings, spec)
    agg = Watched(settings, spec, AggregatorSettings(start_wait_s=10.0))
    agg.acked = []
    workers = [Trainer(settings, spec, TrainerSettings(worker_id=f"w{i}")) for i in range(2)]
    await asyncio.gather(agg.start(), *(w.start() for w in workers))
    runs = [asyncio.create_task(w.run()) for w in workers]
    try:
        async with asyncio.timeout(90):
            status = await agg.run()
            await asyncio.gather(*runs)
    finally:
        await cancel_all(runs)
        await asyncio.gather(agg.stop(), *(w.stop() for w in workers), return_exceptions=True)
    assert status.state == "succeeded", status.error
    assert len(agg.acked) >= 4  # versions 5, 10, 15, 20 at least
    assert all(agg.acked), agg.acked
