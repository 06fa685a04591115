"""Model registry records: a model version on ``models`` and its ONNX chunks on ``artifacts``."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, Field

from aiaas.schemas.envelope import Envelope
from aiaas.schemas.inference import Datatype
from aiaas.schemas.masking import Masking


class TensorSignature(BaseModel):
    name: str
    datatype: Datatype
    shape: list[int | None]  # None for a dynamic axis (e.g. batch)


class SourceLineage(BaseModel):
    """Where a version trained from the user's own topic took its rows (README, "Train from your
    topic"): partition -> [first offset, end offset) read, and the Avro writer schemas seen."""

    topic: str
    offsets: dict[int, list[int]] = Field(default_factory=dict)
    schema_ids: list[int] = Field(default_factory=list)
    format: str = "json"


class Lineage(BaseModel):
    job_id: str | None = None
    parameter_version: int | None = None
    offsets: dict[str, int] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)
    # a classifier's classes, in label-index order (its ``label`` output holds these values)
    classes: list[str] = Field(default_factory=list)
    source: SourceLineage | None = None  # a job that trained from a declared source


class BundleFile(BaseModel):
    """A file of a bundle besides its ONNX graph (tokenizer.json, labels.json, config.json), stored
    like the graph: chunks on ``artifacts`` from ``artifact_offset``, or a file:// ``uri``."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: int = Field(ge=0)
    chunks: int = Field(default=0, ge=0)
    artifact_offset: int | None = Field(default=None, ge=0)
    uri: str | None = None


class ModelVersion(Envelope):
    """One registered version of a model (the ``models`` topic is compacted on name:version)."""

    KIND: ClassVar[str] = "model_version"

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    version: int = Field(ge=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: int = Field(ge=1)
    inputs: list[TensorSignature]
    outputs: list[TensorSignature]
    # production: the version served by default (at most one per name); canary: served to
    # ``canary_weight`` of the requests beside production; archived: demoted by promote/rollback.
    stage: Literal["staging", "production", "canary", "archived"] = "staging"
    uri: str | None = None  # file:// or s3:// when the bytes are not on the artifacts topic
    chunks: int = Field(default=0, ge=0)
    artifact_offset: int | None = Field(default=None, ge=0)  # first chunk on ``artifacts`` (partition 0)
    canary_weight: float = Field(default=0.0, ge=0.0, le=1.0)
    promoted_at: float | None = None  # when it last became production (rollback goes by this)
    lineage: Lineage = Field(default_factory=Lineage)
    files: list[BundleFile] = Field(default_factory=list, description="a bundle's other files")
    pipeline: list[str] = Field(default_factory=list, description=(
        "the stage models this version is split into, in order, each '<name>:<version>' "
        "(aiaas models split; docs/transformers.md)"))
    created_at: float = 0.0
    tenant: str | None = None
    masking: Masking | None = Field(default=None, description=(
        "personal fields of a request's parameters, dropped or hashed at the bridge before the "
        "request goes on Kafka (docs/security.md, 'Masking')"))


class VersionClaim(Envelope):
    """A publisher's claim of ``version`` of ``name`` on the ``models`` topic (keyed
    ``<name>:claim:<claim_id>``): the first claim of a number in the partition's order wins it
    (``aiaas.registry.versionclaims``), so two processes never publish the same number."""

    KIND: ClassVar[str] = "version_claim"

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    version: int = Field(ge=1)
    claim_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    created_at: float = 0.0
