"""The ``jobs`` topic: job specs and job statuses, read and written the same way by every process.

Specs are keyed ``<job>`` and statuses ``<job>:status`` (a job id cannot hold ``:``), so compaction
keeps a job's spec beside its latest status. Records are told apart by their envelope ``kind``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import yaml
from aiokafka.structs import ConsumerRecord, TopicPartition

from aiaas.schemas.errors import InvalidMessage, NotFound
from aiaas.schemas.jobs import JobSpec
from aiaas.schemas.records import JobStatus
from aiaas.schemas.training import PARAMS_KEY, MetricsMessage, ParameterSnapshot
from aiaas.streams.admin import ensure
from aiaas.streams.codecs import split_header
from aiaas.streams.lifecycle import stop_consumer
from aiaas.streams.producer import Producer
from aiaas.streams.readers import open_assigned
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics

log = logging.getLogger(__name__)
FINAL_STATES = ("succeeded", "missed_target", "failed")
LOST_AFTER_BEATS = 3  # a running status not refreshed for this many heartbeats: its writer is gone


def load_spec_file(path: str | Path) -> JobSpec:
    """A JobSpec from a YAML (or JSON) file; a bad spec raises InvalidMessage naming the fields."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidMessage("cannot read the job spec file", path=str(path), detail=str(exc)) from exc
    if not isinstance(data, dict):
        raise InvalidMessage("the job spec file must hold a mapping", path=str(path))
    data.pop("kind", None)
    return JobSpec.from_record(json.dumps(data))


def trainer_group(settings: Settings, job_id: str) -> str:
    """The trainers' consumer group (their faust app id): membership of a job's trainers."""
    return f"{settings.topic_prefix}train.{job_id}.trainers"


def aggregator_group(settings: Settings, job_id: str) -> str:
    """The group whose offsets the aggregator commits in its checkpoint transactions."""
    return f"{settings.topic_prefix}train.{job_id}.aggregator"


def spec_key(job_id: str) -> str:
    return job_id


def status_key(job_id: str) -> str:
    return f"{job_id}:status"


async def submit(settings: Settings, spec: JobSpec) -> None:
    """Write ``spec`` to the jobs topic (creating the topic when missing) and a ``submitted`` status."""
    topic = Topics(settings).jobs()
    await ensure(settings, [topic])
    async with Producer(settings) as producer:
        await (await producer.send_message(topic.name, spec, key=spec_key(spec.job_id)))
        status = JobStatus(job_id=spec.job_id, state="submitted", model_name=spec.model_name, ts=time.time())
        await (await producer.send_message(topic.name, status, key=status_key(spec.job_id)))


async def write_status(producer: Producer, settings: Settings, status: JobStatus) -> None:
    """Publish ``status`` and wait for the broker's ack (statuses are rare and must not be lost)."""
    topic = Topics(settings).jobs().name
    await (await producer.send_message(topic, status, key=status_key(status.job_id)))


def shown_state(status: JobStatus, now: float | None = None) -> tuple[str, str]:
    """(state, note) as ``aiaas jobs status`` shows it: a job whose status promised heartbeats and
    has had none for ``LOST_AFTER_BEATS`` of them is ``lost`` (its processes are gone); the note
    says why a job failed or missed its target, or how old a waiting status is."""
    now = time.time() if now is None else now
    age = max(0.0, now - status.ts)
    if status.state in FINAL_STATES:
        return status.state, status.error or ""
    if status.heartbeat_s and age > LOST_AFTER_BEATS * status.heartbeat_s:
        return "lost", (f"was {status.state}, no heartbeat for {_age(age)} (every {status.heartbeat_s:g}s "
                        "expected): its processes are gone")
    if status.state == "submitted":
        return status.state, f"waiting for a runner for {_age(age)} (aiaas worker jobs, or aiaas train)"
    return status.state, f"heartbeat {_age(age)} ago"


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s"
    return f"{seconds / 60:.0f}m" if seconds < 7200 else f"{seconds / 3600:.1f}h"


async def latest_status(settings: Settings, job_id: str) -> JobStatus | None:
    """The job's latest status on the topic (None when it has none)."""
    return (await read_jobs(settings))[1].get(job_id)


async def mark_failed(settings: Settings, spec: JobSpec, reason: str, since: float = 0.0) -> None:
    """Write a ``failed`` status unless the job already has a final one written at or after
    ``since`` (an aggregator may have ended it a moment before its launcher gave up): a final
    status is never overwritten by a second opinion. Best effort: a failure to write is logged."""
    with contextlib.suppress(Exception):
        seen = await latest_status(settings, spec.job_id)
        if seen is not None and seen.state in FINAL_STATES and seen.ts >= since:
            return
    status = JobStatus(job_id=spec.job_id, state="failed", error=reason, model_name=spec.model_name,
                       ts=time.time())
    try:
        async with Producer(settings) as producer:
            await write_status(producer, settings, status)
    except Exception as exc:  # the caller's own error is what matters
        log.warning("job %s: could not write its failed status: %r", spec.job_id, exc)


def _decode(rec: ConsumerRecord[bytes, bytes]) -> JobSpec | JobStatus | None:
    """A spec or a status; anything else on the topic (or junk) is skipped."""
    for model in (JobSpec, JobStatus):
        try:
            return model.from_record(rec.value)
        except InvalidMessage:
            continue
    return None


async def _follow(
    settings: Settings, tp: TopicPartition, from_end: bool = False, **kw: Any
) -> AsyncIterator[ConsumerRecord[bytes, bytes] | None]:
    """Every record of one partition (from the start, or only new ones), forever, read outside any
    group; ``None`` each time the reader has caught up with the end."""
    consumer = await open_assigned(settings, **kw)
    try:
        consumer.assign([tp])
        await (consumer.seek_to_end(tp) if from_end else consumer.seek_to_beginning(tp))
        while True:
            batch = await consumer.getmany(tp, timeout_ms=200)
            for rec in batch.get(tp, []):
                yield rec
            end = consumer.last_stable_offset(tp)
            if not batch and end is not None and await consumer.position(tp) >= end:
                yield None
    finally:
        await stop_consumer(consumer)


async def _records(
    settings: Settings, from_end: bool = False
) -> AsyncIterator[ConsumerRecord[bytes, bytes] | None]:
    """The jobs topic through ``_follow`` (created first if missing)."""
    topic = Topics(settings).jobs()
    await ensure(settings, [topic])
    async for rec in _follow(settings, TopicPartition(topic.name, 0), from_end):
        yield rec


async def read_jobs(settings: Settings) -> tuple[dict[str, JobSpec], dict[str, JobStatus]]:
    """The latest spec and status of every job on the topic."""
    specs: dict[str, JobSpec] = {}
    statuses: dict[str, JobStatus] = {}
    async for rec in _records(settings):
        if rec is None:
            break
        msg = _decode(rec)
        if isinstance(msg, JobSpec):
            specs[msg.job_id] = msg
        elif isinstance(msg, JobStatus):
            statuses[msg.job_id] = msg
    return specs, statuses


async def read_spec(settings: Settings, job_id: str, timeout_s: float = 30.0) -> JobSpec:
    """The latest spec of ``job_id``, waiting up to ``timeout_s`` for it to be submitted."""
    found: JobSpec | None = None
    try:
        async with asyncio.timeout(timeout_s):
            async for rec in _records(settings):
                if rec is None:
                    if found is not None:
                        return found
                    continue
                if rec.key == spec_key(job_id).encode():
                    msg = _decode(rec)
                    found = msg if isinstance(msg, JobSpec) else found
    except TimeoutError:
        pass
    if found is None:
        raise NotFound("no spec for this job on the jobs topic", job_id=job_id)
    return found


async def follow(settings: Settings, from_end: bool = False) -> AsyncIterator[JobSpec | JobStatus]:
    """Specs and statuses as they land (after the existing ones unless ``from_end``)."""
    async for rec in _records(settings, from_end=from_end):
        if rec is None:
            continue
        msg = _decode(rec)
        if msg is not None:
            yield msg


async def wait_final(settings: Settings, job_id: str, timeout_s: float, since: float = 0.0) -> JobStatus:
    """The first status of ``job_id`` in a final state stamped at or after ``since`` (epoch s)."""
    async with asyncio.timeout(timeout_s):
        async for msg in follow(settings):
            if (isinstance(msg, JobStatus) and msg.job_id == job_id and msg.state in FINAL_STATES
                    and msg.ts >= since):
                return msg
    raise NotFound("job status stream ended", job_id=job_id)  # pragma: no cover - follow never ends


async def follow_metrics(settings: Settings, job_id: str) -> AsyncIterator[MetricsMessage | None]:
    """A job's metrics from the first, as they land; ``None`` each time the reader is caught up."""
    tp = TopicPartition(Topics(settings).train_metrics(job_id).name, 0)
    async for rec in _follow(settings, tp):
        if rec is None:
            yield None
            continue
        try:
            yield MetricsMessage.from_record(rec.value)
        except InvalidMessage:
            continue


async def read_metrics(settings: Settings, job_id: str) -> list[MetricsMessage]:
    """Every metrics record of a job written so far."""
    out: list[MetricsMessage] = []
    async for msg in follow_metrics(settings, job_id):
        if msg is None:
            return out
        out.append(msg)
    return out  # pragma: no cover - follow_metrics never ends on its own


async def params_versions(
    settings: Settings, job_id: str
) -> AsyncIterator[tuple[int, ParameterSnapshot]]:
    """(offset, header) of the parameter versions a job publishes, from the first, as they land."""
    tp = TopicPartition(Topics(settings).train_params(job_id).name, 0)
    async for rec in _follow(settings, tp, isolation_level="read_uncommitted"):
        if rec is not None and rec.key == PARAMS_KEY.encode():
            try:
                yield rec.offset, split_header(rec.value, ParameterSnapshot)[0]
            except InvalidMessage:
                continue
