"""The concept-drift scenario of continuous training, shared by its test and ``benchmarks.streaming_drift``.

A digits stream (JSON, nested pixels) is trained on continuously. Once production serves the
original concept, the labels are permuted (the drift) and ``drift_recovery_s`` is measured: seconds
from the first permuted record being acknowledged by the broker to a promoted version scoring >= 0.9
on a probe of permuted digits the stream never carries. Then a stretch of random labels follows:
the gate must keep it out of production.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aiaas.agents.aggregator.server import Aggregator
from aiaas.agents.trainer.settings import TrainerSettings
from aiaas.agents.trainer.worker import Trainer
from aiaas.ml.export import session
from aiaas.registry.store import Registry
from aiaas.schemas.errors import InvalidMessage, NotFound
from aiaas.schemas.jobs import CandidateDecision, JobSpec
from aiaas.streams.jobs import submit
from aiaas.streams.lifecycle import cancel_all
from aiaas.streams.readers import open_assigned
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics
from tests.sourcestreams import PERMUTATION, digits_split, make_topic, produce, records, source_spec

GOOD = 0.9
log = logging.getLogger(__name__)


def continuous_spec(job_id: str, topic: str, mode: str = "sync", **over: Any) -> JobSpec:
    return source_spec(
        job_id, topic, mode="continuous", optimizer={"name": "adam", "lr": 3e-3},
        sync={"mode": mode, "straggler_deadline_ms": 500, "staleness": 4},
        data={"partitions": 2, "strategy": "random", "test_fraction": 0.1},
        continuous={"publish_every_records": 1500, "publish_every_s": 2.0, "tolerance": 0.02,
                    "min_score": 0.5, "window_rows": 1500, "holdout_rows": 300},
        eval_interval=50, checkpoint_interval=40, **over)


class Prober:
    """The production version of a model and its accuracy on a probe, as the registry changes."""

    def __init__(self, registry: Registry, name: str) -> None:
        self.registry, self.name = registry, name
        self._sessions: dict[int, Any] = {}
        self.queue = registry.subscribe()

    async def accuracy(self, x: np.ndarray, y: np.ndarray) -> tuple[int, float] | None:
        """(version, accuracy on (x, y)) of production now; None while nothing is in production."""
        try:
            mv = self.registry.pick(self.name, stage="production")
        except NotFound:
            return None
        if mv.version not in self._sessions:
            self._sessions[mv.version] = session(await self.registry.load_bytes(mv))
        label = self._sessions[mv.version].run(["label"], {"input": x})[0]
        return mv.version, float((label == y).mean())

    async def wait_until(self, x: np.ndarray, y: np.ndarray, good: float,
                         timeout_s: float) -> tuple[int, float]:
        """Wait (on the registry's version records) until production scores >= ``good``."""
        async with asyncio.timeout(timeout_s):
            while True:
                got = await self.accuracy(x, y)
                if got is not None and got[1] >= good:
                    return got
                await self.queue.get()


@contextlib.asynccontextmanager
async def in_process(settings: Settings, spec: JobSpec, trainers: int = 2) -> AsyncIterator[Aggregator]:
    """A continuous job's aggregator and trainers as tasks of this process, until the block ends."""
    await submit(settings, spec)
    agg = Aggregator(settings, spec)
    workers = [Trainer(settings, spec, TrainerSettings(worker_id=f"{spec.job_id}-p{i}"))
               for i in range(trainers)]
    tasks: list[asyncio.Task[Any]] = []
    try:
        await asyncio.gather(agg.start(), *(w.start() for w in workers))
        tasks = [asyncio.create_task(agg.run())] + [asyncio.create_task(w.run()) for w in workers]
        for t in tasks:
            t.add_done_callback(log_if_failed)
        yield agg
    finally:
        await cancel_all(tasks)
        await asyncio.gather(agg.stop(), *(w.stop() for w in workers), return_exceptions=True)


def log_if_failed(task: asyncio.Task[Any]) -> None:
    """A job task that ends before the block does is a failure: say so in the log."""
    if not task.cancelled() and task.exception() is not None:
        log.error("a task of the continuous job ended: %r", task.exception(), exc_info=task.exception())


async def decisions(settings: Settings, job_id: str) -> list[CandidateDecision]:
    """Every candidate decision on the job's metrics topic so far."""
    from aiokafka import TopicPartition

    tp = TopicPartition(Topics(settings).train_metrics(job_id).name, 0)
    consumer = await open_assigned(settings, tp)
    out: list[CandidateDecision] = []
    try:
        end = (await consumer.end_offsets([tp]))[tp]
        while await consumer.position(tp) < end:
            for rec in (await consumer.getmany(tp, timeout_ms=500)).get(tp, []):
                with contextlib.suppress(InvalidMessage):
                    out.append(CandidateDecision.from_record(rec.value))
    finally:
        await consumer.stop()
    return out


@dataclass
class DriftResult:
    first_production_s: float = 0.0
    drift_recovery_s: float | None = None
    recovered_accuracy: float = 0.0
    final_accuracy: float = 0.0
    noise_end: int = 0  # records on the topic after the random-label stretch
    decisions: list[CandidateDecision] = field(default_factory=list)


async def run_drift(settings: Settings, *, mode: str = "sync", pre: int = 10_000, post: int = 8_000,
                    noise: int = 2_000, recover_s: float = 60.0) -> DriftResult:
    """The whole scenario (see the module docstring); raises TimeoutError when a phase overruns."""
    topic = f"{settings.topic_prefix}user.drift"
    await make_topic(settings, topic, partitions=2)
    x, y, px, py = digits_split()
    await produce(settings, topic, records(x, y, 0, pre))
    spec = continuous_spec(f"drift-{mode}", topic, mode)
    out = DriftResult()
    async with Registry(settings) as reg, in_process(settings, spec) as agg:
        prober = Prober(reg, spec.model_name)
        t0 = time.monotonic()
        await prober.wait_until(px, py, GOOD, 90.0)
        out.first_production_s = time.monotonic() - t0
        drifted = PERMUTATION[py]
        first = records(x, y, pre, 1, label_map=PERMUTATION)
        await produce(settings, topic, first)
        changed = time.monotonic()  # the first permuted record is on the topic
        await produce(settings, topic, records(x, y, pre + 1, post - 1, label_map=PERMUTATION))
        _, out.recovered_accuracy = await prober.wait_until(px, drifted, GOOD, recover_s + 30.0)
        out.drift_recovery_s = time.monotonic() - changed
        await produce(settings, topic, records(x, y, pre + post, noise, noise_seed=7))
        out.noise_end = pre + post + noise
        await _candidates_after(agg, out.noise_end, 3, 60.0)
        got = await prober.accuracy(px, drifted)
        out.final_accuracy = got[1] if got else 0.0
    out.decisions = await decisions(settings, spec.job_id)
    return out


async def _candidates_after(agg: Aggregator, read: int, count: int, timeout_s: float) -> None:
    """Wait until the gate has decided ``count`` candidates after reading ``read`` source records."""
    assert agg.gate is not None and agg.holdout is not None
    async with asyncio.timeout(timeout_s):
        while sum(agg.holdout.reader.positions.values()) < read:
            await agg.holdout.arrived.wait()
            agg.holdout.arrived.clear()
        seen = agg.gate.candidates
        while agg.gate.candidates < seen + count:
            await agg.gate.decided.wait()
            agg.gate.decided.clear()
