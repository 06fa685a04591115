"""Trainer process settings (``AIAAS_TRAINER_*``); the job itself is described by its JobSpec."""

from __future__ import annotations

import os
import socket

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class TrainerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AIAAS_TRAINER_", env_file=".env", extra="ignore")

    worker_id: str = Field(default_factory=_default_worker_id, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    threads: int = Field(default=1, ge=1, description="torch intra-op threads (cores are shared)")
    switch_interval_ms: float = Field(
        default=1.0, gt=0, description="GIL hand-off between the event loop and the torch thread "
        "(Python's 5 ms default adds up to 5 ms to a round when both want the GIL)")
    inline_below_ms: float = Field(
        default=10.0, ge=0, description="run torch work inline on the event loop while a call takes "
        "less than this (a thread hop costs more than a small model's step); 0: always a thread")
    session_timeout_ms: int = Field(
        default=6000, ge=1000, description="consumer group: how soon a dead trainer's partitions move"
    )
    heartbeat_interval_ms: int = Field(default=1000, ge=100)
    spec_timeout_s: float = Field(default=60.0, gt=0, description="wait this long for the JobSpec")
    param_wait_log_s: float = Field(default=10.0, gt=0, description="log while waiting this long")
