"""Aggregator process settings (``AIAAS_AGGREGATOR_*``); the job itself is described by its JobSpec."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from aiaas.agents.compute_settings import ComputeSettings


class AggregatorSettings(ComputeSettings):
    model_config = SettingsConfigDict(env_prefix="AIAAS_AGGREGATOR_", env_file=".env", extra="ignore")

    start_wait_s: float = Field(
        default=30.0, gt=0, description="first round: wait this long for the spec's number of trainers"
    )
    forget_after_s: float = Field(default=30.0, gt=0, description="drop a worker silent this long")
    group_poll_s: float = Field(default=1.0, gt=0, description="how often to read the trainers' group")
    data_wait_s: float = Field(default=120.0, gt=0, description="wait this long for pushed data")
    spec_timeout_s: float = Field(default=60.0, gt=0)
    max_poll_records: int = Field(default=256, ge=1)
    heartbeat_s: float = Field(default=5.0, gt=0, description="rewrite the running job's status this often")
    shard_wait_s: float = Field(default=180.0, gt=0, description="shard 0 at the end: wait this long for "
                                "the other shards' final versions (one may be restarting)")
    validate_rows: int = Field(default=256, ge=1, description="test rows used to compare ONNX and torch")
