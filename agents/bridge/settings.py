"""Bridge settings (``AIAAS_BRIDGE_*``): limits, TTLs, auth, callback policy, webhook retries.

Kafka and Redis connection settings stay in ``aiaas.streams.settings.Settings`` (``AIAAS_*``); this
holds only what the HTTP edge needs.
"""

from __future__ import annotations

import ipaddress
import uuid
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1024 * 1024


class BridgeSettings(BaseSettings):
    """Every field can be set as ``AIAAS_BRIDGE_<FIELD>`` (lists as JSON, e.g. ``["127.0.0.1/32"]``)."""

    model_config = SettingsConfigDict(env_prefix="AIAAS_BRIDGE_", env_file=".env", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    http: Literal["auto", "h11", "httptools"] = Field(
        default="auto", description="uvicorn HTTP parser (auto: httptools when installed)"
    )
    instance: str = Field(default_factory=lambda: uuid.uuid4().hex[:8], pattern=r"^[A-Za-z0-9_-]{1,64}$")

    auth: bool = True
    insecure_public: bool = Field(
        default=False, description="allow auth=false on a non-loopback address (never implied)"
    )
    auth_cache_s: float = Field(default=5.0, ge=0.0, description="how long a key lookup is reused")

    max_body_bytes: int = Field(
        default=4 * MIB, ge=1024, description="agrees with the worker's max_request_bytes (4 MiB)"
    )
    max_head_bytes: int = Field(
        default=64 * 1024, ge=8192, description="request line and headers; over it, 431 and closed"
    )
    head_timeout_s: float = Field(
        default=10.0, gt=0.0, description="a request head must arrive in full within this (else 408, closed)"
    )
    body_timeout_s: float = Field(
        default=20.0, gt=0.0, description="a request body must arrive in full within this (else 408)"
    )
    max_body_bytes_in_flight: int = Field(
        default=256 * MIB, ge=1024, description="request bodies being read or served, in cost bytes "
        "(JSON counts json_cost_factor per byte): over it, 503 with Retry-After"
    )
    max_body_bytes_per_tenant: int = Field(
        default=64 * MIB, ge=1024, description="what one tenant may hold of max_body_bytes_in_flight (429)"
    )
    json_cost_factor: float = Field(
        default=4.0, ge=1.0, description="memory a JSON body costs per byte while served (decoded and copies)"
    )
    binary_cost_factor: float = Field(
        default=2.5, ge=1.0, description="the same for a binary-extension body (read, joined, produced)"
    )
    max_sync_in_flight: int = Field(default=1024, ge=1, description="infer calls being served (503 over it)")
    max_sync_per_tenant: int = Field(default=256, ge=1, description="one tenant's share of them (429)")
    health_probe_s: float = Field(default=1.0, gt=0.0, description="how often Kafka and Redis are probed")
    health_timeout_s: float = Field(default=2.0, gt=0.0, description="a probe not answered in this fails")
    kafka_call_timeout_s: float = Field(
        default=5.0, gt=0.0, description="registry refreshes and topic creation on the request path"
    )
    metrics_open: bool = Field(
        default=False, description="serve /metrics without a key (else a key with the metrics scope)"
    )
    default_timeout_s: float = Field(default=30.0, gt=0.0)
    # concurrent calls of this window travel as one frame (one Kafka record per model and tenant)
    pack_linger_ms: float = Field(default=2.0, ge=0.0, le=50.0)
    max_timeout_s: float = Field(default=300.0, gt=0.0)
    result_ttl_s: int = Field(default=24 * 3600, ge=1)
    idempotency_ttl_s: int = Field(default=24 * 3600, ge=1)
    idempotency_lease_s: float = Field(
        default=10.0, gt=0.0, description="in-flight lease of an idempotent request, renewed by its "
        "bridge; a retry after it lapses (the bridge died) runs the request again"
    )

    rate_per_s: float = Field(default=1000.0, gt=0.0, description="default tenant refill rate")
    rate_burst: float = Field(default=2000.0, ge=1.0, description="default tenant bucket size")

    max_async_inflight: int = Field(default=256, ge=1)
    max_async_per_tenant: int = Field(
        default=64, ge=1, description="async requests one tenant may have in flight on a bridge"
    )
    callback_allowlist: list[str] = Field(
        default_factory=list, description="CIDRs or host names allowed although private/loopback"
    )
    webhook_attempts: int = Field(default=6, ge=1)
    webhook_backoff_s: float = Field(default=0.5, gt=0.0)
    webhook_backoff_max_s: float = Field(default=60.0, gt=0.0)
    webhook_timeout_s: float = Field(default=10.0, gt=0.0)
    webhook_lease_s: float = Field(default=30.0, gt=0.0, description="claim before another bridge may retry")
    webhook_concurrency: int = Field(default=16, ge=1)
    webhook_concurrency_per_tenant: int = Field(
        default=4, ge=1, description="deliveries one tenant's webhooks may hold of a bridge's slots"
    )
    dispatch_poll_s: float = Field(default=0.2, gt=0.0)
    # an idle dispatcher doubles its poll up to this (local enqueues and freed slots wake it at once)
    dispatch_idle_max_s: float = Field(default=2.0, gt=0.0)

    audit_each_infer: bool = Field(
        default=False, description="one audit record per sync inference (default: per-second summaries)"
    )
    freeze_gc: bool = Field(
        default=False, description="gc.freeze() after start-up (the bridge process sets it)"
    )
    ui: bool = Field(default=True, description="mount aiaas.agents.bridge.ui's router when it exists")

    @model_validator(mode="after")
    def _lease_outlives_a_post(self) -> BridgeSettings:
        if self.webhook_lease_s <= self.webhook_timeout_s:
            raise ValueError("webhook_lease_s must exceed webhook_timeout_s (else two bridges may POST)")
        return self

    @field_validator("callback_allowlist")
    @classmethod
    def _entries(cls, value: list[str]) -> list[str]:
        for entry in value:
            if "/" in entry:
                ipaddress.ip_network(entry, strict=False)
        return value

    def is_loopback_bind(self) -> bool:
        """True when the HTTP server listens only on a loopback address."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def reply_client(self) -> str:
        """Name of this bridge's reply topic suffix (one per bridge instance)."""
        return f"bridge-{self.instance}"
