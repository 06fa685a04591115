"""``aiaas worker inference`` / ``python -m aiaas.agents.inference``: run one inference worker process.

    python -m aiaas.agents.inference --model digits [--version 3 | --stage production]
        [--max-batch 128] [--max-wait-ms 2] [--threads 1] [--inter-threads 1] [--weight 1]
        [--providers CUDAExecutionProvider,CPUExecutionProvider] [--partitions 8] [--no-batching]
        [--group-id G] [--pipeline-stage K] [--log-level INFO]

Kafka connection settings come from ``AIAAS_*`` (e.g. ``AIAAS_BOOTSTRAP_SERVERS``,
``AIAAS_TOPIC_PREFIX``; ``AIAAS_METRICS_PORT`` serves Prometheus metrics); every flag can also be
set as ``AIAAS_INFER_<FLAG>``. SIGTERM/SIGINT stop the worker gracefully (the batch in flight is
answered and committed); SIGKILL loses nothing either: uncommitted requests are re-served by the
rest of the group, after the worker's session times out (``AIAAS_INFER_SESSION_TIMEOUT_MS``, 6 s;
``AIAAS_INFER_INSTANCE_ID`` turns on static membership for workers restarted under the same id).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

Opt = typer.Option


def inference(
    model: Annotated[str, Opt(help="model name (serves infer.<model>.requests)")],
    version: Annotated[int | None, Opt(help="pin this version (no hot reload)")] = None,
    stage: Annotated[str | None, Opt(help="'production': serve (and follow) the production version")] = None,
    max_batch: Annotated[int | None, Opt(help="requests per onnxruntime call")] = None,
    max_wait_ms: Annotated[float | None, Opt(help="extra wait to fill a batch")] = None,
    threads: Annotated[int | None, Opt(help="onnxruntime intra-op threads (0: all cores)")] = None,
    inter_threads: Annotated[int | None, Opt(help="onnxruntime inter-op threads")] = None,
    weight: Annotated[float | None, Opt(help="partition share weight (default 4 with a GPU, else 1)")] = None,
    providers: Annotated[str | None, Opt(help="comma-separated onnxruntime execution providers")] = None,
    partitions: Annotated[int | None, Opt(help="partitions of the request topic if created here")] = None,
    batching: Annotated[bool, Opt("--batching/--no-batching", help="micro-batching")] = True,
    group_id: Annotated[str | None, Opt(help="consumer group (default <prefix>inference.<model>)")] = None,
    pipeline_stage: Annotated[int | None, Opt(help="serve this stage (from 1) of the split model")] = None,
    log_level: Annotated[str | None, Opt(help="logging level (default AIAAS_LOG_LEVEL or INFO)")] = None,
) -> None:
    """Serve one model from its request topic (joins the model's consumer group)."""
    from aiaas.agents.inference.settings import WorkerSettings
    from aiaas.agents.inference.worker import serve
    from aiaas.streams.runtime import run, setup_logging
    from aiaas.streams.settings import Settings

    setup_logging(log_level)
    flags: dict[str, Any] = {
        "model": model, "version": version, "stage": stage, "max_batch": max_batch,
        "max_wait_ms": max_wait_ms, "intra_op_threads": threads, "inter_op_threads": inter_threads,
        "weight": weight, "partitions": partitions, "group_id": group_id, "pipeline_stage": pipeline_stage,
        "providers": providers.split(",") if providers else None,
    }
    if not batching:
        flags["batching"] = False
    cfg = WorkerSettings(**{k: v for k, v in flags.items() if v is not None})
    run(serve(Settings(), cfg))


def main() -> None:
    typer.run(inference)
