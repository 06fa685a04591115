"""Local worker processes: start one more, stop the newest, reap the ones that died.

A stopped worker gets SIGTERM and time to finish its batch and commit (our workers stop
gracefully on it); only after ``stop_timeout_s`` is it killed. Whatever it had not committed is
delivered again to the group, so a scale-down loses nothing. Workers start and stop through
aiaas.agents.processes, in a session of their own (a ^C to the autoscaler is not sent to them twice).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path

from aiaas.agents.processes import spawn, terminate

log = logging.getLogger(__name__)


class LocalReplicas:
    """Worker subprocesses of one command line (``{model}`` and ``{index}`` are filled in)."""

    def __init__(
        self,
        command: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        log_dir: Path | None = None,
        stop_timeout_s: float = 30.0,
    ) -> None:
        self.command = list(command)
        self.env = dict(env or {})  # on top of ours (aiaas.agents.processes.child_env)
        self.log_dir = log_dir
        self.stop_timeout_s = stop_timeout_s
        self._procs: list[asyncio.subprocess.Process] = []
        self._started = 0

    @property
    def count(self) -> int:
        """Workers alive now (dead ones are forgotten, so the controller replaces them)."""
        alive = [p for p in self._procs if p.returncode is None]
        for p in self._procs:
            if p.returncode is not None:
                log.warning("worker pid %d exited with %s", p.pid, p.returncode)
        self._procs = alive
        return len(alive)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs if p.returncode is None]

    async def scale_to(self, n: int, **fill: str) -> None:
        while self.count < n:
            await self.start_one(**fill)
        while self.count > n:
            await self.stop_one()

    async def start_one(self, **fill: str) -> int:
        index = self._started
        self._started += 1
        argv = [part.format(index=index, **fill) for part in self.command]
        log_file = None if self.log_dir is None else self.log_dir / f"worker-{index}.log"
        proc = await spawn(argv, env=self.env, log=log_file, own_session=True)
        self._procs.append(proc)
        log.info("started worker %d (pid %d): %s", index, proc.pid, " ".join(argv))
        return proc.pid

    async def stop_one(self) -> None:
        """Stop the newest worker (LIFO keeps the longest-lived, warmest ones)."""
        if self.count == 0:
            return
        proc = self._procs.pop()
        await self._stop(proc)

    async def stop_all(self) -> None:
        procs, self._procs = self._procs, []
        await asyncio.gather(*(self._stop(p) for p in procs))

    async def _stop(self, proc: asyncio.subprocess.Process) -> None:
        running = proc.returncode is None
        await terminate([proc], self.stop_timeout_s)
        if running and proc.returncode == -signal.SIGKILL:
            log.warning("worker pid %d did not stop in %.0f s; killed it", proc.pid, self.stop_timeout_s)
        log.info("worker pid %d stopped (rc %s)", proc.pid, proc.returncode)
