"""Run a training job on this machine: the aggregator and N trainers as local subprocesses.

The one call the CLI, the benchmark and ``make demo`` need::

    status = await run_job(settings, spec, trainers=2)      # JobStatus: succeeded / failed

It checks the spec against its data (``aiaas.data.datainfo.check_fit``: a spec that does not fit is
refused before anything starts), submits the spec to the ``jobs`` topic, pushes the data unless the
data topic already holds it, starts
``python -m aiaas.agents.aggregator`` and ``python -m aiaas.agents.trainer``
processes (through aiaas.agents.processes; settings travel as ``AIAAS_*`` variables; logs go to
``<state dir>/jobs/<job>-*/``), waits for the job's final status and stops
whatever still runs. A process that exits with an error (not a kill) ends the wait within seconds
with its reason, and a job that ends here without a final status gets a ``failed`` one saying why,
so the ``jobs`` topic never shows a job as submitted or running after its processes are gone.
``LocalJob`` exposes the pieces (kill a trainer, restart the aggregator) for the fault tests.
A job with ``aggregator.shards: N`` gets N aggregator processes (``aggregator``, ``aggregator-s1``...);
a shard killed by a signal is started again (it resumes from its checkpoint) up to ``SHARD_RESTARTS``
times, and only shard 0 ending before the job's final status ends the wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import signal
import tempfile
import time
from collections.abc import Awaitable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from aiaas.agents.processes import spawn_module, terminate
from aiaas.data.datainfo import check_fit, describe, read_info
from aiaas.data.datapush import PushReport, push
from aiaas.data.datasets import Dataset, load_dataset
from aiaas.schemas.errors import AiaasError, ErrorCode, NotFound
from aiaas.schemas.jobs import JobSpec
from aiaas.schemas.records import JobStatus
from aiaas.streams.jobs import FINAL_STATES, mark_failed, submit, wait_final
from aiaas.streams.lifecycle import cancel, cancel_all
from aiaas.streams.settings import Settings

log = logging.getLogger(__name__)
SHARD_RESTARTS = 3  # per shard of a sharded parameter server


async def load_checked(spec: JobSpec) -> Dataset:
    """The job's dataset, loaded (off the event loop) and checked against the spec before anything
    is submitted: a misfit is one line naming both numbers, not a hung job."""
    dataset = await asyncio.to_thread(load_dataset, spec.data)
    check_fit(spec, describe(spec.job_id, spec.data, dataset).info)
    return dataset

class LocalJob:
    """One job's processes on this machine; ``async with LocalJob(...) as job: await job.wait()``."""

    def __init__(self, settings: Settings, spec: JobSpec, *, trainers: int | None = None,
                 log_dir: str | Path | None = None, env: dict[str, str] | None = None,
                 push_data: bool = True, threads: int = 1, pin_cpus: bool = False) -> None:
        self.settings, self.spec = settings, spec
        self.trainers = trainers if trainers is not None else spec.trainers
        self.log_dir = Path(log_dir) if log_dir else _new_log_dir(settings, spec.job_id)
        self.push_data = push_data
        self.env = {**settings.to_env(), "OMP_NUM_THREADS": str(threads), **(env or {})}
        self.threads = threads
        self.pin_cpus = pin_cpus  # trainer i on CPU i (mod the CPUs there are)
        self.aggregator: asyncio.subprocess.Process | None = None  # shard 0
        self.shard_procs: dict[int, asyncio.subprocess.Process] = {}
        self.restarts: dict[int, int] = {}
        self.trainer_procs: dict[str, asyncio.subprocess.Process] = {}
        self._all: list[asyncio.subprocess.Process] = []
        self.submitted_at = 0.0
        self.push_report: PushReport | None = None
        self.final: JobStatus | None = None  # the final status, once seen
        self._n = 0

    async def prepare(self) -> None:
        """Check the spec against its data, submit the spec and push the data (a data topic that
        already holds records is kept, and the spec is checked against what it holds)."""
        dataset = await self._check_data()
        self.submitted_at = time.time()
        await submit(self.settings, self.spec)
        if dataset is not None:
            try:
                self.push_report = await push(self.settings, self.spec, dataset)
            except AiaasError as exc:
                if exc.code != ErrorCode.CONFLICT:
                    raise
                log.info("job %s: data already pushed (%s)", self.spec.job_id, exc.reason)
                await self._check_pushed(required=False)

    async def _check_data(self) -> Dataset | None:
        """The dataset to push (loaded here, checked against the spec), or None when the data is
        on Kafka already (``push_data=False``: checked against what the push recorded), or when the
        job trains from its declared source (its aggregator reads the user's topic)."""
        if self.spec.source is not None:
            return None
        if not self.push_data:
            await self._check_pushed(required=True)
            return None
        return await load_checked(self.spec)

    async def _check_pushed(self, required: bool) -> None:
        found = await read_info(self.settings, self.spec.job_id)
        if found is not None:
            check_fit(self.spec, found.info)
        elif required:
            raise NotFound(f"no pushed data for job {self.spec.job_id} on Kafka (push it first: "
                           "aiaas data push --spec SPEC, or let the job push it)", job_id=self.spec.job_id)

    async def _spawn(self, module: str, name: str, *args: str,
                     env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
        proc = await spawn_module(module, "--job", self.spec.job_id, "--threads", str(self.threads), *args,
                                  env={**self.env, **(env or {})}, log=self.log_dir / f"{name}.log",
                                  die_with_parent=True)  # a launcher killed outright takes its job along
        self._all.append(proc)
        return proc

    async def start_aggregator(self, shard: int = 0) -> asyncio.subprocess.Process:
        """Start the aggregator (shard ``shard`` of a sharded one)."""
        name = "aggregator" if shard == 0 else f"aggregator-s{shard}"
        args = ("--shard", str(shard)) if self.spec.aggregator.shards > 1 else ()
        proc = await self._spawn("aiaas.agents.aggregator", name, *args)
        self.shard_procs[shard] = proc
        if shard == 0:
            self.aggregator = proc
        return proc

    def _revivable(self, proc: asyncio.subprocess.Process) -> bool:
        """A shard of a sharded job that a signal killed, with restarts left."""
        shard = next((i for i, p in self.shard_procs.items() if p is proc), None)
        code = proc.returncode
        return (shard is not None and self.spec.aggregator.shards > 1 and code is not None and code < 0
                and self.restarts.get(shard, 0) < SHARD_RESTARTS)

    async def _revive_shards(self) -> None:
        """A sharded job: start again any shard a signal killed (it resumes from its checkpoint)."""
        for shard, proc in list(self.shard_procs.items()):
            if self._revivable(proc):
                self.restarts[shard] = self.restarts.get(shard, 0) + 1
                log.warning("job %s: aggregator shard %d was killed (%d); starting it again",
                            self.spec.job_id, shard, proc.returncode)
                await self.start_aggregator(shard)

    async def start_trainer(self, worker_id: str | None = None) -> asyncio.subprocess.Process:
        self._n += 1
        wid = worker_id or f"{self.spec.job_id}-t{self._n}"
        pin = {"AIAAS_TRAINER_CPU": str(self._n - 1)} if self.pin_cpus else None
        proc = await self._spawn("aiaas.agents.trainer", wid, "--worker-id", wid, env=pin)
        self.trainer_procs[wid] = proc
        return proc

    async def start(self) -> None:
        await self.prepare()
        for shard in range(self.spec.aggregator.shards):
            await self.start_aggregator(shard)
        for _ in range(self.trainers):
            await self.start_trainer()

    def kill(self, proc: asyncio.subprocess.Process, sig: int = signal.SIGKILL) -> None:
        if proc.returncode is None:
            proc.send_signal(sig)

    def log_text(self, name: str = "aggregator") -> str:
        """The log of one process (``aggregator`` or a trainer's worker id)."""
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    async def wait(self, timeout_s: float = 600.0) -> JobStatus:
        """The job's final status; raises (within seconds) when a process fails without one: the
        aggregator exiting, or a trainer exiting with an error code (a killed one, negative code,
        is a fault the job rides out)."""
        final = asyncio.create_task(wait_final(self.settings, self.spec.job_id, timeout_s, self.submitted_at))
        watched = self._watched()  # those that already ended too: a crash during start counts
        try:
            while not final.done():
                await self._revive_shards()
                watched = {**watched, **self._watched()}
                dead = self._failed(watched)
                if dead is not None and self._revivable(watched[dead]):
                    continue  # a shard killed just now: started again at the top of the loop
                if dead is not None:
                    with contextlib.suppress(TimeoutError):  # a status written about it, or just before
                        if (await asyncio.wait([final], timeout=5.0))[0]:
                            self.final = final.result()
                            return self.final
                    proc = watched[dead]
                    raise AiaasError(f"{dead} exited with code {proc.returncode} before the job ended: "
                                     f"{_last_error(self.log_text(dead))}", code=ErrorCode.INTERNAL,
                                     returncode=proc.returncode, log_tail=self.log_text(dead)[-3000:])
                watched = {n: p for n, p in watched.items() if p.returncode is None}
                watches = [asyncio.ensure_future(p.wait()) for p in watched.values()]
                await asyncio.wait({final, *watches}, return_when=asyncio.FIRST_COMPLETED)
                for task in watches:
                    task.cancel()
            self.final = await final
            return self.final
        finally:
            await cancel(final, quiet=True)

    def _watched(self) -> dict[str, asyncio.subprocess.Process]:
        procs = dict(self.trainer_procs)
        if self.spec.aggregator.shards > 1:  # a killed shard is revived; one that failed is not
            procs |= {f"aggregator-s{i}": p for i, p in self.shard_procs.items()
                      if i > 0 and (p.returncode is None or p.returncode > 0)}
        if self.aggregator is not None:
            procs["aggregator"] = self.aggregator
        return procs

    @staticmethod
    def _failed(watched: dict[str, asyncio.subprocess.Process]) -> str | None:
        """The first process that ended with an error: the aggregator ending at all, a trainer
        exiting with a positive code."""
        for name, proc in watched.items():
            code = proc.returncode
            if code is not None and (code > 0 or name == "aggregator"):
                return name
        return None

    async def mark_failed(self, reason: str) -> None:
        """Write a ``failed`` status when the job was submitted and has no final one (best effort)."""
        if not self.submitted_at or (self.final is not None and self.final.state in FINAL_STATES):
            return
        await mark_failed(self.settings, self.spec, reason, since=self.submitted_at)

    async def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM everything still running, SIGKILL what ignores it."""
        await terminate(self._all, grace_s)

    async def __aenter__(self) -> Self:
        try:
            await self.start()
        except BaseException as exc:
            await _finish(self._end(exc))
            raise
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await _finish(self._end(e))

    async def _end(self, exc: BaseException | None) -> None:
        """Stop the processes; a job left without a final status is marked failed with why."""
        await self.stop()
        if self.final is None:
            await self.mark_failed(why_failed(exc))


def _new_log_dir(settings: Settings, job_id: str) -> Path:
    """A fresh folder for one run's process logs, under the state dir (never the cwd)."""
    parent = settings.state_dir / "jobs"
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{job_id}-", dir=parent))


def why_failed(exc: BaseException | None) -> str:
    """The reason a failed job's status gives for ``exc`` (the error's own words when it is ours)."""
    if isinstance(exc, AiaasError):
        return exc.reason
    if exc is None:
        return "its launcher stopped it before the job ended"
    if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt):
        return "stopped before the job ended (its launcher was interrupted)"
    return repr(exc)


def _last_error(log_text: str) -> str:
    """The last exception line of a process log (``SomeError: why``), with the line after it when
    that says more (pydantic names the field there); else the log's last line."""
    lines = [ln.strip() for ln in log_text.splitlines() if ln.strip()]
    for i in range(len(lines) - 1, -1, -1):
        if _EXCEPTION.match(lines[i]):
            more = lines[i + 1] if i + 1 < len(lines) and not lines[i + 1].startswith("For further") else ""
            return f"{lines[i]} {more}".strip()[-400:]
    return (lines or ["(empty log)"])[-1][-400:]


_EXCEPTION = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit)\b.*:")


async def _finish(cleanup: Awaitable[object]) -> None:
    """Run ``cleanup`` to its end even when the caller is cancelled meanwhile, once or again
    (children and faust threads must not outlive us); the cancellation is re-raised afterwards."""
    task = asyncio.ensure_future(cleanup)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled and (task.cancelled() or task.exception() is None):
        raise asyncio.CancelledError
    task.result()


async def run_in_process(settings: Settings, spec: JobSpec, *, trainers: int | None = None,
                         push_data: bool = True, timeout_s: float = 600.0) -> JobStatus:
    """The same job with the aggregator and trainers as tasks of this process (tests, notebooks):
    no per-process start-up, the same topics, groups and code paths as the processes use."""
    from aiaas.agents.aggregator.server import Aggregator
    from aiaas.agents.trainer.settings import TrainerSettings
    from aiaas.agents.trainer.worker import Trainer

    dataset = await load_checked(spec) if push_data and spec.source is None else None
    await submit(settings, spec)
    if dataset is not None:
        await push(settings, spec, dataset)
    n = trainers if trainers is not None else spec.trainers
    shards = [Aggregator(settings, spec, shard=i) for i in range(spec.aggregator.shards)]
    workers = [Trainer(settings, spec, TrainerSettings(worker_id=f"{spec.job_id}-p{i}")) for i in range(n)]
    others: list[asyncio.Task[Any]] = []
    runs: list[asyncio.Task[Any]] = []
    try:
        await asyncio.gather(*(a.start() for a in shards), *(w.start() for w in workers))
        others = [asyncio.create_task(a.run()) for a in shards[1:]]
        runs = [asyncio.create_task(w.run()) for w in workers]
        async with asyncio.timeout(timeout_s):
            status = await shards[0].run()  # shard 0 reports the job
            ended = await asyncio.gather(*others, *runs, return_exceptions=True)  # fatal: in the status
        for err in (e for e in ended if isinstance(e, BaseException)):
            log.warning("job %s: a trainer or shard ended with %r", spec.job_id, err)
        return status
    finally:
        await _finish(_stop_parts(others + runs, [*shards, *workers]))


async def _stop_parts(tasks: list[asyncio.Task[Any]], parts: list[Any]) -> None:
    """Stop the in-process job's tasks still running (a timeout, a failure), then its parts."""
    await cancel_all(tasks)
    await asyncio.gather(*(p.stop() for p in parts), return_exceptions=True)


async def run_job(settings: Settings, spec: JobSpec, *, trainers: int | None = None,
                  timeout_s: float = 600.0, log_dir: str | Path | None = None,
                  env: dict[str, str] | None = None) -> JobStatus:
    """Run ``spec`` to its end with local processes and return its final JobStatus."""
    async with LocalJob(settings, spec, trainers=trainers, log_dir=log_dir, env=env) as job:
        return await job.wait(timeout_s)
