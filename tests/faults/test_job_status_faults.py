"""A job whose processes are killed is shown as ``lost``, not ``running`` for ever (real broker).

The aggregator rewrites its running status every ``heartbeat_s``; after SIGKILL of every process
of the job nothing refreshes it, and ``aiaas.streams.jobs.shown_state`` (what ``aiaas jobs status``
prints) turns it into ``lost`` with how long the heartbeats have been missing.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from aiaas.agents.launcher import LocalJob
from aiaas.schemas.jobs import JobSpec
from aiaas.schemas.records import JobStatus
from aiaas.streams.jobs import LOST_AFTER_BEATS, follow, read_jobs, shown_state
from aiaas.streams.settings import Settings

pytestmark = pytest.mark.timeout(180)
BEAT_S = 0.5


async def _running(settings: Settings, job_id: str, beats: int) -> JobStatus:
    """The job's status once ``beats`` heartbeats of its running status have landed."""
    seen = 0
    async for msg in follow(settings):
        if isinstance(msg, JobStatus) and msg.job_id == job_id and msg.state == "running":
            assert msg.heartbeat_s == BEAT_S
            seen += 1
            if seen > beats:
                return msg
    raise AssertionError("the jobs topic ended")  # pragma: no cover - follow never ends


async def test_killed_job_shows_as_lost_not_running(settings: Settings, tmp_path: Path) -> None:
    spec = JobSpec.model_validate({
        "job_id": "killed", "model": {"input_dim": 64, "hidden": [32], "output_dim": 10}, "trainers": 1,
        "steps": 100_000, "eval_interval": 50, "sync": {"mode": "sync"},
        "data": {"source": "digits", "partitions": 1},
    })
    env = {"AIAAS_AGGREGATOR_HEARTBEAT_S": str(BEAT_S)}
    async with LocalJob(settings, spec, log_dir=tmp_path, env=env) as job:
        async with asyncio.timeout(90):
            status = await _running(settings, spec.job_id, beats=2)
        assert shown_state(status)[0] == "running"
        for proc in [*job.trainer_procs.values(), job.aggregator]:
            assert proc is not None
            job.kill(proc, signal.SIGKILL)
            await proc.wait()
        async with asyncio.timeout(LOST_AFTER_BEATS * BEAT_S + 20):
            while True:
                _, statuses = await read_jobs(settings)
                state, why = shown_state(statuses[spec.job_id])
                if state == "lost":
                    break
                assert state == "running"
                await asyncio.sleep(BEAT_S)  # polling what `aiaas jobs status` would show
        assert "no heartbeat" in why and "was running" in why
    _, statuses = await read_jobs(settings)  # the launcher, ending, says what it knows
    assert statuses[spec.job_id].state == "failed"
