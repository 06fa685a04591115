"""Run a training job on this machine: the aggregator and N trainers as local subprocesses.

The one call the CLI, the benchmark and ``make demo`` need::

    status = await run_job(settings, spec, trainers=2)      # JobStatus: succeeded / failed

It submits the spec to the ``jobs`` topic, pushes the data unless the data topic already holds it,
starts ``python -m agents.aggregator`` and ``python -m agents.trainer`` processes (settings travel
as ``AIAAS_*`` variables), waits for the job's final status and stops whatever still runs.
``LocalJob`` exposes the pieces (kill a trainer, restart the aggregator) for the fault tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable
from pathlib import Path
from types import TracebackType
from typing import Self

from schemas.errors import AiaasError, ErrorCode
from schemas.jobs import JobSpec
from schemas.records import JobStatus
from streams.datapush import PushReport, push
from streams.jobs import submit, wait_final
from streams.settings import Settings

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent


class LocalJob:
    """One job's processes on this machine; ``async with LocalJob(...) as job: await job.wait()``."""

    def __init__(self, settings: Settings, spec: JobSpec, *, trainers: int | None = None,
                 log_dir: str | Path | None = None, env: dict[str, str] | None = None,
                 push_data: bool = True, threads: int = 1, pin_cpus: bool = False) -> None:
        self.settings, self.spec = settings, spec
        self.trainers = trainers if trainers is not None else spec.trainers
        self.log_dir = Path(log_dir) if log_dir else Path(tempfile.mkdtemp(prefix=f"aiaas-{spec.job_id}-"))
        self.push_data = push_data
        self.env = {**os.environ, **settings.to_env(), "PYTHONPATH": str(ROOT),
                    "OMP_NUM_THREADS": str(threads), **(env or {})}
        self.threads = threads
        self.pin_cpus = pin_cpus  # trainer i on CPU i (mod the CPUs there are)
        self.aggregator: asyncio.subprocess.Process | None = None
        self.trainer_procs: dict[str, asyncio.subprocess.Process] = {}
        self._all: list[asyncio.subprocess.Process] = []
        self.submitted_at = 0.0
        self.push_report: PushReport | None = None
        self._n = 0

    async def prepare(self) -> None:
        """Submit the spec and push the data (a data topic that already holds records is kept)."""
        self.submitted_at = time.time()
        await submit(self.settings, self.spec)
        if self.push_data:
            try:
                self.push_report = await push(self.settings, self.spec)
            except AiaasError as exc:
                if exc.code != ErrorCode.CONFLICT:
                    raise
                log.info("job %s: data already pushed (%s)", self.spec.job_id, exc.reason)

    async def _spawn(self, module: str, name: str, *args: str,
                     env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        out = (self.log_dir / f"{name}.log").open("ab")  # the child writes it; we close our copy
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", module, "--job", self.spec.job_id, "--threads", str(self.threads),
                *args, cwd=str(ROOT), env={**self.env, **(env or {})}, stdout=out,
                stderr=asyncio.subprocess.STDOUT)
        finally:
            out.close()
        self._all.append(proc)
        return proc

    async def start_aggregator(self) -> asyncio.subprocess.Process:
        self.aggregator = await self._spawn("agents.aggregator", "aggregator")
        return self.aggregator

    async def start_trainer(self, worker_id: str | None = None) -> asyncio.subprocess.Process:
        self._n += 1
        wid = worker_id or f"{self.spec.job_id}-t{self._n}"
        pin = {"AIAAS_TRAINER_CPU": str(self._n - 1)} if self.pin_cpus else None
        proc = await self._spawn("agents.trainer", wid, "--worker-id", wid, env=pin)
        self.trainer_procs[wid] = proc
        return proc

    async def start(self) -> None:
        await self.prepare()
        await self.start_aggregator()
        for _ in range(self.trainers):
            await self.start_trainer()

    def kill(self, proc: asyncio.subprocess.Process, sig: int = signal.SIGKILL) -> None:
        if proc.returncode is None:
            proc.send_signal(sig)

    def log_text(self, name: str = "aggregator") -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    async def wait(self, timeout_s: float = 600.0) -> JobStatus:
        """The job's final status; raises when the aggregator fails without writing one."""
        final = asyncio.create_task(wait_final(self.settings, self.spec.job_id, timeout_s, self.submitted_at))
        agg = self.aggregator
        watch = asyncio.create_task(agg.wait()) if agg is not None else None
        try:
            await asyncio.wait({final, *([watch] if watch else [])}, return_when=asyncio.FIRST_COMPLETED)
            if not final.done() and agg is not None and agg.returncode not in (0, None):
                with contextlib.suppress(TimeoutError):  # a status written just before the exit
                    return await asyncio.wait_for(asyncio.shield(final), 5.0)
                raise AiaasError("aggregator exited without a final status", code=ErrorCode.INTERNAL,
                                 returncode=agg.returncode, log_tail=self.log_text()[-3000:])
            return await final
        finally:
            for task in (final, watch):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                        await task

    async def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM everything still running, SIGKILL what ignores it."""
        for proc in self._all:
            self.kill(proc, signal.SIGTERM)
        for proc in self._all:
            try:
                await asyncio.wait_for(proc.wait(), grace_s)
            except TimeoutError:
                self.kill(proc)
                await proc.wait()

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await _finish(self.stop())


async def _finish(cleanup: Awaitable[object]) -> None:
    """Run ``cleanup`` to its end even when the caller is cancelled meanwhile (children and faust
    threads must not outlive us); the cancellation is re-raised afterwards."""
    task = asyncio.ensure_future(cleanup)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise


async def run_in_process(settings: Settings, spec: JobSpec, *, trainers: int | None = None,
                         push_data: bool = True, timeout_s: float = 600.0) -> JobStatus:
    """The same job with the aggregator and trainers as tasks of this process (tests, notebooks):
    no per-process start-up, the same topics, groups and code paths as the processes use."""
    from agents.aggregator.server import Aggregator
    from agents.trainer.settings import TrainerSettings
    from agents.trainer.worker import Trainer

    await submit(settings, spec)
    if push_data:
        await push(settings, spec)
    n = trainers if trainers is not None else spec.trainers
    agg = Aggregator(settings, spec)
    workers = [Trainer(settings, spec, TrainerSettings(worker_id=f"{spec.job_id}-p{i}")) for i in range(n)]
    try:
        await asyncio.gather(agg.start(), *(w.start() for w in workers))
        runs = [asyncio.create_task(w.run()) for w in workers]
        async with asyncio.timeout(timeout_s):
            status = await agg.run()
            await asyncio.gather(*runs)
        return status
    finally:
        await _finish(asyncio.gather(agg.stop(), *(w.stop() for w in workers), return_exceptions=True))


async def run_job(settings: Settings, spec: JobSpec, *, trainers: int | None = None,
                  timeout_s: float = 600.0, log_dir: str | Path | None = None,
                  env: dict[str, str] | None = None) -> JobStatus:
    """Run ``spec`` to its end with local processes and return its final JobStatus."""
    async with LocalJob(settings, spec, trainers=trainers, log_dir=log_dir, env=env) as job:
        return await job.wait(timeout_s)
