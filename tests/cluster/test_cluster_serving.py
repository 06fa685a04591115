"""Serving on the 3-node cluster: kill -9 the broker that leads most of the request topic's partitions
(and the client's reply topic, when it leads as many) while a stream of requests is in flight.

Every request gets a reply or a clean retriable error (503/504, never silence), no request is answered
twice to the caller, a retry of the errored ones succeeds, both workers live on, and the answers are
onnxruntime's. The killed node is restarted by the fixture after the test.
"""

from __future__ import annotations

import time

import numpy as np
import onnxruntime as ort
import pytest

from aiaas.client.inference import InferenceClient, InferenceError, InferResult
from aiaas.registry.store import Registry
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics
from tests import examples
from tests.cluster.control import LocalCluster, busiest, leaders, replication
from tests.spawn import spawn_workers, until_processes_balanced

pytestmark = pytest.mark.timeout(300)
MODEL = "clustered"
PARTITIONS = 8


async def test_kill_the_request_leader_mid_stream_every_request_answered(
    cluster: LocalCluster, settings: Settings
) -> None:
    data = examples.mlp([16, 64, 4], seed=7)
    async with Registry(settings) as reg:
        await reg.publish(MODEL, data, stage="production")
    n, kill_after = 4000, 600
    xs = np.random.default_rng(3).normal(size=(n, 1, 16)).astype(np.float32)
    rf3 = {"AIAAS_REPLICATION_FACTOR": "3"}
    async with spawn_workers(settings, MODEL, 2, env=rf3) as procs, InferenceClient(settings) as client:
        await until_processes_balanced(procs, PARTITIONS)
        topic = Topics(settings).infer_requests(MODEL).name
        assert await replication(settings, topic) == [(3, 3)] * PARTITIONS
        assert await replication(settings, client.reply_topic) == [(3, 3)]
        before = await leaders(settings, topic)
        victim = busiest(before, prefer=(await leaders(settings, client.reply_topic))[0])
        got: dict[int, InferResult] = {}
        errors: dict[int, InferenceError] = {}
        killed_at, answered_after = 0.0, 0
        async for i, r in client.infer_many(MODEL, ({"input": x} for x in xs), binary=True, window=64,
                                            timeout=45):
            assert i not in got and i not in errors  # never twice to the caller (client dedupe)
            if isinstance(r, InferResult):
                got[i] = r
            else:
                errors[i] = r
            if killed_at:
                answered_after += 1
            elif len(got) + len(errors) == kill_after:
                killed_at = await cluster.kill(victim)
        stream_s = time.monotonic() - killed_at
        after = await leaders(settings, topic)
        for e in errors.values():  # a clean, retriable error: the caller knows to send it again
            assert e.retriable and e.status_code in (503, 504), e.to_dict()
        for i in sorted(errors):
            got[i] = await client.infer(MODEL, {"input": xs[i]}, binary=True, timeout=30)
        assert all(p.proc.returncode is None for p in procs), [p.log[-5:] for p in procs]
    assert sorted(got) == list(range(n)), f"lost: {sorted(set(range(n)) - set(got))[:20]}"
    assert answered_after == n - kill_after, (answered_after, stream_s)
    assert victim not in after.values(), after  # its partitions moved to the surviving replicas
    assert sum(1 for node in before.values() if node == victim) >= 1
    want = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"input": xs[:, 0]})[0]
    out = np.concatenate([got[i].outputs["logits"] for i in range(n)])
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
