"""The bridge's audit records on the ``audit`` topic: who did what, when, with what outcome.

Records go through the writer the CLI uses too (``aiaas.streams.audit``), so both speak one schema
(``aiaas.schemas.audit``). Control-plane actions (job submissions, async requests) are recorded one by one.
Sync inference, the high-volume data plane, is summarised: one record per (tenant, key, model,
status) per ``interval_s`` with the count, unless ``each`` asks for one record per request. Records
are queued on the producer without awaiting the broker's ack: auditing never adds latency or
fails a request (a record that cannot be queued is logged). With nothing counted the flusher waits
for the first count instead of waking every ``interval_s`` (cost at rest, issue 18 item 5).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

from aiaas.agents.bridge.keys import Principal
from aiaas.schemas.audit import AuditRecord
from aiaas.streams.audit import AuditWriter
from aiaas.streams.lifecycle import cancel
from aiaas.streams.producer import Producer

Key = tuple[str, str, str, str, int]  # tenant, key id, action, target, status


class AuditLog:
    def __init__(
        self, producer: Producer, topic: str, *, each: bool = False, interval_s: float = 1.0
    ) -> None:
        self.producer = producer
        self.topic = topic
        self.writer = AuditWriter(producer, topic)
        self.each = each
        self.interval_s = interval_s
        self._counts: Counter[Key] = Counter()
        self._since = time.time()
        self._task: asyncio.Task[None] | None = None
        self._counted = asyncio.Event()  # set once something is counted since the last flush

    async def start(self) -> None:
        self._task = asyncio.create_task(self._flush_forever(), name="audit-flush")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None
        await self.flush()

    async def record(self, who: Principal, action: str, target: str, *, error: str | None = None,
                     **details: Any) -> None:
        """One record of ``action`` by ``who``: ``failed`` with the reason when ``error`` is given."""
        await self._send(AuditRecord(tenant=who.tenant.name, actor=who.key_id, action=action,
                                     target=target, ts=time.time(), source="bridge",
                                     outcome="ok" if error is None else "failed", error=error,
                                     details=details))

    async def infer(self, who: Principal, model: str, status: int, request_id: str) -> None:
        if self.each:
            await self.record(who, "infer", model, status=status, request_id=request_id)
        else:
            if not self._counts:  # the first count after a flush (or at rest): its window starts now
                self._since = time.time()
                self._counted.set()
            self._counts[(who.tenant.name, who.key_id, "infer", model, status)] += 1

    async def flush(self) -> None:
        """Send the summaries counted since the last flush."""
        counts, since, now = self._counts, self._since, time.time()
        self._counts, self._since = Counter(), now
        for (tenant, actor, action, target, status), n in counts.items():
            await self._send(AuditRecord(tenant=tenant, actor=actor, action=action, target=target, ts=now,
                                         details={"status": status, "count": n, "since": since}))

    async def _flush_forever(self) -> None:
        while True:
            if not self._counts:  # at rest: no wake-ups until a request is counted
                self._counted.clear()
                await self._counted.wait()
            await asyncio.sleep(self.interval_s)  # the flush period itself, not a synchronisation
            await self.flush()

    async def _send(self, rec: AuditRecord) -> None:
        await self.writer.queue(rec)  # not awaiting the ack: no latency; a failure is logged there
