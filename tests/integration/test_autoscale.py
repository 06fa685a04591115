"""Autoscaling on the real broker: a burst raises the replica count, idleness brings it back to
the minimum (zero), a later request wakes one worker again, and no request is lost on the way.

The workers are real processes in the inference group. This module doubles as a light stand-in
worker (``python -m tests.integration.test_autoscale MODEL``): consume requests in the group,
reply to ``reply-to``, commit after the reply, stop gracefully on SIGTERM, so the test measures
the scaler and the group (rebalances, commits), not onnxruntime start-up on 2 cores.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from agents.autoscaler.controller import Autoscaler, default_group, local_autoscaler
from agents.autoscaler.policy import Policy
from streams import headers as h
from streams.admin import Admin
from streams.consumer import Consumer
from streams.producer import Producer
from streams.record import Record
from streams.settings import Settings
from streams.topics import Topics

ROOT = Path(__file__).resolve().parents[2]
MODEL = "echo"
PARTITIONS = 4


async def _serve(model: str) -> None:
    """The stand-in worker: echo each request to its reply-to topic, commit after replying."""
    from streams.runtime import until_signalled

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


class Harness:
    """Steps the scaler and reads replies in one loop; ``until`` waits on a condition."""

    def __init__(self, scaler: Autoscaler, replies: Consumer) -> None:
        self.scaler, self.replies = scaler, replies
        self.got: dict[str, int] = {}
        self.seen: list[int] = []
        self.members = 0

    async def tick(self) -> None:
        await self.scaler.step()
        self.seen.append(self.scaler.replicas.count)
        self.members = max(self.members, await self.scaler.probe.members())
        end = time.monotonic() + self.scaler.interval_s
        while (left := end - time.monotonic()) > 0:  # read replies for one interval: paces the loop
            for r in await self.replies.getmany(timeout_ms=max(1, int(left * 1000))):
                key = (r.key or b"").decode()
                self.got[key] = self.got.get(key, 0) + 1

    async def until(self, cond: Callable[[], bool], timeout_s: float) -> None:
        async with asyncio.timeout(timeout_s):
            while not cond():
                await self.tick()

    def replicas(self) -> int:
        return self.scaler.replicas.count


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
    await scaler.start()
    async with Producer(settings) as prod, Consumer(settings, [replies.name], None) as rcons:
        t = Harness(scaler, rcons)
        try:
            await t.tick()
            assert t.replicas() == 0  # idle at start: nothing runs
            await _send(prod, req.name, replies.name, burst)
            await t.until(lambda: t.replicas() >= 2, 20)
            await t.until(lambda: set(burst) <= t.got.keys(), 60)
            while t.replicas() > 1:  # keep requests coming while workers are stopped
                chunk = [f"t{len(trickle) + i}" for i in range(3)]
                trickle += chunk
                await _send(prod, req.name, replies.name, chunk)
                await t.tick()
            await t.until(lambda: t.replicas() == 0, 60)
            await _send(prod, req.name, replies.name, late)  # first lag after idling wakes one
            await t.until(lambda: t.replicas() >= 1, 20)
            await t.until(lambda: set(burst + trickle + late) <= t.got.keys(), 60)
        finally:
            await scaler.stop()
    print("replicas seen:", t.seen, "members:", t.members, "trickle:", len(trickle))
    assert max(t.seen) >= 2 and t.members >= 2, (t.seen, t.members)
    assert max(t.seen) <= PARTITIONS  # never more workers than partitions (max was 8)
    assert set(t.got) == set(burst + trickle + late)  # every request answered (duplicates allowed)
    assert scaler.replicas.count == 0


if __name__ == "__main__":
    from streams.runtime import run

    run(_serve(sys.argv[1]))
