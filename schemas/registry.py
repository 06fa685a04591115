"""Model registry records: a model version on ``models`` and its ONNX chunks on ``artifacts``."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, Field

from schemas.envelope import Envelope
from schemas.inference import Datatype


class TensorSignature(BaseModel):
    name: str
    datatype: Datatype
    shape: list[int | None]  # None for a dynamic axis (e.g. batch)


class Lineage(BaseModel):
    job_id: str | None = None
    parameter_version: int | None = None
    offsets: dict[str, int] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)


class ModelVersion(Envelope):
    """One registered version of a model (the ``models`` topic is compacted on name:version)."""

    KIND: ClassVar[str] = "model_version"

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    version: int = Field(ge=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: int = Field(ge=1)
    inputs: list[TensorSignature]
    outputs: list[TensorSignature]
    stage: Literal["staging", "production", "archived"] = "staging"
    uri: str | None = None  # file:// or s3:// when the bytes are not on the artifacts topic
    chunks: int = Field(default=0, ge=0)
    lineage: Lineage = Field(default_factory=Lineage)
    created_at: float = 0.0
    tenant: str | None = None
