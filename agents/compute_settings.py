"""The torch knobs every training process has (trainers and the aggregator share one machine's cores)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings


class ComputeSettings(BaseSettings):
    """Subclasses set their own ``model_config`` (env prefix)."""

    threads: int = Field(default=1, ge=1, description="torch intra-op threads (cores are shared)")
    switch_interval_ms: float = Field(
        default=1.0, gt=0, description="GIL hand-off between the event loop and the torch thread "
        "(Python's 5 ms default adds up to 5 ms to a round when both want the GIL)")
    inline_below_ms: float = Field(
        default=10.0, ge=0, description="run torch work inline on the event loop while a call takes "
        "less than this (a thread hop costs more than a small model's step); 0: always a thread")
