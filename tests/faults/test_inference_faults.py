"""SIGKILL one of two inference worker processes under load: every request still gets its reply."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from agents.inference import examples
from streams.client import InferenceClient, InferResult
from streams.registry import Registry
from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
ASSIGNED = re.compile(r"assigned (\d+) partitions")


class WorkerProcess:
    """``python -m agents.inference`` as a subprocess; its log tells how many partitions it owns."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.partitions = 0
        self.changed = asyncio.Event()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        async for line in self.proc.stderr:
            found = ASSIGNED.search(line.decode(errors="replace"))
            if found:
                self.partitions = int(found.group(1))
                self.changed.set()


@contextlib.asynccontextmanager
async def workers(settings: Settings, model: str, count: int) -> AsyncIterator[list[WorkerProcess]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "AIAAS_TOPIC_PREFIX": settings.topic_prefix,
           "AIAAS_HEARTBEAT_INTERVAL_MS": "300", "AIAAS_SESSION_TIMEOUT_MS": "6000",
           "OMP_NUM_THREADS": "1"}
    started: list[WorkerProcess] = []
    try:
        for _ in range(count):
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "agents.inference", "--model", model, "--log-level", "INFO",
                cwd=ROOT, env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            )
            started.append(WorkerProcess(proc))
        yield started
    finally:
        for w in started:
            if w.proc.returncode is None:
                w.proc.kill()
            await w.proc.wait()
            w.reader.cancel()


async def until_balanced(procs: list[WorkerProcess], partitions: int, timeout_s: float = 60) -> None:
    async with asyncio.timeout(timeout_s):
        while not (all(p.partitions for p in procs) and sum(p.partitions for p in procs) == partitions):
            waits = [asyncio.ensure_future(p.changed.wait()) for p in procs]
            for p in procs:
                p.changed.clear()
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for t in waits:
                t.cancel()


@pytest.mark.timeout(180)
async def test_sigkill_one_of_two_workers_under_load_loses_nothing(settings: Settings) -> None:
    data = examples.mlp([16, 64, 4], seed=7)
    async with Registry(settings) as reg:
        await reg.publish("ft", data, stage="production")
    n, kill_after = 1500, 300
    xs = np.random.default_rng(2).normal(size=(n, 1, 16)).astype(np.float32)
    async with workers(settings, "ft", 2) as procs, InferenceClient(settings) as client:
        await until_balanced(procs, 8)
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
