"""SIGKILL one of two inference worker processes under load: every request still gets its reply,
and replies stop for about the workers' session timeout (6 s by default), not the 30 s of the
process-wide consumer settings."""

from __future__ import annotations

import itertools
import signal
import time

import numpy as np
import pytest

from aiaas.client.inference import InferenceClient, InferResult
from aiaas.registry.store import Registry
from aiaas.streams.settings import Settings
from tests import examples
from tests.spawn import spawn_workers, until_processes_balanced


@pytest.mark.timeout(180)
async def test_sigkill_one_of_two_workers_under_load_loses_nothing(settings: Settings) -> None:
    data = examples.mlp([16, 64, 4], seed=7)
    async with Registry(settings) as reg:
        await reg.publish("ft", data, stage="production")
    n, kill_after = 1500, 300
    xs = np.random.default_rng(2).normal(size=(n, 1, 16)).astype(np.float32)
    # the workers' own group settings (AIAAS_INFER_SESSION_TIMEOUT_MS, 6 s), not the process-wide 30 s
    assert settings.session_timeout_ms == 30_000
    async with spawn_workers(settings, "ft", 2) as procs, InferenceClient(settings) as client:
        await until_processes_balanced(procs, 8)
        got: dict[int, InferResult] = {}
        arrived: list[float] = []
        async for i, r in client.infer_many("ft", ({"input": x} for x in xs), binary=True, window=100,
                                            timeout=60):
            assert isinstance(r, InferResult), r
            assert i not in got  # each request answered once (duplicates dropped by the client)
            got[i] = r
            arrived.append(time.monotonic())
            if len(got) == kill_after:
                procs[0].proc.send_signal(signal.SIGKILL)
        assert await procs[0].proc.wait() == -signal.SIGKILL
        assert procs[1].proc.returncode is None  # the survivor served the rest
    assert sorted(got) == list(range(n))
    gap = max(b - a for a, b in itertools.pairwise(arrived[kill_after - 1:]))
    assert 1 < gap < 20, gap  # the session timeout (6 s) plus the rebalance; it was ~30 s
    import onnxruntime as ort

    want = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"input": xs[:, 0]})[0]
    out = np.concatenate([got[i].outputs["logits"] for i in range(n)])
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)


@pytest.mark.timeout(180)
async def test_a_static_member_restarted_takes_its_partitions_back_without_a_rebalance(
        settings: Settings) -> None:
    async with Registry(settings) as reg:
        await reg.publish("st", examples.mlp([16, 8, 4], seed=3), stage="production")
    xs = np.random.default_rng(4).normal(size=(64, 1, 16)).astype(np.float32)
    env = {"AIAAS_INFER_SESSION_TIMEOUT_MS": "60000"}  # the restart must come before the session ends

    def static(name: str) -> dict[str, str]:
        return {**env, "AIAAS_INFER_INSTANCE_ID": name}

    async with spawn_workers(settings, "st", 1, env=static("w0")) as first, \
            spawn_workers(settings, "st", 1, env=static("w1")) as second:
        await until_processes_balanced([*first, *second], 8)
        owned, assigned = second[0].partitions, second[0].assignments
        first[0].proc.send_signal(signal.SIGKILL)
        assert await first[0].proc.wait() == -signal.SIGKILL
        async with spawn_workers(settings, "st", 1, env=static("w0")) as again, \
                InferenceClient(settings) as client:
            await until_processes_balanced([again[0], second[0]], 8)
            got = {i: r async for i, r in client.infer_many("st", ({"input": x} for x in xs), timeout=60)}
            assert all(isinstance(r, InferResult) for r in got.values()) and len(got) == len(xs)
            # the survivor was never stopped for a rebalance: one assignment, the same partitions
            assert second[0].assignments == assigned and second[0].partitions == owned
            assert again[0].partitions == 8 - owned
