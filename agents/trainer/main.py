"""Entry point of a trainer process: ``aiaas worker trainer --job J``
(or ``python -m aiaas.agents.trainer``)."""

from __future__ import annotations

import logging

from aiaas.schemas.jobs import JobSpec
from aiaas.streams import metrics as m
from aiaas.streams.admin import wait_for_broker
from aiaas.streams.jobs import load_spec_file, read_spec
from aiaas.streams.runtime import run, setup_logging, until_signalled
from aiaas.streams.settings import Settings

from .settings import TrainerSettings
from .worker import Trainer

log = logging.getLogger(__name__)


async def serve(settings: Settings, job_id: str, ts: TrainerSettings, spec: JobSpec | None = None) -> None:
    """Train ``job_id`` until it finishes or SIGINT/SIGTERM arrives (then leave the group cleanly)."""
    await wait_for_broker(settings)
    spec = spec or await read_spec(settings, job_id, ts.spec_timeout_s)
    trainer = Trainer(settings, spec, ts)
    with m.serving(settings):
        await trainer.start()

        async def work() -> None:
            await trainer.run()

        await until_signalled(work, trainer.stop)


def main(job_id: str, spec_path: str | None = None, worker_id: str | None = None,
         threads: int | None = None) -> None:
    """Process entry (uvloop)."""
    setup_logging()
    overrides: dict[str, object] = {}
    if worker_id:
        overrides["worker_id"] = worker_id
    if threads:
        overrides["threads"] = threads
    ts = TrainerSettings(**overrides)  # type: ignore[arg-type]
    spec = load_spec_file(spec_path) if spec_path else None
    if spec is not None and spec.job_id != job_id:
        raise SystemExit(f"--job {job_id} does not match the spec's job_id {spec.job_id}")
    run(serve(Settings(), job_id, ts, spec))
