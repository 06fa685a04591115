"""``aiaas score`` / ``python -m aiaas.agents.inference --score``: one stream-scoring worker.

    aiaas score --model digits --from events --to events.scored --source spec.yaml
        [--group G] [--dlq TOPIC] [--stage production | --version 3] [--at-least-once]
        [--max-batch 2000] [--threads 1] [--partitions N] [--log-level INFO]
        [--output-format json|avro [--output-registry URL | --output-schema FILE]]

Start several with the same ``--group`` to share the input topic's partitions. Every flag can also
be set as ``AIAAS_SCORE_<FLAG>``; Kafka settings come from ``AIAAS_*``. SIGTERM/SIGINT stop after
the poll in flight is written; a kill -9 loses nothing and duplicates nothing (the next owner of
its partitions aborts its open transactions and resumes from the committed offsets).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

Opt = typer.Option


def score(
    model: Annotated[str, Opt(help="model name (its production version, else the newest)")],
    to: Annotated[str, Opt("--to", help="topic to write one prediction record per input record to")],
    source: Annotated[Path, Opt(help="source spec YAML (a source: block: format, features, passthrough)")],
    from_: Annotated[str | None, Opt("--from", help="input topic (default: the spec's topic)")] = None,
    group: Annotated[str | None, Opt(help="consumer group (default <prefix>score.<model>.<from>)")] = None,
    dlq: Annotated[str | None, Opt(help="dead-letter topic (default <to>.dlq)")] = None,
    version: Annotated[int | None, Opt(help="pin this version (no hot reload)")] = None,
    stage: Annotated[str | None, Opt(help="'production': score with (and follow) production")] = None,
    exactly_once: Annotated[bool, Opt("--exactly-once/--at-least-once",
                                      help="Kafka transactions, or commits after acks")] = True,
    max_batch: Annotated[int | None, Opt(help="records per poll and onnxruntime call")] = None,
    threads: Annotated[int | None, Opt(help="onnxruntime intra-op threads (0: all cores)")] = None,
    partitions: Annotated[int | None, Opt(help="of --to if created here (default: as --from)")] = None,
    log_level: Annotated[str | None, Opt(help="logging level (default AIAAS_LOG_LEVEL or INFO)")] = None,
    output_format: Annotated[str | None, Opt(help="prediction values: json (default) or avro")] = None,
    output_registry: Annotated[str | None, Opt(help="avro: register the schema here (<to>-value) and "
                                                    "frame values Confluent-style")] = None,
    output_schema: Annotated[Path | None, Opt(help="avro: write the writer schema (.avsc) here")] = None,
) -> None:
    """Score every record of a topic into another, exactly once (joins the scoring group)."""
    from aiaas.agents.inference.scoring import score as run_scoring
    from aiaas.agents.inference.scoring_settings import ScoringSettings, load_source
    from aiaas.streams.runtime import run, setup_logging
    from aiaas.streams.settings import Settings

    setup_logging(log_level)
    spec = load_source(source, from_)
    flags: dict[str, Any] = {
        "model": model, "from_topic": spec.topic, "to_topic": to, "dlq_topic": dlq, "group_id": group,
        "version": version, "stage": stage, "max_batch": max_batch, "threads": threads,
        "partitions": partitions, "output_format": output_format, "output_registry_url": output_registry,
        "output_schema": output_schema,
    }
    if not exactly_once:
        flags["exactly_once"] = False
    cfg = ScoringSettings(**{k: v for k, v in flags.items() if v is not None})
    run(run_scoring(Settings(), cfg, spec))
