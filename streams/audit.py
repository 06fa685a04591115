"""The one writer and reader of the ``audit`` topic, shared by the HTTP bridge and the CLI.

Every control-plane action (docs/operations.md, "Audit") is one ``AuditRecord`` saying who did
what to what, when, and with what outcome. The bridge queues its records without awaiting the ack
(auditing adds no latency to a request); a CLI command awaits it, since the process ends right after.
Either way a record that cannot be written is logged in one line and never fails the action itself.
``audited`` wraps one CLI action: it writes ``ok``, or ``failed`` with the reason and re-raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import json
import logging
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition
from pydantic_settings import BaseSettings, SettingsConfigDict

from aiaas.schemas.audit import AuditRecord, Source
from aiaas.schemas.errors import AiaasError, InvalidMessage
from aiaas.streams.admin import Admin
from aiaas.streams.lifecycle import stop_consumer
from aiaas.streams.producer import Producer
from aiaas.streams.readers import open_assigned
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics

log = logging.getLogger(__name__)
ACK_TIMEOUT_S = 10.0  # a CLI command waits at most this long for its audit record's ack


class AuditSettings(BaseSettings):
    """Who the CLI says it is in audit records (``AIAAS_AUDIT_ACTOR``; default ``user@host``)."""

    model_config = SettingsConfigDict(env_prefix="AIAAS_AUDIT_", extra="ignore")

    actor: str | None = None


def cli_actor() -> str:
    """The person at the terminal: ``AIAAS_AUDIT_ACTOR``, else the login name and the host."""
    configured = AuditSettings().actor
    if configured:
        return configured
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name (a container without a passwd entry)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def error_text(exc: BaseException) -> str:
    """Why an action failed, in one line: the code, reason and details of an ``AiaasError``."""
    if isinstance(exc, AiaasError):
        details = {k: v for k, v in exc.details.items() if k != "log_tail"}
        extra = f" {json.dumps(details, default=str)}" if details else ""
        return f"{exc.code.value}: {exc.reason}{extra}"[:1000]
    if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt):
        return "interrupted"
    text = str(exc)
    return f"{type(exc).__name__}: {text}"[:1000] if text else type(exc).__name__


class AuditWriter:
    """Writes ``AuditRecord``s to the audit topic through a producer someone else started."""

    def __init__(self, producer: Producer, topic: str) -> None:
        self.producer = producer
        self.topic = topic

    async def queue(self, rec: AuditRecord) -> asyncio.Future[Any] | None:
        """Queue ``rec`` without waiting for the broker; None (and a log line) when it could not be."""
        try:
            return await self.producer.send_message(self.topic, rec, key=rec.tenant or None)
        except Exception:  # a lost audit record is logged, never a failed action
            log.exception("audit record %s %s not queued", rec.action, rec.target)
            return None

    async def write(self, rec: AuditRecord, timeout_s: float = ACK_TIMEOUT_S) -> bool:
        """Queue ``rec`` and wait for the broker's ack; False (and a log line) when it failed."""
        fut = await self.queue(rec)
        if fut is None:
            return False
        try:
            async with asyncio.timeout(timeout_s):
                await fut
        except Exception as exc:
            _not_written(rec, exc)
            return False
        return True


def _not_written(rec: AuditRecord, exc: BaseException) -> None:
    """One log line for a record that could not be written: a warning when the action happened
    (it is now unaudited); for a failed action only at INFO, as the action's own error line (often
    the same unreachable broker) already tells the user, and says it in one line."""
    level = logging.WARNING if rec.outcome == "ok" else logging.INFO
    log.log(level, "audit record %s %s not written: %s", rec.action, rec.target, error_text(exc))


def record(action: str, target: str, *, actor: str, source: Source = "cli", tenant: str = "",
           error: BaseException | str | None = None, **details: Any) -> AuditRecord:
    """An audit record of ``action`` on ``target`` now: ``failed`` with the reason when ``error``."""
    why = error if isinstance(error, str) or error is None else error_text(error)
    return AuditRecord(tenant=tenant, actor=actor, action=action, target=target, ts=time.time(),
                       source=source, outcome="ok" if error is None else "failed", error=why,
                       details=details)


async def write_one(settings: Settings, rec: AuditRecord, producer: Producer | None = None) -> bool:
    """Write one record and wait for its ack, through ``producer`` or a producer of its own."""
    topic = Topics(settings).audit()
    try:
        async with Admin(settings) as admin:
            await admin.ensure_topics([topic])
        if producer is not None and producer.running:
            return await AuditWriter(producer, topic.name).write(rec)
        async with Producer(settings) as own:
            return await AuditWriter(own, topic.name).write(rec)
    except Exception as exc:  # the action happened (or failed) all the same: say so, do not hide it
        _not_written(rec, exc)
        return False


@contextlib.asynccontextmanager
async def audited(settings: Settings, action: str, target: str, *, producer: Producer | None = None,
                  tenant: str = "", **details: Any) -> AsyncIterator[dict[str, Any]]:
    """Audit the body as one CLI action: ``ok``, or ``failed`` with why (the error is re-raised).
    The body may add details (e.g. the version it made) to the dict it is given."""
    extra: dict[str, Any] = {}
    actor = cli_actor()
    try:
        yield extra
    except BaseException as exc:
        await write_one(settings, record(action, target, actor=actor, tenant=tenant, error=exc,
                                         **details, **extra), producer)
        raise
    await write_one(settings, record(action, target, actor=actor, tenant=tenant, **details, **extra),
                    producer)


async def _open(settings: Settings, last: int) -> tuple[AIOKafkaConsumer, dict[TopicPartition, int]]:
    """A reader of the audit topic placed ``last`` records before its end (per partition), and the
    end offsets it had when opened."""
    spec = Topics(settings).audit()
    async with Admin(settings) as admin:
        await admin.ensure_topics([spec])
        meta = await admin.call(f"describing {spec.name}", lambda: admin.client.describe_topics([spec.name]))
    tps = [TopicPartition(spec.name, p["partition"]) for t in meta for p in t["partitions"]]
    consumer = await open_assigned(settings)
    try:
        consumer.assign(tps)
        begin = await consumer.beginning_offsets(tps)
        end = await consumer.end_offsets(tps)
        for tp in tps:
            consumer.seek(tp, max(begin[tp], end[tp] - last))
    except BaseException:
        await stop_consumer(consumer)
        raise
    return consumer, end


async def tail(settings: Settings, last: int = 20, follow: bool = False) -> AsyncIterator[AuditRecord]:
    """The last ``last`` audit records (per partition) in time order, then, with ``follow``, every
    new one as it is written. A record that does not decode is logged and skipped."""
    consumer, end = await _open(settings, last)
    try:
        backlog: list[AuditRecord] = []
        while await _behind(consumer, end):
            backlog += _decoded(await consumer.getmany(timeout_ms=500))
        for rec in sorted(backlog, key=lambda r: r.ts):
            yield rec
        while follow:
            for rec in _decoded(await consumer.getmany(timeout_ms=500)):
                yield rec
    finally:
        await stop_consumer(consumer)


async def _behind(consumer: AIOKafkaConsumer, end: dict[TopicPartition, int]) -> bool:
    for tp, off in end.items():
        if await consumer.position(tp) < off:
            return True
    return False


def _decoded(batches: dict[TopicPartition, list[Any]]) -> list[AuditRecord]:
    found = []
    for tp, msgs in batches.items():
        for msg in msgs:
            try:
                found.append(AuditRecord.from_record(msg.value))
            except InvalidMessage as exc:
                log.warning("skipping %s[%d]@%d: %s %s", tp.topic, tp.partition, msg.offset, exc.reason,
                            exc.details)
    return found
