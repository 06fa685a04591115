"""Hot reload on promote without losing requests, a weighted canary, per-request version pins."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import numpy as np
import pytest

from aiaas.client.inference import InferenceClient, InferenceError, InferResult
from aiaas.registry.store import Registry
from aiaas.streams.settings import Settings
from tests import examples
from tests.workers import running_worker

X = np.ones((1, 4), np.float32)


@pytest.fixture(scope="module")
def versions() -> list[bytes]:
    return [examples.mlp([4, 8, 2], seed=s) for s in (1, 2, 3)]


async def test_promote_mid_stream_switches_versions_and_loses_nothing(
    settings: Settings, versions: list[bytes]
) -> None:
    n, switch_at = 800, 300
    async with Registry(settings) as reg:
        await reg.publish("m", versions[0], stage="production")
        await reg.publish("m", versions[1])
        async with running_worker(settings, model="m", stage="production", max_batch=16) as worker, \
                InferenceClient(settings) as client:
            seen: list[str | None] = []
            errors: list[InferenceError] = []
            promoted_after = None

            async def inputs() -> AsyncIterator[dict[str, np.ndarray]]:
                for i in range(n):
                    if i == n - 200:  # the last requests go out once the worker follows the promotion
                        async with asyncio.timeout(20):
                            while worker.sessions.reloads < 2:
                                worker.sessions.changed.clear()
                                if worker.sessions.reloads < 2:
                                    await worker.sessions.changed.wait()
                    yield {"input": X * i}

            async for _, r in client.infer_many("m", inputs(), binary=True, window=64, timeout=30):
                if isinstance(r, InferenceError):
                    errors.append(r)
                    continue
                seen.append(r.model_version)
                if len(seen) == switch_at:
                    await reg.promote("m", 2)  # the worker follows while requests keep flowing
                    promoted_after = len(seen)
            assert not errors and len(seen) == n and promoted_after == switch_at
            assert seen[0] == "1" and seen[-1] == "2"
            first_v2 = seen.index("2")
            assert set(seen[first_v2:]) == {"2"}  # switched once, atomically, never back
            assert worker.sessions.reloads == 2 and worker.stats["replies"] >= n


async def test_canary_weight_splits_traffic(settings: Settings, versions: list[bytes]) -> None:
    async with Registry(settings) as reg:
        await reg.publish("c", versions[0], stage="production")
        await reg.publish("c", versions[1])
        await reg.set_canary("c", 2, 0.2)
    async with running_worker(settings, model="c", stage="production") as worker, \
            InferenceClient(settings) as client:
        assert worker.sessions.canary is not None and worker.sessions.canary.version == 2
        counts: Counter[str | None] = Counter()
        async for _, r in client.infer_many("c", ({"input": X} for _ in range(2000)), binary=True,
                                            window=500, timeout=60):
            assert isinstance(r, InferResult), r
            counts[r.model_version] += 1
    assert sum(counts.values()) == 2000
    assert 0.15 <= counts["2"] / 2000 <= 0.25, counts


async def test_version_pin_per_request(settings: Settings, versions: list[bytes]) -> None:
    async with Registry(settings) as reg:
        for data in versions:
            await reg.publish("p", data)
        await reg.promote("p", 3)
    want = {i + 1: examples_output(d) for i, d in enumerate(versions)}
    async with running_worker(settings, model="p", stage="production"), InferenceClient(settings) as client:
        default = await client.infer("p", {"input": X}, timeout=20)
        assert default.model_version == "3"
        for v in (1, 2, 3):
            r = await client.infer("p", {"input": X}, timeout=20, version=v)
            assert r.model_version == str(v)
            np.testing.assert_allclose(r.outputs["logits"], want[v], rtol=1e-6)
        with pytest.raises(InferenceError) as info:
            await client.infer("p", {"input": X}, timeout=20, version=7)
        assert info.value.status_code == 404


def examples_output(data: bytes) -> np.ndarray:
    import onnxruntime as ort

    return ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"input": X})[0]  # type: ignore[no-any-return]
