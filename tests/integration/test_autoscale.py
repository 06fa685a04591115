"""Autoscaling on the real broker: a burst raises the replica count, idleness brings it back to
the minimum (zero), a later request wakes one worker again, and no request is lost on the way.

The workers are real processes in the inference group. This module doubles as a light stand-in
worker (``python -m tests.integration.test_autoscale MODEL``): consume requests in the group,
reply to ``reply-to``, commit after the reply, stop gracefully on SIGTERM, so the test measures
the scaler and the group (rebalances, commits), not onnxruntime start-up on 2 cores.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort

from aiaas.agents.autoscaler.controller import Autoscaler, default_group, local_autoscaler
from aiaas.agents.autoscaler.policy import Policy
from aiaas.client.inference import InferenceClient
from aiaas.registry.store import Registry
from aiaas.streams import headers as h
from aiaas.streams.admin import Admin
from aiaas.streams.consumer import Consumer
from aiaas.streams.lifecycle import cancel
from aiaas.streams.producer import Producer
from aiaas.streams.record import Record
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics
from tests import examples

ROOT = Path(__file__).resolve().parents[2]
MODEL = "echo"
PARTITIONS = 4


async def _serve(model: str) -> None:
    """The stand-in worker: echo each request to its reply-to topic, commit after replying."""
    from aiaas.streams.runtime import until_signalled

    settings = Settings()
    topic = Topics(settings).infer_requests(model).name
    async with Producer(settings) as prod:
        cons = Consumer(settings, [topic], default_group(settings, model))
        await cons.start()

        async def handle(records: list[Record]) -> None:
            await asyncio.sleep(0.004 * len(records))  # stands for compute
            futs = [await prod.send(r.headers[h.REPLY_TO], r.value or b"", key=r.key,
                                    headers={h.CORRELATION_ID: r.headers.get(h.CORRELATION_ID)})
                    for r in records]
            await asyncio.gather(*futs)

        await until_signalled(lambda: cons.run(handle, max_records=50), cons.stop)


async def _send(prod: Producer, topic: str, reply_to: str, ids: list[str]) -> None:
    futs = [await prod.send(topic, i.encode(), key=i, headers={h.REPLY_TO: reply_to, h.CORRELATION_ID: i})
            for i in ids]
    await asyncio.gather(*futs)


@contextlib.asynccontextmanager
async def running(scaler: Autoscaler) -> AsyncIterator[Autoscaler]:
    """The scaler's own loop in a task (paced by its interval); stopped with its workers."""
    await scaler.start()
    task = asyncio.create_task(scaler.run())
    try:
        yield scaler
    finally:
        await scaler.stop()
        await task


async def until(scaler: Autoscaler, cond: Callable[[], bool], timeout_s: float) -> None:
    """Wait, step by step, until ``cond`` holds (a condition, not a sleep)."""
    async with asyncio.timeout(timeout_s):
        while not cond():
            await scaler.next_step()


async def collect(replies: Consumer, got: dict[str, int]) -> None:
    while True:
        for r in await replies.getmany(timeout_ms=200):
            key = (r.key or b"").decode()
            got[key] = got.get(key, 0) + 1


async def test_burst_scales_out_idle_scales_to_zero_nothing_lost(
    settings: Settings, admin: Admin, tmp_path: Path
) -> None:
    topics = Topics(settings)
    req = topics.infer_requests(MODEL, PARTITIONS)
    replies = topics.replies(f"as{uuid.uuid4().hex[:6]}")
    await admin.ensure_topics([req, replies])
    policy = Policy(min_replicas=0, max_replicas=8, lag_threshold=40, rate_per_replica=1000,
                    cooldown_s=2.0, idle_s=3.0)
    command = [sys.executable, "-m", "tests.integration.test_autoscale", "{model}"]
    scaler = local_autoscaler(settings, MODEL, policy, command=command, log_dir=tmp_path,
                              interval_s=0.3, stop_timeout_s=20, extra_env={"PYTHONPATH": str(ROOT)})
    burst = [f"b{i}" for i in range(800)]
    trickle: list[str] = []
    late = [f"l{i}" for i in range(5)]
    got: dict[str, int] = {}
    members = 0

    def count() -> int:
        return scaler.replicas.count

    async with Producer(settings) as prod, Consumer(settings, [replies.name], None) as rcons, \
            running(scaler):
        reader = asyncio.create_task(collect(rcons, got))
        try:
            await scaler.next_step()
            assert count() == 0  # idle at start: nothing runs
            await _send(prod, req.name, replies.name, burst)
            await until(scaler, lambda: count() >= 2, 20)
            async with asyncio.timeout(60):
                while not set(burst) <= got.keys():
                    members = max(members, await scaler.probe.members())
                    await scaler.next_step()
            while count() > 1:  # keep requests coming while workers are stopped
                chunk = [f"t{len(trickle) + i}" for i in range(3)]
                trickle += chunk
                await _send(prod, req.name, replies.name, chunk)
                await scaler.next_step()
            await until(scaler, lambda: count() == 0, 60)
            await _send(prod, req.name, replies.name, late)  # first lag after idling wakes one
            await until(scaler, lambda: count() >= 1, 20)
            await until(scaler, lambda: set(burst + trickle + late) <= got.keys(), 60)
        finally:
            await cancel(reader, quiet=True)
    seen = list(scaler.replica_log)
    print("replicas seen:", seen, "members:", members, "trickle:", len(trickle))
    assert max(seen) >= 2 and members >= 2, (seen, members)
    assert max(seen) <= PARTITIONS  # never more workers than partitions (max was 8)
    assert len(trickle) >= 3  # some requests arrived during the scale-down
    assert set(got) == set(burst + trickle + late)  # every request answered (duplicates allowed)
    assert scaler.replicas.count == 0


async def test_real_inference_worker_wakes_from_zero_and_goes_back(
    settings: Settings, admin: Admin, tmp_path: Path
) -> None:
    """The default worker command (``aiaas worker inference``) serves a request that arrived while
    nothing ran; after the idle period the worker is stopped again."""
    model = f"scaled{uuid.uuid4().hex[:6]}"
    await admin.ensure_topics([Topics(settings).infer_requests(model, 2)])
    data = examples.mlp([4, 8, 2])
    async with Registry(settings) as reg:
        await reg.publish(model, data, stage="production")
    policy = Policy(min_replicas=0, max_replicas=2, lag_threshold=50, cooldown_s=1.0, idle_s=2.0)
    scaler = local_autoscaler(settings, model, policy, log_dir=tmp_path, interval_s=0.3,
                              stop_timeout_s=20, extra_env={"PYTHONPATH": str(ROOT)})
    x = np.arange(8, dtype=np.float32).reshape(2, 4) / 8
    async with InferenceClient(settings) as client, running(scaler):
        await scaler.next_step()
        assert scaler.replicas.count == 0
        result = await client.infer(model, {"input": x}, timeout=90)  # its lag wakes a worker
        await until(scaler, lambda: scaler.replicas.count == 0, 60)
    want = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    np.testing.assert_allclose(result.outputs["logits"], want, rtol=1e-5, atol=1e-5)
    seen = list(scaler.replica_log)
    assert max(seen) == 1 and seen[-1] == 0, seen  # one request wakes exactly one worker


if __name__ == "__main__":
    from aiaas.streams.runtime import run

    run(_serve(sys.argv[1]))
