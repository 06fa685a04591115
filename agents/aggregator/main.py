"""Entry point of the aggregator: ``aiaas worker aggregator --job J``
(or ``python -m aiaas.agents.aggregator``)."""

from __future__ import annotations

import logging

from aiaas.schemas.errors import AiaasError
from aiaas.schemas.jobs import JobSpec
from aiaas.streams import metrics as m
from aiaas.streams.admin import wait_for_broker
from aiaas.streams.jobs import load_spec_file, read_spec
from aiaas.streams.runtime import run, setup_logging, until_signalled
from aiaas.streams.settings import Settings

from .server import Aggregator
from .settings import AggregatorSettings

log = logging.getLogger(__name__)


async def serve(
    settings: Settings, job_id: str, cfg: AggregatorSettings, spec: JobSpec | None = None, shard: int = 0
) -> None:
    """Run the job's parameter server (one shard of it) until the job ends or SIGINT/SIGTERM arrives."""
    await wait_for_broker(settings)
    spec = spec or await read_spec(settings, job_id, cfg.spec_timeout_s)
    if not 0 <= shard < spec.aggregator.shards:
        raise SystemExit(f"--shard {shard}: job {job_id} has {spec.aggregator.shards} shard(s), "
                         f"0 to {spec.aggregator.shards - 1}")
    aggregator = Aggregator(settings, spec, cfg, shard)
    try:
        await aggregator.start()
    except Exception as exc:
        log.exception("job %s: the aggregator could not start", job_id)
        await aggregator.fail(exc.reason if isinstance(exc, AiaasError) else repr(exc))
        await aggregator.stop()
        raise

    async def work() -> None:
        status = await aggregator.run()
        log.info("job %s %s: %s", job_id, status.state, status.metrics)

    with m.serving(settings):
        await until_signalled(work, aggregator.stop)


def main(job_id: str, spec_path: str | None = None, threads: int | None = None, shard: int = 0) -> None:
    """Process entry (uvloop)."""
    setup_logging()
    cfg = AggregatorSettings(**({"threads": threads} if threads else {}))  # type: ignore[arg-type]
    spec = load_spec_file(spec_path) if spec_path else None
    if spec is not None and spec.job_id != job_id:
        raise SystemExit(f"--job {job_id} does not match the spec's job_id {spec.job_id}")
    run(serve(Settings(), job_id, cfg, spec, shard))
