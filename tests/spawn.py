"""Child processes for tests and benchmarks: a bridge, inference workers, and waits on them.

``BridgeProcess`` runs ``python -m aiaas.agents.bridge.main`` and waits until ``/v2/health/ready``
answers; ``spawn_workers`` runs ``python -m aiaas.agents.inference`` processes whose log lines say how
many partitions each owns, so ``until_processes_balanced`` can wait on the group (never a sleep).
Both run from the repository (``ROOT``), as the tests and ``python -m benchmarks.<name>`` do.
``run_to_end`` runs a command to its end (a CLI call, a script), never outliving the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

from aiaas.agents.processes import child_env, free_port, wait_http_ready
from aiaas.streams.lifecycle import Service
from aiaas.streams.settings import Settings
from tests.infra import ROOT


class BridgeProcess(Service):
    """One bridge as a child process; ``stop()`` sends SIGTERM (then SIGKILL after a grace)."""

    def __init__(self, env: Mapping[str, str], port: int | None = None) -> None:
        self.port = port or free_port()
        self.env = child_env({**env, "AIAAS_BRIDGE_PORT": str(self.port)})
        self.proc: asyncio.subprocess.Process | None = None
        self.log: list[str] = []
        self._reader: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, timeout_s: float = 60.0) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "aiaas.agents.bridge.main", env=self.env, cwd=ROOT,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        self._reader = asyncio.create_task(self._read_log())
        try:
            await wait_http_ready(f"{self.url}/v2/health/ready", timeout_s, self.proc)
        except BaseException:
            await self.kill()
            raise

    async def _read_log(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        async for raw in self.proc.stderr:
            self.log = [*self.log[-200:], raw.decode(errors="replace")]

    async def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM and wait (SIGKILL after ``grace_s``); the exit code is then ``proc.returncode``."""
        if self.proc is None:
            return
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), grace_s)
            except TimeoutError:
                await self.kill()
        await self._finish()

    async def kill(self) -> None:
        """SIGKILL: the crash a fault test wants."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        await self._finish()

    async def _finish(self) -> None:
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._reader, 5)
            self._reader = None


_ASSIGNED = re.compile(r"assigned (\d+) partitions")


class WorkerProcess:
    """``python -m aiaas.agents.inference`` as a subprocess; its log says how many partitions it owns."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.partitions = 0
        self.assignments = 0  # how many times the group gave it partitions (1 + rebalances)
        self.changed = asyncio.Event()
        self.log: list[str] = []
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        async for raw in self.proc.stderr:
            line = raw.decode(errors="replace")
            self.log = [*self.log[-50:], line]
            found = _ASSIGNED.search(line)
            if found:
                self.partitions = int(found.group(1))
                self.assignments += 1
                self.changed.set()


@asynccontextmanager
async def spawn_workers(
    settings: Settings, model: str, count: int, *flags: str, env: dict[str, str] | None = None,
) -> AsyncIterator[list[WorkerProcess]]:
    """``count`` worker processes for ``model`` (SIGTERM, then SIGKILL, on exit; never left behind)."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "AIAAS_TOPIC_PREFIX": settings.topic_prefix,
                "AIAAS_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
                "AIAAS_HEARTBEAT_INTERVAL_MS": str(settings.heartbeat_interval_ms),
                "AIAAS_SESSION_TIMEOUT_MS": str(settings.session_timeout_ms),
                "OMP_NUM_THREADS": "1", **(env or {})}
    started: list[WorkerProcess] = []
    try:
        for _ in range(count):
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "aiaas.agents.inference", "--model", model, *flags,
                cwd=ROOT, env=full_env, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            )
            started.append(WorkerProcess(proc))
        yield started
    finally:
        await asyncio.gather(*(_end(w) for w in started))


async def _end(w: WorkerProcess, grace_s: float = 15.0) -> None:
    if w.proc.returncode is None:
        w.proc.terminate()
        try:
            await asyncio.wait_for(w.proc.wait(), grace_s)
        except TimeoutError:
            w.proc.kill()
    await w.proc.wait()
    w.reader.cancel()


async def until_processes_balanced(procs: Sequence[WorkerProcess], partitions: int,
                                   timeout_s: float = 60.0) -> None:
    """Wait until every process owns partitions and together they own all ``partitions``; on a
    timeout the error carries each worker's partitions and last log lines (what went wrong)."""
    try:
        async with asyncio.timeout(timeout_s):
            while not _balanced(procs, partitions):
                waits: list[asyncio.Future[object]] = [asyncio.ensure_future(p.changed.wait()) for p in procs]
                waits += [asyncio.ensure_future(p.proc.wait()) for p in procs]
                for p in procs:
                    p.changed.clear()
                try:
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for t in waits:
                        t.cancel()
    except TimeoutError:
        state = " | ".join(f"pid {p.proc.pid} owns {p.partitions}: {''.join(p.log[-8:])!r}" for p in procs)
        raise TimeoutError(f"workers not balanced over {partitions} partitions in {timeout_s:.0f}s: "
                           f"{state}") from None


def _balanced(procs: Sequence[WorkerProcess], partitions: int) -> bool:
    for p in procs:
        if p.proc.returncode is not None:
            raise RuntimeError(f"worker exited with {p.proc.returncode}: {''.join(p.log[-5:])}")
    owned = [p.partitions for p in procs]
    return all(owned) and sum(owned) == partitions


async def run_to_end(*argv: str, timeout_s: float, merge_stderr: bool = False,
                     **kwargs: Any) -> tuple[int, bytes, bytes]:
    """``(returncode, stdout, stderr)`` of ``argv`` (stderr folded into stdout with ``merge_stderr``);
    the process never outlives the call."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT if merge_stderr else asyncio.subprocess.PIPE, **kwargs)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None  # communicate() returned: the process has exited
    return proc.returncode, out, err or b""
