"""Training messages: data batches, gradients, parameter snapshots, metrics, job specs.

Tensors never travel inside the JSON: a message that carries tensors is a JSON header plus
safetensors bytes (see ``streams.codecs.pack``); these models are the JSON headers.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from schemas.envelope import Envelope

# Keys and headers of the training topics (the wire contract between trainers and the aggregator).
PARAMS_KEY = "latest"  # train.<job>.params: every published version
CHECKPOINT_KEY = "checkpoint"  # train.<job>.params: checkpoints (with optimizer state), transactional
SENT_AT = "t-sent"  # header: sender's wall clock (epoch seconds, float) when the record was produced


class DataBatch(Envelope):
    """Header of a data record on ``train.<job>.data``; tensors ``x`` and ``y`` ride as safetensors."""

    KIND: ClassVar[str] = "data_batch"

    job_id: str
    batch_index: int = Field(ge=0)
    rows: int = Field(ge=1)
    split: Literal["train", "test"] = "train"
    strategy: str = "random"


class GradientMessage(Envelope):
    """Header of a gradient (or parameter delta) record on ``train.<job>.grads``."""

    KIND: ClassVar[str] = "gradient"

    job_id: str
    worker_id: str
    step: int = Field(ge=0)
    base_version: int = Field(ge=0)
    samples: int = Field(ge=0)
    loss: float | None = None
    compression: Literal["none", "fp16", "topk"] = "none"
    # "ready": no tensors; the trainer holds its data and can start (the aggregator starts the job's
    # clock, version 0, once the spec's trainers have all said so)
    payload: Literal["gradient", "delta", "params", "ready"] = "gradient"
    timings: dict[str, float] = Field(default_factory=dict, description="sender's ms per phase")


class ParameterSnapshot(Envelope):
    """Header of a parameter version on ``train.<job>.params`` (compacted; key ``latest``)."""

    KIND: ClassVar[str] = "parameters"

    job_id: str
    version: int = Field(ge=0)
    consumed_offsets: dict[str, int] = Field(default_factory=dict)
    has_optimizer_state: bool = False
    final: bool = False
    samples: int = Field(default=0, ge=0, description="training samples applied up to this version")
    server_state: dict[str, Any] = Field(
        default_factory=dict, description="checkpoints: optimizer groups, scheduler, counters (JSON)"
    )


class MetricsMessage(Envelope):
    """Per-step progress on ``train.<job>.metrics``."""

    KIND: ClassVar[str] = "metrics"

    job_id: str
    version: int = Field(ge=0)
    epoch: float = 0.0
    loss: float | None = None
    test_loss: float | None = None
    test_accuracy: float | None = None
    samples_per_s: float | None = None
    grad_bytes: int | None = None
    live_workers: int | None = None
    dropped_stale: int = 0
    rejected: int = 0
    ts: float = 0.0
    timings: dict[str, float] = Field(default_factory=dict, description="ms per phase of a sync round")
