"""Operational records: dead letters, audit entries, job status."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from aiaas.schemas.audit import AuditRecord as AuditRecord  # its home is schemas/audit.py
from aiaas.schemas.envelope import Envelope


class DeadLetter(Envelope):
    """A record that could not be processed, with why; the original bytes are kept base64."""

    KIND: ClassVar[str] = "dead_letter"

    source_topic: str
    source_partition: int
    source_offset: int
    reason: str
    code: str
    details: dict[str, Any] = Field(default_factory=dict)
    key_b64: str | None = None
    value_b64: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    ts: float = 0.0


class JobStatus(Envelope):
    """Latest state of a training job on the compacted ``jobs`` topic.

    ``missed_target``: the job ran its budget out without meeting its ``target`` (its model is
    still exported and registered); ``error`` says why a job failed or missed its target. A writer
    that sets ``heartbeat_s`` rewrites the status at least that often while the job runs, so a
    reader can tell a running job from one whose processes are gone (``aiaas.streams.jobs.shown_state``).
    """

    KIND: ClassVar[str] = "job_status"

    job_id: str
    state: Literal["submitted", "running", "exporting", "succeeded", "missed_target", "failed"]
    version: int = 0
    metrics: dict[str, float] = Field(default_factory=dict)
    model_name: str | None = None
    model_version: int | None = None
    error: str | None = None
    ts: float = 0.0
    heartbeat_s: float | None = None


class ScalingSample(Envelope):
    """One look of the autoscaler at a model (``scaling.<model>``, docs/operations.md "Autoscaling"):
    the arrival rate it saw and the rate it forecast, so the status page can plot one against the
    other. ``forecast_rate`` is the highest rate forecast over the next ``horizon_s`` (the measured
    worker start-up time plus one step); 0 for the reactive policy and before a season is seen."""

    KIND: ClassVar[str] = "scaling_sample"

    model: str
    policy: Literal["reactive", "predictive"]
    ts: float = Field(description="epoch seconds of the look")
    arrival_rate: float = Field(ge=0, description="records/s over the rate window")
    forecast_rate: float = Field(ge=0)
    horizon_s: float = Field(ge=0)
    lag: int = Field(ge=0)
    replicas: int = Field(ge=0)
