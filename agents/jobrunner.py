"""``aiaas worker jobs``: run the training jobs submitted to the ``jobs`` topic, on this machine.

A job counts as waiting when its spec is on the topic and its latest status is ``submitted`` (or it
has none yet, as when the HTTP bridge's ``POST /v1/jobs`` wrote only the spec). Waiting jobs run one
after another with local processes (``aiaas.agents.launcher.LocalJob``; or in this process); a job that
fails to run gets a ``failed`` status with the reason, and the runner goes on with the next.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path

from aiaas.schemas.audit import JOB_STOP
from aiaas.schemas.jobs import JobSpec
from aiaas.schemas.records import JobStatus
from aiaas.streams.audit import record, write_one
from aiaas.streams.jobs import follow, mark_failed, read_jobs
from aiaas.streams.lifecycle import cancel
from aiaas.streams.settings import Settings

from .launcher import LocalJob, run_in_process, why_failed

log = logging.getLogger(__name__)
WAITING = (None, "submitted")
FOREVER_S = 10.0 ** 9


async def _feed(settings: Settings, queue: asyncio.Queue[JobSpec], seen: set[str],
                states: dict[str, str]) -> None:
    """Queue every spec not seen before whose job is waiting."""
    async for msg in follow(settings):
        if isinstance(msg, JobStatus):
            states[msg.job_id] = msg.state
        elif msg.job_id not in seen and states.get(msg.job_id) in WAITING:
            seen.add(msg.job_id)
            await queue.put(msg)


async def _run_one(settings: Settings, spec: JobSpec, trainers: int | None, log_dir: Path | None,
                   in_process: bool) -> None:
    job_logs = log_dir / spec.job_id if log_dir else None
    timeout_s = FOREVER_S if spec.mode == "continuous" else 600.0  # a continuous job never ends
    try:
        if in_process:
            status = await run_in_process(settings, spec, trainers=trainers, timeout_s=timeout_s)
        else:
            async with LocalJob(settings, spec, trainers=trainers, log_dir=job_logs) as job:
                status = await job.wait(timeout_s)
        log.info("job %s %s: %s", spec.job_id, status.state, status.metrics)
    except Exception as exc:
        log.exception("job %s could not run", spec.job_id)
        # LocalJob may have marked it failed already, or its aggregator ended it: no second opinion
        await mark_failed(settings, spec, why_failed(exc))
        await _audit_stop(settings, spec, None, exc)
        return
    await _audit_stop(settings, spec, status, None)


async def _audit_stop(settings: Settings, spec: JobSpec, status: JobStatus | None,
                      exc: BaseException | None) -> None:
    """The job's end on the audit topic (docs/operations.md, "Audit"): ok when it succeeded."""
    state = status.state if status is not None else "failed"
    error = exc or (None if state == "succeeded" else f"{state}: {status.error if status else ''}")
    await write_one(settings, record(JOB_STOP, spec.job_id, actor=f"jobs-worker@{socket.gethostname()}",
                                     source="agent", error=error, state=state))


async def watch_and_run(settings: Settings, *, trainers: int | None = None,
                        log_dir: Path | None = None, in_process: bool = False) -> None:
    """Forever: run each waiting job (those already waiting first, then new ones as they come),
    as local processes (or, ``in_process``, as tasks of this process)."""
    specs, statuses = await read_jobs(settings)
    states: dict[str, str] = {j: s.state for j, s in statuses.items()}
    seen = {j for j in specs if states.get(j) not in WAITING}
    queue: asyncio.Queue[JobSpec] = asyncio.Queue()
    feeder = asyncio.create_task(_feed(settings, queue, seen, states), name="jobs-feed")
    log.info("jobs worker: %d jobs known, watching for new ones", len(specs))
    try:
        while True:
            spec = await queue.get()
            if states.get(spec.job_id) not in WAITING:
                continue
            log.info("running job %s (%s mode)", spec.job_id, spec.sync.mode)
            await _run_one(settings, spec, trainers, log_dir, in_process)
    finally:
        await cancel(feeder)
