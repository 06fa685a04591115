"""How an aggregator (one shard of it) comes up: where it resumes, which mode it runs, what it reads.

Pieces of ``Aggregator.start`` that need nothing of the running server: the newest checkpoint of
the shard (``Resumed``), the sync mode's object, and the input consumer placed at the offsets the
checkpoint reflects.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from aiaas.schemas.jobs import JobSpec
from aiaas.streams.retry import started
from aiaas.streams.settings import Settings
from aiaas.streams.topics import TopicSpec

from .checkpoint import find_latest
from .members import Membership
from .modes import AsyncMode, Mode, RingMode, RoundMode
from .state import ServerState

FIRST_ROUND_GRACE_S = 5.0  # the first round also waits for trainers still loading their data


@dataclass(slots=True)
class Resumed:
    offsets: dict[int, int] = field(default_factory=dict)  # next offset to read per input partition
    version: int | None = None  # the checkpoint's version (None: a new job)
    finished: bool = False  # the job had ended (final checkpoint and final version)


async def resume(settings: Settings, spec: JobSpec, state: ServerState) -> Resumed:
    """Restore ``state`` from the shard's newest checkpoint, if any."""
    found = await find_latest(settings, spec.job_id, state.shard)
    if found.checkpoint is None:
        return Resumed()
    header, tensors = found.checkpoint
    await asyncio.to_thread(state.restore, tensors, header.server_state)
    return Resumed({int(p): o for p, o in header.consumed_offsets.items()}, header.version,
                   bool(found.latest is not None and found.latest.final and header.final))


def make_mode(spec: JobSpec, state: ServerState, members: Membership, gang: int) -> Mode:
    s = spec.sync.mode
    if s == "async":
        return AsyncMode(spec, state, members)
    if s == "ring":
        return RingMode(spec, state, members)
    deadline = spec.sync.straggler_deadline_ms / 1000
    return RoundMode(spec, state, members, first_deadline_s=deadline + FIRST_ROUND_GRACE_S,
                     first_min_workers=gang)


async def open_input(settings: Settings, group: str, topic: TopicSpec,
                     offsets: dict[int, int]) -> AIOKafkaConsumer:
    """The consumer of the input topic, every partition assigned, at ``offsets`` (else 0)."""
    kw = settings.consumer_kwargs(group, fetch_max_wait_ms=20)
    consumer = await started(lambda: AIOKafkaConsumer(**kw), settings,
                             f"starting the aggregator's consumer of {topic.name}")
    tps = [TopicPartition(topic.name, p) for p in range(topic.partitions)]
    consumer.assign(tps)
    for tp in tps:
        consumer.seek(tp, offsets.get(tp.partition, 0))
    return consumer
