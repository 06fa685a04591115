"""The job's status on the ``jobs`` topic, as the aggregator writes it, with heartbeats.

While the job is not final, the latest status is rewritten every ``heartbeat_s`` with a fresh
``ts`` (and ``heartbeat_s`` itself), so ``aiaas jobs status`` can tell a running job from one whose
processes are gone. Nothing is written after a final status: a heartbeat never overwrites it.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiaas.schemas.jobs import JobSpec
from aiaas.schemas.records import JobStatus
from aiaas.streams.jobs import FINAL_STATES, write_status
from aiaas.streams.lifecycle import cancel
from aiaas.streams.producer import Producer
from aiaas.streams.settings import Settings

log = logging.getLogger(__name__)


def job_status(spec: JobSpec, state: str, version: int, metrics: dict[str, float] | None,
               error: str | None = None, model_version: int | None = None) -> JobStatus:
    return JobStatus(job_id=spec.job_id, state=state, version=version,
                     metrics=metrics or {}, model_name=spec.model_name, model_version=model_version,
                     error=error, ts=time.time())


def target_note(spec: JobSpec, metrics: dict[str, float], stop_reason: str | None) -> str | None:
    """Why a job with a target missed it (None when it has none or met it)."""
    t = spec.target
    if t is None:
        return None
    got = metrics.get(t.metric)
    op = ">=" if t.maximize else "<="
    seen = "never evaluated" if got is None else f"reached {got:.4f}"
    return (f"target {t.metric} {op} {t.value} not met: {seen} when the budget ran out "
            f"({stop_reason or 'stopped'} at epoch {metrics.get('epochs', 0.0):.2f})")


class StatusReporter:
    """Writes a job's statuses (one at a time) and keeps the latest alive with heartbeats."""

    def __init__(self, settings: Settings, producer: Producer, heartbeat_s: float) -> None:
        self.settings, self.producer, self.heartbeat_s = settings, producer, heartbeat_s
        self.last: JobStatus | None = None
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    @property
    def final(self) -> bool:
        return self.last is not None and self.last.state in FINAL_STATES

    async def write(self, status: JobStatus) -> JobStatus:
        """Publish ``status`` (ignored after a final one) and start the heartbeats if needed."""
        async with self._lock:
            if self.final:
                log.info("job %s: %s status not written after %s", status.job_id, status.state,
                         self.last.state if self.last else "")
                return status
            status = status.model_copy(update={"heartbeat_s": None if status.state in FINAL_STATES
                                               else self.heartbeat_s})
            await write_status(self.producer, self.settings, status)
            self.last = status
        if self._task is None and not self.final:
            self._task = asyncio.create_task(self._beat(), name="status-heartbeat")
        return status

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)  # the heartbeat's period, not a synchronisation
            try:
                async with self._lock:
                    if self.last is None or self.final:
                        return
                    self.last = self.last.model_copy(update={"ts": time.time()})
                    await write_status(self.producer, self.settings, self.last)
            except Exception as exc:  # a missed heartbeat is retried on the next beat
                log.warning("job status heartbeat failed: %r", exc)

    async def stop(self) -> None:
        if self._task is not None:
            await cancel(self._task)
