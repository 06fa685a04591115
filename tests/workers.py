"""Inference workers in-process for tests and benchmarks: started, serving, stopped cleanly."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from aiaas.agents.inference.settings import WorkerSettings
from aiaas.agents.inference.worker import InferenceWorker
from aiaas.streams.settings import Settings


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
