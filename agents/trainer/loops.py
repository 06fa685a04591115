"""The trainer's side of the four sync modes (docs/architecture.md, "Sync modes").

- sync: gradient at version v -> wait for the next version -> repeat (the aggregator runs BSP).
- async: keep computing on the newest version known; at most ``window`` gradients ride on one version.
- hybrid: ``local_steps`` local optimizer steps, send the parameter delta, wait for the average.
- ring: local steps, send the parameters to the next trainer's inbox, average with the neighbour's.

Each loop records where its time went (ms) and ships the numbers with its next message.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import numpy as np

from aiaas.schemas.errors import InvalidMessage
from aiaas.schemas.jobs import JobSpec
from aiaas.streams.chunking import Pieces
from aiaas.streams.offload import Offload
from aiaas.streams.topics import TopicSpec

from .compute import Batch, LocalModel
from .data import LocalData
from .follower import ParamFollower, Snapshot
from .ring import RingInbox, ring_target

log = logging.getLogger(__name__)


class Trainer(Protocol):
    """What a loop needs from the trainer (aiaas.agents.trainer.worker.Trainer is one): the loops are
    written against this, so the worker imports the loops and not the other way round."""

    spec: JobSpec
    worker_id: str
    model: LocalModel
    data: LocalData
    follower: ParamFollower
    ring: RingInbox | None
    offload: Offload
    grads_topic: TopicSpec
    ring_topic: TopicSpec
    timings: dict[str, float]

    async def batch(self) -> Batch: ...
    async def params_after(self, offset: int) -> Snapshot: ...
    async def next_params(self, snap: Snapshot) -> Snapshot: ...
    def load_if_new(self, snap: Snapshot) -> float: ...
    def pack(self, tensors: dict[str, np.ndarray[Any, Any]], *, base: Snapshot, samples: int,
             loss: float, payload: str = "gradient") -> list[tuple[str, Pieces]]: ...
    def pack_params(self, state: dict[str, np.ndarray[Any, Any]], *, samples: int, loss: float) -> Pieces: ...
    async def send(self, topic: str, value: bytes | Pieces, partition: int | None = None) -> None: ...
    async def send_parts(self, parts: list[tuple[str, Pieces]]) -> None: ...


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000


def _rows(batches: list[Batch]) -> int:
    return sum(len(b[0]) for b in batches)


async def _gradient_step(t: Trainer, snap: Snapshot) -> dict[str, float]:
    """Load ``snap`` if new, compute one gradient, pack and send it; returns the phase timings."""
    batch = await t.batch()

    def work() -> tuple[list[tuple[str, Pieces]], dict[str, float]]:
        load_ms = t.load_if_new(snap)
        t0 = time.perf_counter()
        grads, loss = t.model.gradient(batch)
        t1 = time.perf_counter()
        parts = t.pack(grads, base=snap, samples=len(batch[0]), loss=loss)
        return parts, {"load": load_ms, "compute": (t1 - t0) * 1000, "serialize": _ms(t1)}

    parts, phases = await t.offload(work)
    await t.send_parts(parts)
    return phases


async def run_sync(t: Trainer) -> None:
    snap = await t.params_after(-1)
    while not snap.header.final:
        t0 = time.perf_counter()
        phases = await _gradient_step(t, snap)
        t1 = time.perf_counter()
        snap = await t.next_params(snap)
        phases |= {"wait": _ms(t1), "round": _ms(t0), **snap.phases()}
        t.timings = phases


async def run_async(t: Trainer) -> None:
    window = max(1, t.spec.sync.staleness // 2)
    snap = await t.params_after(-1)
    riding = 0  # gradients sent on snap's version
    while not snap.header.final:
        t0 = time.perf_counter()
        newest = t.follower.latest
        if newest is not None and newest.offset > snap.offset:
            snap, riding = newest, 0
        if riding >= window:
            snap, riding = await t.next_params(snap), 0
            if snap.header.final:
                break
        phases = await _gradient_step(t, snap)
        riding += 1
        t.timings = phases | {"round": _ms(t0)}


def _hybrid_work(t: Trainer, base: Snapshot, batches: list[Batch]) -> tuple[list[tuple[str, Pieces]],
                                                                            dict[str, float]]:
    """k local steps from ``base``; the record carries the parameter delta."""
    load_ms = t.load_if_new(base)
    t1 = time.perf_counter()
    loss = t.model.local_steps(batches)
    t2 = time.perf_counter()
    delta = t.model.delta_from(base.tensors)
    parts = t.pack(delta, base=base, samples=_rows(batches), loss=loss, payload="delta")
    return parts, {"load": load_ms, "compute": (t2 - t1) * 1000, "serialize": _ms(t2)}


def _ring_work(t: Trainer, batches: list[Batch]) -> tuple[Pieces, float, float]:
    """k local steps; the record carries the full parameters (uncompressed: they get averaged)."""
    t1 = time.perf_counter()
    loss = t.model.local_steps(batches)
    t2 = time.perf_counter()
    value = t.pack_params(t.model.state(), samples=_rows(batches), loss=loss)
    return value, (t2 - t1) * 1000, _ms(t2)


async def run_hybrid(t: Trainer) -> None:
    k = t.spec.sync.local_steps
    snap = await t.params_after(-1)
    while not snap.header.final:
        t0 = time.perf_counter()
        batches = [await t.batch() for _ in range(k)]
        parts, phases = await t.offload(_hybrid_work, t, snap, batches)
        await t.send_parts(parts)
        t1 = time.perf_counter()
        snap = await t.next_params(snap)
        t.timings = phases | {"wait": _ms(t1), "round": _ms(t0), **snap.phases()}


async def run_ring(t: Trainer) -> None:
    """Gossip: no central averaging; the aggregator only reads the ring topic to follow along."""
    assert t.ring is not None
    k, deadline_s = t.spec.sync.local_steps, t.spec.sync.straggler_deadline_ms / 1000
    snap = await t.params_after(-1)
    await t.offload(t.load_if_new, snap)
    patient = True  # after a missed deadline, stop waiting until the neighbour is heard again
    while not _final(t):
        t0 = time.perf_counter()
        await t.ring.own(t.data.partitions)
        batches = [await t.batch() for _ in range(k)]
        value, compute_ms, ser_ms = await t.offload(_ring_work, t, batches)
        target = ring_target(t.data.partitions, t.spec.data.partitions)
        await t.send(t.ring_topic.name, value, partition=target if target is not None
                     else min(t.data.partitions, default=0))
        t1 = time.perf_counter()
        got = await t.ring.receive(deadline_s if (patient and target is not None) else 0.0)
        wait_ms = _ms(t1)
        if got is not None:
            try:
                await t.offload(t.model.average_with, got[1])
            except InvalidMessage as exc:
                log.warning("trainer %s: ignoring a bad ring message from %s: %s", t.worker_id,
                            got[0].worker_id, exc.reason)
        patient = got is not None or target is None
        t.timings = {"compute": compute_ms, "serialize": ser_ms, "wait": wait_ms, "round": _ms(t0)}


def _final(t: Trainer) -> bool:
    latest = t.follower.latest
    return latest is not None and latest.header.final


LOOPS: dict[str, Callable[[Trainer], Awaitable[None]]] = {
    "sync": run_sync, "async": run_async, "hybrid": run_hybrid, "ring": run_ring,
}
