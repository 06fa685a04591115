"""SIGKILL one of two inference worker processes under load: every request still gets its reply."""

from __future__ import annotations

import signal

import numpy as np
import pytest

from agents.inference import examples
from agents.inference.testing import spawn_workers, until_processes_balanced
from streams.client import InferenceClient, InferResult
from streams.registry import Registry
from streams.settings import Settings


@pytest.mark.timeout(180)
async def test_sigkill_one_of_two_workers_under_load_loses_nothing(settings: Settings) -> None:
    data = examples.mlp([16, 64, 4], seed=7)
    async with Registry(settings) as reg:
        await reg.publish("ft", data, stage="production")
    n, kill_after = 1500, 300
    xs = np.random.default_rng(2).normal(size=(n, 1, 16)).astype(np.float32)
    fast = settings.model_copy(update={"heartbeat_interval_ms": 300, "session_timeout_ms": 6000})
    async with spawn_workers(fast, "ft", 2) as procs, InferenceClient(settings) as client:
        await until_processes_balanced(procs, 8)
        got: dict[int, InferResult] = {}
        async for i, r in client.infer_many("ft", ({"input": x} for x in xs), binary=True, window=100,
                                            timeout=60):
            assert isinstance(r, InferResult), r
            assert i not in got  # each request answered once (duplicates dropped by the client)
            got[i] = r
            if len(got) == kill_after:
                procs[0].proc.send_signal(signal.SIGKILL)
        assert await procs[0].proc.wait() == -signal.SIGKILL
        assert procs[1].proc.returncode is None  # the survivor served the rest
    assert sorted(got) == list(range(n))
    import onnxruntime as ort

    want = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"input": xs[:, 0]})[0]
    out = np.concatenate([got[i].outputs["logits"] for i in range(n)])
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
