"""Run inference workers in-process (tests, benchmarks, demos): started, serving, stopped cleanly."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from agents.inference.settings import WorkerSettings
from agents.inference.worker import InferenceWorker
from streams.settings import Settings


@asynccontextmanager
async def running_worker(settings: Settings, **cfg: Any) -> AsyncIterator[InferenceWorker]:
    """A started worker whose loop runs in a task; stopped (batch answered, offsets committed) on exit."""
    worker = InferenceWorker(settings, WorkerSettings(**cfg))
    await worker.start()
    task = asyncio.create_task(worker.run(), name=f"worker-{cfg.get('model')}")
    try:
        yield worker
    finally:
        worker.request_stop()
        try:
            await task
        finally:
            await worker.stop()


async def until_balanced(
    workers: Sequence[InferenceWorker], partitions: int, timeout_s: float = 30.0
) -> None:
    """Wait until every worker owns partitions and together they own all ``partitions``."""

    def balanced() -> bool:
        owned = [w.stats["partitions"] for w in workers]
        return all(owned) and sum(owned) == partitions

    async with asyncio.timeout(timeout_s):
        while True:
            for w in workers:
                w.rebalanced.clear()
            if balanced():
                return
            waits = [asyncio.ensure_future(w.rebalanced.wait()) for w in workers]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for t in waits:
                    t.cancel()


_ASSIGNED = re.compile(r"assigned (\d+) partitions")
ROOT = Path(__file__).resolve().parents[2]


class WorkerProcess:
    """``python -m agents.inference`` as a subprocess; its log says how many partitions it owns."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.partitions = 0
        self.assignments = 0  # how many times the group gave it partitions (1 + rebalances)
        self.changed = asyncio.Event()
        self.log: list[str] = []
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        async for raw in self.proc.stderr:
            line = raw.decode(errors="replace")
            self.log = [*self.log[-50:], line]
            found = _ASSIGNED.search(line)
            if found:
                self.partitions = int(found.group(1))
                self.assignments += 1
                self.changed.set()


@asynccontextmanager
async def spawn_workers(
    settings: Settings, model: str, count: int, *flags: str, env: dict[str, str] | None = None,
) -> AsyncIterator[list[WorkerProcess]]:
    """``count`` worker processes for ``model`` (SIGTERM, then SIGKILL, on exit; never left behind)."""
    root = ROOT
    full_env = {**os.environ, "PYTHONPATH": str(root), "AIAAS_TOPIC_PREFIX": settings.topic_prefix,
                "AIAAS_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
                "AIAAS_HEARTBEAT_INTERVAL_MS": str(settings.heartbeat_interval_ms),
                "AIAAS_SESSION_TIMEOUT_MS": str(settings.session_timeout_ms),
                "OMP_NUM_THREADS": "1", **(env or {})}
    started: list[WorkerProcess] = []
    try:
        for _ in range(count):
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "agents.inference", "--model", model, *flags,
                cwd=root, env=full_env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            )
            started.append(WorkerProcess(proc))
        yield started
    finally:
        await asyncio.gather(*(_end(w) for w in started))


async def _end(w: WorkerProcess, grace_s: float = 15.0) -> None:
    if w.proc.returncode is None:
        w.proc.terminate()
        try:
            await asyncio.wait_for(w.proc.wait(), grace_s)
        except TimeoutError:
            w.proc.kill()
    await w.proc.wait()
    w.reader.cancel()


async def until_processes_balanced(procs: Sequence[WorkerProcess], partitions: int,
                                   timeout_s: float = 60.0) -> None:
    """Wait until every process owns partitions and together they own all ``partitions``; on a
    timeout the error carries each worker's partitions and last log lines (what went wrong)."""
    try:
        async with asyncio.timeout(timeout_s):
            while not _balanced(procs, partitions):
                waits: list[asyncio.Future[object]] = [asyncio.ensure_future(p.changed.wait()) for p in procs]
                waits += [asyncio.ensure_future(p.proc.wait()) for p in procs]
                for p in procs:
                    p.changed.clear()
                try:
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for t in waits:
                        t.cancel()
    except TimeoutError:
        state = " | ".join(f"pid {p.proc.pid} owns {p.partitions}: {''.join(p.log[-8:])!r}" for p in procs)
        raise TimeoutError(f"workers not balanced over {partitions} partitions in {timeout_s:.0f}s: "
                           f"{state}") from None


def _balanced(procs: Sequence[WorkerProcess], partitions: int) -> bool:
    for p in procs:
        if p.proc.returncode is not None:
            raise RuntimeError(f"worker exited with {p.proc.returncode}: {''.join(p.log[-5:])}")
    owned = [p.partitions for p in procs]
    return all(owned) and sum(owned) == partitions
