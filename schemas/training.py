"""Training messages: data batches, gradients, parameter snapshots, metrics, job specs.

Tensors never travel inside the JSON: a message that carries tensors is a JSON header plus
safetensors bytes (see ``aiaas.streams.codecs.pack``); these models are the JSON headers.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from aiaas.schemas.envelope import Envelope

# Keys of the training topics (the wire contract between trainers and the aggregator; the t-sent
# header is named in aiaas.streams.headers).
PARAMS_KEY = "latest"  # train.<job>.params: every published version
CHECKPOINT_KEY = "checkpoint"  # train.<job>.params: checkpoints (with optimizer state), transactional


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
    # clock, version 0, once the spec's trainers have all said so). "fatal": no tensors; the trainer
    # cannot go on (``error`` says why) and the aggregator fails the job with that reason. "stop":
    # no tensors; shard 0 of a sharded parameter server tells another shard to stop at ``step``
    payload: Literal["gradient", "delta", "params", "ready", "fatal", "stop"] = "gradient"
    error: str | None = None
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
    seconds: float | None = Field(default=None, description="since the job's clock started (version 0 "
                                  "out, after the rendezvous) when this evaluation was made: the "
                                  "time-to-accuracy curve")
    timings: dict[str, float] = Field(default_factory=dict, description="ms per phase of a sync round")


DATA_INFO_KEY = "info"  # train.<job>.test: the DataInfo record (before the test batches)


class DataInfo(Envelope):
    """What a push learned from the data, on ``train.<job>.test`` (key ``info``): the shape of the
    data (checked against the spec before a job starts) and the preprocessing training saw, which
    the exported model folds into its graph so that callers send raw features. The feature scaling
    rides as safetensors ``x_mean`` and ``x_std`` (float32 [n_features]); the model was trained on
    ``(x - x_mean) / x_std`` and, for regression, on targets ``(y - y_mean) / y_std``."""

    KIND: ClassVar[str] = "data_info"

    job_id: str
    source: str
    task: Literal["classification", "regression"]
    n_features: int = Field(ge=1)
    n_classes: int = Field(default=0, ge=0, description="0 for regression")
    classes: list[float] = Field(default_factory=list, description="class value of each label index")
    target_dim: int = Field(default=1, ge=1, description="regression: values per target row")
    y_mean: float = 0.0
    y_std: float = 1.0
    train_rows: int = Field(default=0, ge=0)
    test_rows: int = Field(default=0, ge=0)
    strategy: str = "random"
    partitions: int = Field(default=1, ge=1)
