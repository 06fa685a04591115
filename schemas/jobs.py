"""JobSpec: everything a training job needs, validated up front so bad specs fail with the field named.

The spec travels on the compacted ``jobs`` topic (key: job id) and is what ``aiaas train --spec``
reads from YAML. Trainers and the aggregator build the same model and optimizer from it.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from aiaas.schemas.envelope import Envelope
from aiaas.schemas.sources import Source

JOB_ID = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MLPSpec(_Spec):
    """A declarative multi-layer perceptron: input -> hidden layers -> output."""

    kind: Literal["mlp"] = "mlp"
    input_dim: int = Field(ge=1)
    hidden: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [128])
    output_dim: int = Field(ge=1)
    activation: Literal["relu", "tanh", "gelu", "sigmoid"] = "relu"
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)


class ModuleSpec(_Spec):
    """Any ``torch.nn.Module`` by import path (``package.module:Class``) with keyword arguments."""

    kind: Literal["module"] = "module"
    import_path: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    kwargs: dict[str, int | float | str | bool | list[int]] = Field(default_factory=dict)
    input_dim: int = Field(ge=1)
    output_dim: int = Field(ge=1)


class TransformerClassifierSpec(_Spec):
    """A pretrained text encoder (installed with the package, never downloaded) + mean pooling + a
    linear head (docs/transformers.md). The bottom ``frozen_layers`` encoder layers, and the
    embeddings with them, keep their pretrained weights and never travel: every process loads them
    from the package; only the layers above and the head are trained and exchanged."""

    kind: Literal["transformer-classifier"] = "transformer-classifier"
    pretrained: Literal["all-MiniLM-L6-v2"] = "all-MiniLM-L6-v2"
    output_dim: int = Field(ge=1, description="classes")
    frozen_layers: int = Field(default=0, ge=0, le=64, description="bottom encoder layers frozen "
                               "(>= 1 freezes the embeddings too); at most the encoder's layers")
    max_seq_len: int = Field(default=64, ge=2, le=512, description="tokens per text (truncated)")
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0, description="before the head")

    @property
    def input_dim(self) -> int:
        """Width of a data row: ``input_ids`` then ``attention_mask``, ``max_seq_len`` each."""
        return 2 * self.max_seq_len


def _model_kind(value: Any) -> str:
    """``kind`` defaults to ``mlp`` so short YAML specs stay short."""
    kind = value.get("kind", "mlp") if isinstance(value, dict) else getattr(value, "kind", "mlp")
    return str(kind)


ModelSpec = Annotated[
    Annotated[MLPSpec, Tag("mlp")] | Annotated[ModuleSpec, Tag("module")]
    | Annotated[TransformerClassifierSpec, Tag("transformer-classifier")],
    Discriminator(_model_kind),
]


class OptimizerSpec(_Spec):
    name: Literal["sgd", "momentum", "adam"] = "adam"
    lr: float = Field(default=1e-3, gt=0.0, le=10.0)
    momentum: float = Field(default=0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(default=0.0, ge=0.0)


class ScheduleSpec(_Spec):
    kind: Literal["constant", "step", "cosine"] = "constant"
    step_size: int = Field(default=100, ge=1)
    gamma: float = Field(default=0.5, gt=0.0, le=1.0)
    warmup_steps: int = Field(default=0, ge=0)


class SyncSpec(_Spec):
    """How trainers and the aggregator agree on parameters (docs/architecture.md, "Sync modes")."""

    mode: Literal["sync", "async", "ring", "hybrid"] = "sync"
    staleness: int = Field(default=4, ge=0, description="async: max version lag of a gradient")
    local_steps: int = Field(default=8, ge=1, description="hybrid/ring: local steps per exchange")
    straggler_deadline_ms: int = Field(default=2000, ge=10, description="sync: wait at most this")


class CompressionSpec(_Spec):
    kind: Literal["none", "fp16", "topk"] = "none"
    ratio: float = Field(default=0.01, gt=0.0, le=1.0, description="topk: fraction of entries kept")
    error_feedback: bool = True
    params_dtype: Literal["float32", "float16"] = Field(
        default="float32",
        description="parameters sent to trainers (versions, ring exchanges); the aggregator keeps "
        "float32 master weights, checkpoints and the final version stay float32",
    )


class ParameterServerSpec(_Spec):
    """The parameter server (docs/architecture.md, "Sharded parameter server"): ``shards`` aggregator
    processes each own whole tensors, balanced by size; shard 0 also evaluates, reports and exports."""

    shards: int = Field(default=1, ge=1, le=64, description="aggregator processes the parameters "
                        "are split over (by tensor)")


class TargetSpec(_Spec):
    metric: Literal["test_accuracy", "test_loss"] = "test_accuracy"
    value: float

    @property
    def maximize(self) -> bool:
        return self.metric == "test_accuracy"


class TextSpec(_Spec):
    """Labelled text for ``source: debian`` (Debian package descriptions labelled by Section), tokenized
    at push time into ``input_ids`` + ``attention_mask`` (``aiaas.data.textdata``)."""

    tokenizer: Literal["all-MiniLM-L6-v2"] = "all-MiniLM-L6-v2"
    max_length: int = Field(default=64, ge=2, le=512, description="tokens per text; = model.max_seq_len")
    sections: list[str] = Field(default_factory=lambda: ["games", "graphics", "science", "sound"],
                                min_length=2, description="Debian sections, one class each")
    per_class: int = Field(default=400, ge=2, description="texts per section (a stable-hash sample)")


class DataSpec(_Spec):
    """Where ``aiaas data push`` takes the data from and how it spreads it over partitions."""

    source: Literal["digits", "diabetes", "csv", "npy", "debian"] = "digits"
    path: str | None = None
    target_column: str | None = None
    strategy: Literal["random", "sequential", "stratified", "label", "hash"] = Field(
        default="random", description="stratified: every class on every partition; label: each class "
        "on one partition (see aiaas.data.partitioners)")
    partitions: int = Field(default=2, ge=1, le=1024)
    test_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    batch_rows: int = Field(default=64, ge=1)
    seed: int = 0
    task: Literal["auto", "classification", "regression"] = "auto"
    text: TextSpec = Field(default_factory=TextSpec, description="source debian: what to tokenize")

    @model_validator(mode="after")
    def _path_needed(self) -> DataSpec:
        if self.source in ("csv", "npy") and not self.path:
            raise ValueError(f"data.path is required for source {self.source!r}")
        return self


class ContinuousSpec(_Spec):
    """``mode: continuous``: how often a candidate is scored and when it replaces production
    (README, "Train from your topic"). Every ``publish_every_records`` source records or
    ``publish_every_s`` seconds, whichever comes first, the aggregator scores the current parameters
    and the production version on the latest held-out window; the candidate is promoted when it is
    not worse than production there by more than ``tolerance`` and scores at least ``min_score``
    (a floor that keeps a model trained on noise out of production); on a stream idle since the
    promoted candidate was taken, only when it is better by more than ``tolerance``."""

    publish_every_records: int | None = Field(default=2000, ge=1)
    publish_every_s: float | None = Field(default=10.0, gt=0.0)
    tolerance: float = Field(default=0.02, ge=0.0, description="accuracy (or loss) a candidate may lose")
    min_score: float | None = Field(default=None, description="never promote below this accuracy "
                                    "(above this loss, for mse)")
    window_rows: int = Field(default=4000, ge=1, description="each trainer trains on its newest rows")
    holdout_rows: int = Field(default=500, ge=1, description="the held-out window candidates are scored on")

    @model_validator(mode="after")
    def _some_cadence(self) -> ContinuousSpec:
        if self.publish_every_records is None and self.publish_every_s is None:
            raise ValueError("continuous: set publish_every_records or publish_every_s")
        return self


class ExportSpec(_Spec):
    model_name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    register_model: bool = True
    stage: Literal["staging", "production"] = "production"


class JobSpec(Envelope):
    """A training job. Exactly one of ``epochs`` or ``steps`` bounds it; ``target`` may stop it early."""

    KIND: ClassVar[str] = "job_spec"

    job_id: str = Field(pattern=JOB_ID)
    model: ModelSpec
    loss: Literal["mse", "cross_entropy", "bce"] = "cross_entropy"
    optimizer: OptimizerSpec = Field(default_factory=OptimizerSpec)
    schedule: ScheduleSpec = Field(default_factory=ScheduleSpec)
    batch_size: int = Field(default=64, ge=1, le=65536)
    epochs: float | None = Field(default=None, gt=0.0)
    steps: int | None = Field(default=None, ge=1)
    sync: SyncSpec = Field(default_factory=SyncSpec)
    compression: CompressionSpec = Field(default_factory=CompressionSpec)
    checkpoint_interval: int = Field(default=50, ge=1, description="steps between checkpoints")
    eval_interval: int = Field(default=10, ge=1, description="steps between test evaluations")
    target: TargetSpec | None = None
    trainers: int = Field(default=2, ge=1, le=1024, description="expected trainers (data partitions)")
    data: DataSpec = Field(default_factory=DataSpec)
    source: Source | None = Field(default=None, description="train from the user's topic instead of "
                                  "pushed data; data.strategy/partitions/test_fraction still apply")
    mode: Literal["bounded", "continuous"] = "bounded"
    continuous: ContinuousSpec = Field(default_factory=ContinuousSpec)
    export: ExportSpec = Field(default_factory=ExportSpec)
    aggregator: ParameterServerSpec = Field(default_factory=ParameterServerSpec)
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> JobSpec:
        if self.mode == "continuous":
            if self.source is None:
                raise ValueError("mode 'continuous' needs a source: (the topic it keeps training from)")
            if self.epochs is not None:
                raise ValueError("mode 'continuous' has no epochs (use steps to bound it, or none)")
        elif (self.epochs is None) == (self.steps is None):
            raise ValueError("set exactly one of 'epochs' or 'steps'")
        if self.source is not None and self.source.label is None:
            raise ValueError("a job's source needs a label: (the field training learns)")
        if self.source is not None and self.source.width() != self.model.input_dim:
            raise ValueError(f"model.input_dim is {self.model.input_dim} but the source's features "
                             f"give {self.source.width()} columns")
        if self.loss == "cross_entropy" and self.model.output_dim < 2:
            raise ValueError("loss 'cross_entropy' needs model.output_dim >= 2 (one logit per class)")
        if self.aggregator.shards > 1 and (self.sync.mode == "ring" or self.source is not None):
            raise ValueError("aggregator.shards > 1 needs sync, async or hybrid mode on pushed data "
                             "(ring mode has no parameter server in the loop; sources are not sharded)")
        if self.data.partitions < self.trainers:
            raise ValueError("data.partitions must be >= trainers (each trainer owns partitions)")
        return self

    @property
    def model_name(self) -> str:
        return self.export.model_name or self.job_id


class CandidateDecision(Envelope):
    """A continuous job's verdict on one candidate (on ``train.<job>.metrics`` beside the metrics):
    its score and production's on the same newest held-out window, and whether it was promoted."""

    KIND: ClassVar[str] = "candidate_decision"

    job_id: str
    version: int = Field(ge=0, description="parameter version scored")
    metric: Literal["accuracy", "mse"]
    candidate: float
    production: float | None = None  # None: nothing served yet
    production_version: int | None = None
    tolerance: float = 0.0
    window_rows: int = 0
    promoted: bool = False
    model_version: int | None = None  # the registered version, when promoted
    source_position: int = 0  # the aggregator's read positions in the source, summed
    ts: float = 0.0
