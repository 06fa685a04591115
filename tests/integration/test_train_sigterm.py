"""``aiaas train`` stopped with SIGTERM (``kill PID``, a supervisor) stops its job's processes.

Python's default for SIGTERM ended the command at once and left the aggregator and trainers running
with no parent (a continuous job trained on, README "Train from your topic"); now SIGTERM stops the
job as Ctrl-C does and the command exits 143. A SIGKILLed command, which can clean nothing up,
takes them along too (they are tied to it).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import pytest
import yaml

from aiaas.agents.processes import child_env
from aiaas.streams.settings import Settings
from tests.infra import ROOT, alive

pytestmark = pytest.mark.timeout(180)


def _children(pid: int) -> set[int]:
    """Live (not zombie) processes whose parent is ``pid``."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(stat.parent.name))
    return found


def _alive(pids: set[int]) -> set[int]:
    return {pid for pid in pids if alive(pid)}


async def _started_job(settings: Settings, tmp_path: Path) -> tuple[asyncio.subprocess.Process, bytes]:
    """``aiaas train`` of a job that would run for hours, once its aggregator and trainer are up."""
    spec = {"job_id": f"sigterm-{time.time_ns() % 10**9}", "trainers": 1, "batch_size": 32,
            "steps": 10**6, "eval_interval": 10**5, "sync": {"mode": "sync"},
            "model": {"input_dim": 64, "hidden": [16], "output_dim": 10},
            "data": {"source": "digits", "partitions": 1}, "export": {"model_name": "sigterm"}}
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(spec))
    env = child_env({"AIAAS_TOPIC_PREFIX": settings.topic_prefix, "AIAAS_LOG_LEVEL": "WARNING"})
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "aiaas.cli.main", "train", "--spec", str(tmp_path / "job.yaml"),
        "--log-dir", str(tmp_path / "logs"), cwd=ROOT, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    assert proc.stdout is not None
    out = b""
    deadline = time.monotonic() + 120
    while b"logs in" not in out:  # the aggregator and the trainer are started
        line = await asyncio.wait_for(proc.stdout.readline(), max(0.1, deadline - time.monotonic()))
        assert line, out.decode()[-2000:]
        out += line
    return proc, out


async def test_sigterm_stops_the_jobs_processes(settings: Settings, tmp_path: Path) -> None:
    proc, out = await _started_job(settings, tmp_path)
    try:
        children = _children(proc.pid)
        assert len(children) == 2, (children, out.decode()[-2000:])
        proc.send_signal(signal.SIGTERM)
        rest, _ = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 143, (out + rest).decode()[-2000:]
        assert b"stopped (SIGTERM)" in rest
        assert not _alive(children)  # stopped and reaped before the command ended
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_a_launcher_killed_outright_takes_its_jobs_processes_along(
    settings: Settings, tmp_path: Path
) -> None:
    """SIGKILL leaves ``aiaas train`` no clean-up: its aggregator and trainer are tied to it
    (PR_SET_PDEATHSIG) and stop by themselves instead of training on as orphans."""
    proc, out = await _started_job(settings, tmp_path)
    children = _children(proc.pid)
    try:
        assert len(children) == 2, (children, out.decode()[-2000:])
        proc.kill()
        await proc.wait()
        async with asyncio.timeout(60):  # they got SIGTERM: they leave their group and exit
            while _alive(children):  # noqa: ASYNC110 - processes that are not ours to wait on
                await asyncio.sleep(0.2)
    finally:
        for pid in _alive(children):
            os.kill(pid, signal.SIGKILL)
