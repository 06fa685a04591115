"""Stream scoring settings: ``AIAAS_SCORE_<FIELD>`` or the flags of ``aiaas score``.

A scoring worker reads the user's topic (``from_topic``), scores every record with one model and
writes one prediction record per input record to ``to_topic`` (README, "Score your topic"). Workers
with the same ``group_id`` share the input topic's partitions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from aiaas.agents.inference.settings import WorkerSettings
from aiaas.schemas.errors import InvalidMessage, NotFound
from aiaas.schemas.sources import Source
from aiaas.streams.settings import Settings

TOPIC = r"^[A-Za-z0-9._-]{1,249}$"


class ScoringSettings(BaseSettings):
    """One scoring worker: a model, an input and an output topic, and how to read the input."""

    model_config = SettingsConfigDict(env_prefix="AIAAS_SCORE_", extra="ignore")

    model: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    from_topic: str = Field(pattern=TOPIC)
    to_topic: str = Field(pattern=TOPIC)
    dlq_topic: str | None = Field(default=None, pattern=TOPIC)  # default: <to_topic>.dlq
    group_id: str | None = None  # default: <prefix>score.<model>.<from_topic>
    version: int | None = Field(default=None, ge=1)  # pin one version (no hot reload)
    stage: Literal["production", "latest"] = "latest"  # latest: production if any, else newest
    exactly_once: bool = True  # False: at-least-once (no transactions; offsets committed after acks)
    max_batch: int = Field(default=2000, ge=1)  # records per poll, decode and onnxruntime call
    threads: int = Field(default=1, ge=0)  # onnxruntime intra-op threads (0: all cores)
    # A poll is decoded and scored on the event loop while the last one took under this, else in a
    # thread (a large model must not hold the Kafka clients up); 0: always in a thread
    inline_below_ms: float = Field(default=100.0, ge=0)
    partitions: int | None = Field(default=None, ge=1)  # of to_topic if created here (default: the input's)
    # A killed worker's partitions wait one session timeout before the group hands them on.
    session_timeout_ms: int = Field(default=6000, ge=1000)
    heartbeat_interval_ms: int = Field(default=1000, ge=100)
    transaction_timeout_ms: int = Field(default=60_000, ge=1000)
    retry_deadline_s: float = Field(default=60.0, gt=0)  # retriable write failures, then the worker stops
    # stop(): how long the transactions in flight may still take (with the broker gone they would wait
    # out retry_deadline_s); past it they are left open, and the partitions' next owner aborts them
    stop_grace_s: float = Field(default=20.0, gt=0)
    # Prediction values: JSON, or Avro (agents/inference/predictions_avro.py): Confluent-framed and the
    # schema registered under <to_topic>-value with output_registry_url, else bare (output_schema: .avsc)
    output_format: Literal["json", "avro"] = "json"
    output_registry_url: str | None = None
    output_schema: Path | None = None  # write the Avro writer schema here at start

    @model_validator(mode="after")
    def _heartbeats_fit(self) -> ScoringSettings:
        if self.heartbeat_interval_ms * 3 > self.session_timeout_ms:
            raise ValueError("heartbeat_interval_ms must be at most a third of session_timeout_ms")
        if self.version is not None and self.stage == "production":
            raise ValueError("give --version or --stage production, not both")
        if self.output_format != "avro" and (self.output_registry_url or self.output_schema):
            raise ValueError("output_registry_url and output_schema are for output_format avro")
        return self

    def group(self, settings: Settings) -> str:
        return self.group_id or settings.topic(f"score.{self.model}.{self.from_topic}")

    def dead_letter_topic(self) -> str:
        return self.dlq_topic or f"{self.to_topic}.dlq"

    def worker_settings(self) -> WorkerSettings:
        """What ``Sessions`` (the registry-following onnxruntime sessions) needs."""
        return WorkerSettings(model=self.model, version=self.version, stage=self.stage,
                              intra_op_threads=self.threads, max_batch=self.max_batch)


def load_source(path: str | Path, topic: str | None = None) -> Source:
    """The ``Source`` in a YAML file: the file is a source block itself, or holds one under
    ``source:`` (a JobSpec). ``topic`` (``--from``) replaces the file's topic when given."""
    p = Path(path)
    try:
        raw: Any = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise NotFound("source spec file not found", path=str(p)) from None
    except yaml.YAMLError as exc:
        raise InvalidMessage("source spec is not YAML", path=str(p), detail=str(exc)[:300]) from None
    if isinstance(raw, dict) and isinstance(raw.get("source"), dict):
        raw = raw["source"]
    if not isinstance(raw, dict):
        raise InvalidMessage("source spec must be a mapping (a source: block)", path=str(p))
    if topic is not None:
        raw = {**raw, "topic": topic}
    try:
        return Source.model_validate(raw)
    except ValidationError as exc:
        errors = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
        raise InvalidMessage("source spec does not validate", path=str(p), errors=errors) from None
