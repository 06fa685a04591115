"""Inference worker settings: ``AIAAS_INFER_<FIELD>`` or the worker's command-line flags."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from aiaas.streams.settings import MIB


class WorkerSettings(BaseSettings):
    """One worker serves one model: a pinned version, or whatever a stage holds (hot reload)."""

    model_config = SettingsConfigDict(env_prefix="AIAAS_INFER_", extra="ignore")

    model: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    version: int | None = Field(default=None, ge=1)  # pin one version (no hot reload)
    stage: Literal["production", "latest"] = "latest"  # latest: production if any, else newest
    max_batch: int = Field(default=128, ge=1)  # requests per onnxruntime call
    max_wait_ms: float = Field(default=0.0, ge=0)  # extra wait to fill a batch (0: take what is there)
    reply_linger_ms: int = Field(default=0, ge=0)  # 0: replies leave at once (linger 1 ms cost ~4 ms p50)
    inline_below_ms: float = Field(default=1.0, ge=0)  # onnxruntime calls this short run on the loop
    intra_op_threads: int = Field(default=1, ge=0)  # 0: onnxruntime decides (all cores)
    inter_op_threads: int = Field(default=1, ge=0)
    spin: bool = False  # onnxruntime's pool threads spin-wait between runs (burns idle cores)
    providers: list[str] | None = None  # default: CUDA when available, then CPU
    weight: float | None = Field(default=None, ge=0)  # assignor capacity; default 4 with a GPU, else 1
    partitions: int = Field(default=8, ge=1)  # of the request/results topics when this worker creates them
    max_request_bytes: int = Field(default=4 * MIB, ge=1024)
    max_request_elements: int = Field(default=16_000_000, ge=1)
    max_reply_bytes: int = Field(default=64 * MIB, ge=1024)  # bigger replies get a 413 error reply
    max_versions: int = Field(default=4, ge=2)  # sessions kept loaded (default, canary, pins)
    fetch_min_bytes: int = Field(default=1, ge=1)  # broker waits for this much (or fetch_max_wait_ms)
    fetch_max_wait_ms: int | None = Field(default=None, ge=0)  # default: the Kafka settings' value
    commit_interval_ms: float = Field(default=100.0, ge=0)  # offsets commit at most this often (0: each poll)
    batching: bool = True  # off: one request per onnxruntime call (the benchmark's baseline)
    group_id: str | None = None  # default: <prefix>inference.<model> (what the autoscaler watches)
    # A worker that dies unannounced (kill -9, a lost node) holds its partitions, and so the replies
    # waiting on them, until its session times out; the process-wide 30 s stalled them that long.
    # 6 s is the broker's default minimum (group.min.session.timeout.ms); heartbeats every second.
    session_timeout_ms: int = Field(default=6000, ge=1000)
    heartbeat_interval_ms: int = Field(default=1000, ge=100)
    # Static membership (KIP-345), opt-in: a restarted worker with the same id takes its partitions
    # back without a rebalance. A stopped one does not leave the group, though, so its partitions
    # wait a session timeout: for fixed fleets (a StatefulSet's pod name), not autoscaled ones.
    instance_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,128}$")
    # A stage of a split model (agents/inference/stages.py): ``model`` names the pipeline and
    # ``pipeline_stage`` the stage; ``pipeline`` and ``forward_to`` are filled in from the registry.
    pipeline_stage: int | None = Field(default=None, ge=1)
    pipeline: str | None = None  # the pipeline's name: what callers call, what replies say
    forward_to: str | None = None  # the next stage's model: outputs go to its request topic

    @model_validator(mode="after")
    def _pin_or_stage(self) -> WorkerSettings:
        if self.version is not None and self.stage == "production":
            raise ValueError("give --version or --stage production, not both")
        return self

    @model_validator(mode="after")
    def _heartbeats_fit(self) -> WorkerSettings:
        if self.heartbeat_interval_ms * 3 > self.session_timeout_ms:
            raise ValueError("heartbeat_interval_ms must be at most a third of session_timeout_ms")
        return self
