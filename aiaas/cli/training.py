"""Training commands: ``aiaas train``, ``aiaas jobs status``, ``aiaas worker trainer|aggregator|jobs``.

``aiaas train --spec job.yaml`` checks the spec against its data (refused in one line when they do
not fit), submits the job, pushes its data, starts the aggregator and the trainers as local
processes and follows the job with a progress bar (step, loss, accuracy, samples/s) until its final
status, then prints the result as one JSON line; the job's start and end are audited
(``aiaas audit tail``). The exit code is 0 when the job succeeded, 1 when
it failed or missed its target, 2 when it was refused. The workers can also be started one by one
(on other machines) with ``aiaas worker trainer --job J`` and ``aiaas worker aggregator --job J``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from aiaas.cli.output import JsonOpt, show_json
from aiaas.cli.output import console as wide_console

console = wide_console()  # full names when piped (aiaas.cli.output)
jobs_app = typer.Typer(no_args_is_help=True, help="Training jobs on the jobs topic.")

JobOpt = Annotated[str, typer.Option("--job", help="Job id (its JobSpec is read from the jobs topic).")]
SpecOpt = Annotated[Path | None, typer.Option(exists=True, dir_okay=False, help="Job spec YAML.")]
ThreadsOpt = Annotated[int | None, typer.Option(help="torch threads (default 1: cores are shared).")]


def _load_spec(path: Path) -> Any:
    from aiaas.schemas.errors import InvalidMessage
    from aiaas.streams.jobs import load_spec_file

    try:
        return load_spec_file(path)
    except InvalidMessage as exc:
        for err in exc.details.get("errors", []):
            console.print(f"[red]invalid spec[/]: [bold]{err['field']}[/]: {err['message']}")
        if not exc.details.get("errors"):
            console.print(f"[red]invalid spec[/]: {exc.reason} {exc.details}")
        raise typer.Exit(2) from exc


def trainer_worker(job: JobOpt, spec: SpecOpt = None,
                   worker_id: Annotated[str | None, typer.Option(help="Member id in the group.")] = None,
                   threads: ThreadsOpt = None) -> None:
    """Run one trainer (faust) of a job until the job ends."""
    from aiaas.agents.trainer.main import main

    main(job, str(spec) if spec else None, worker_id, threads)


def aggregator_worker(job: JobOpt, spec: SpecOpt = None, threads: ThreadsOpt = None,
                      shard: Annotated[int, typer.Option(help="Shard of aggregator.shards.")] = 0,
                      ) -> None:
    """Run a job's parameter server, or one shard of it (resumes from its last checkpoint)."""
    from aiaas.agents.aggregator.main import main

    main(job, str(spec) if spec else None, threads, shard)


def jobs_worker(
    trainers: Annotated[int | None, typer.Option(help="Trainers per job (default: the spec's).")] = None,
    log_dir: Annotated[Path | None, typer.Option(help="Where the job processes write their logs.")] = None,
    in_process: Annotated[bool, typer.Option(help="Run aggregator and trainers in this process.")] = False,
) -> None:
    """Watch the jobs topic and run each newly submitted job with local processes, one at a time."""
    from aiaas.agents.jobrunner import watch_and_run
    from aiaas.streams.runtime import run, setup_logging
    from aiaas.streams.settings import get_settings

    setup_logging()
    run(watch_and_run(get_settings(), trainers=trainers, log_dir=log_dir, in_process=in_process))


def _progress(spec: Any) -> tuple[Progress, Any]:
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                        TextColumn("{task.fields[info]}"), TimeElapsedColumn(), console=console)
    total = spec.epochs if spec.epochs is not None else spec.steps
    task = progress.add_task(spec.job_id, total=total, info="waiting for the trainers")
    return progress, task


def _info(m: Any) -> str:
    parts = [f"step {m.version}", f"epoch {m.epoch:.2f}"]
    if m.loss is not None:
        parts.append(f"loss {m.loss:.4f}")
    if m.test_accuracy is not None:
        parts.append(f"acc {m.test_accuracy:.4f}")
    elif m.test_loss is not None:
        parts.append(f"test loss {m.test_loss:.4f}")
    if m.samples_per_s:
        parts.append(f"{m.samples_per_s:,.0f} samples/s")
    return "  ".join(parts)


async def _follow(settings: Any, spec: Any, progress: Progress, task: Any) -> None:
    from aiaas.streams.jobs import follow_metrics

    async for m in follow_metrics(settings, spec.job_id):
        if m is None:
            continue
        done = m.epoch if spec.epochs is not None else m.version
        progress.update(task, completed=done, info=_info(m))


@dataclass
class _Run:
    started: bool = False
    status: Any = None


def _audit_stop(settings: Any, job_id: str, run: _Run) -> Callable[..., Awaitable[bool]]:
    """An exit callback that audits the job's end once its processes are stopped: ok when it
    succeeded, else failed with why (its final state, or the error that ended the run)."""
    from aiaas.schemas.audit import JOB_STOP
    from aiaas.streams.audit import cli_actor, record, write_one

    async def on_exit(_type: Any, exc: BaseException | None, _tb: Any) -> bool:
        if run.started:
            state = run.status.state if run.status is not None else None
            error = exc or (None if state == "succeeded" else f"{state}: {run.status.error or ''}")
            await write_one(settings, record(JOB_STOP, job_id, actor=cli_actor(), error=error, state=state))
        return False

    return on_exit


async def _train(spec: Any, trainers: int | None, push: bool, timeout_s: float, log_dir: Path | None) -> Any:
    from aiaas.agents.launcher import LocalJob
    from aiaas.schemas.audit import JOB_START
    from aiaas.streams.audit import audited
    from aiaas.streams.lifecycle import cancel
    from aiaas.streams.settings import get_settings

    settings = get_settings()
    interrupt = _stop_on_sigterm()
    progress, task = _progress(spec)
    run = _Run()
    async with contextlib.AsyncExitStack() as stack:  # job.start and job.stop audited around the job
        stack.push_async_exit(_audit_stop(settings, spec.job_id, run))
        async with audited(settings, JOB_START, spec.job_id, model=spec.model_name, mode=spec.sync.mode):
            job = await stack.enter_async_context(
                LocalJob(settings, spec, trainers=trainers, log_dir=log_dir, push_data=push))
        stack.callback(setattr, interrupt, "cleaning", True)  # the job's stop is not cut short
        run.started = True
        console.print(f"job [bold]{spec.job_id}[/]: {spec.sync.mode} mode, "
                      f"{job.trainers} trainers, logs in {job.log_dir}")
        with progress:
            follower = asyncio.create_task(_follow(settings, spec, progress, task))
            try:
                run.status = await job.wait(timeout_s)
                return run.status
            finally:
                await cancel(follower, quiet=True)  # its error (a metrics read) is not the job's


def _stop_on_sigterm() -> Any:
    """SIGTERM stops the job as Ctrl-C does: the job's processes are stopped and the job marked, where
    Python's default would end this process at once and leave them running (``kill PID``, a
    supervisor). Returns the handler (an ``Interrupt``: set its ``cleaning`` once the stop began)."""
    from aiaas.streams.runtime import Interrupt

    me = asyncio.current_task()
    assert me is not None
    interrupt = Interrupt(me)
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, interrupt)
    return interrupt


FOREVER_S = 10.0 ** 9
STATE_STYLE = {"succeeded": "green", "failed": "red", "lost": "red", "missed_target": "yellow"}
SUMMARY_KEYS = ("test_accuracy", "test_loss", "test_r2", "epochs", "seconds", "seconds_to_target",
                "samples_per_s", "ms_per_sync_round", "onnx_max_abs_diff")


def _status_table(statuses: list[Any], title: str) -> Table:
    from aiaas.streams.jobs import shown_state

    table = Table(title=title)
    for col in ("job", "state", "version", "test_accuracy", "test_loss", "seconds", "model", "why"):
        table.add_column(col, overflow="fold")
    for s in statuses:
        m = s.metrics
        state, note = shown_state(s)
        model = f"{s.model_name}:{s.model_version}" if s.model_version else (s.model_name or "")
        style = STATE_STYLE.get(state)
        table.add_row(s.job_id, f"[{style}]{state}[/]" if style else state, str(s.version),
                      _fmt(m.get("test_accuracy")), _fmt(m.get("test_loss")), _fmt(m.get("seconds")),
                      model, escape(note))
    return table


def _status_json(status: Any) -> dict[str, Any]:
    from aiaas.streams.jobs import shown_state

    state, why = shown_state(status)
    return {**status.model_dump(mode="json"), "state": state, "recorded_state": status.state, "why": why}


def summary_json(status: Any) -> str:
    """The final status as one JSON line (what scripts read from ``aiaas train``)."""
    return json.dumps({
        "job_id": status.job_id, "state": status.state, "error": status.error, "version": status.version,
        "model": status.model_name, "model_version": status.model_version,
        "metrics": {k: round(status.metrics[k], 6) for k in SUMMARY_KEYS if k in status.metrics},
    })


def _fmt(v: float | None) -> str:
    return "" if v is None else f"{v:.4f}"


def train(
    spec: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="Job spec YAML.")],
    trainers: Annotated[int | None, typer.Option(help="Trainer processes (default: the spec's).")] = None,
    push: Annotated[bool, typer.Option(help="Push the spec's data first (kept if already there).")] = True,
    timeout: Annotated[float | None, typer.Option(
        help="Give up after this many seconds (default 3600; a continuous job: none).")] = None,
    log_dir: Annotated[Path | None, typer.Option(help="Where the job processes write their logs.")] = None,
) -> None:
    """Submit a job and run it with local processes, following it until it ends."""
    from aiaas.schemas.errors import AiaasError, ErrorCode
    from aiaas.streams.runtime import run

    job_spec = _load_spec(spec)
    if timeout is None:  # a continuous job runs until it is stopped
        timeout = FOREVER_S if job_spec.mode == "continuous" else 3600.0
    try:
        status = run(_train(job_spec, trainers, push, timeout, log_dir))
    except AiaasError as exc:
        refused = exc.code in (ErrorCode.BAD_REQUEST, ErrorCode.NOT_FOUND)
        console.print(f"[red]job {'refused' if refused else 'failed'}[/]: {escape(exc.reason)}",
                      highlight=False, soft_wrap=True)
        raise typer.Exit(2 if refused else 1) from exc
    except TimeoutError as exc:
        console.print(f"[red]job failed[/]: no final status within {timeout:g}s (see the logs)")
        raise typer.Exit(1) from exc
    except asyncio.CancelledError:
        console.print(f"job {job_spec.job_id} stopped (SIGTERM); its processes are stopped")
        raise typer.Exit(143) from None
    console.print(_status_table([status], "result"))
    if status.state != "succeeded":
        style = STATE_STYLE.get(status.state, "red")
        console.print(f"[{style}]{status.state}[/]: {escape(status.error or '')}",
                      highlight=False, soft_wrap=True)
    print(summary_json(status), flush=True)  # plain stdout, last line: JSON for scripts
    if status.state != "succeeded":
        raise typer.Exit(1)


@jobs_app.command("status")
def jobs_status(job: Annotated[str | None, typer.Argument(help="Only this job.")] = None,
                as_json: JsonOpt = False) -> None:
    """The latest status of every job (or of one) on the jobs topic."""
    from aiaas.streams.jobs import read_jobs
    from aiaas.streams.runtime import run
    from aiaas.streams.settings import get_settings

    specs, statuses = run(read_jobs(get_settings()))
    chosen = [s for j, s in sorted(statuses.items()) if job is None or j == job]
    if job is not None and not chosen:
        console.print(f"[red]no job {job!r}[/] (known: {', '.join(sorted(specs)) or 'none'})")
        raise typer.Exit(1)
    if as_json:  # "state" as the table shows it (lost when heartbeats stopped), "why" beside it
        show_json([_status_json(s) for s in chosen])
        return
    console.print(_status_table(chosen, "jobs"))


def register(app: typer.Typer, worker: typer.Typer) -> None:
    """Add this area's commands to the top-level `app` and its agents to `aiaas worker`."""
    app.command("train")(train)
    app.add_typer(jobs_app, name="jobs")
    worker.command("trainer")(trainer_worker)
    worker.command("aggregator")(aggregator_worker)
    worker.command("jobs")(jobs_worker)
