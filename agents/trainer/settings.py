"""Trainer process settings (``AIAAS_TRAINER_*``); the job itself is described by its JobSpec."""

from __future__ import annotations

import os
import socket

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from aiaas.agents.compute_settings import ComputeSettings


def _default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class TrainerSettings(ComputeSettings):
    model_config = SettingsConfigDict(env_prefix="AIAAS_TRAINER_", env_file=".env", extra="ignore")

    worker_id: str = Field(default_factory=_default_worker_id, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    session_timeout_ms: int = Field(
        default=6000, ge=1000, description="consumer group: how soon a dead trainer's partitions move"
    )
    heartbeat_interval_ms: int = Field(default=1000, ge=100)
    spec_timeout_s: float = Field(default=60.0, gt=0, description="wait this long for the JobSpec")
    param_wait_log_s: float = Field(default=10.0, gt=0, description="log while waiting this long")
