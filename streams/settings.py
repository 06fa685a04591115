"""Settings for every process, from the environment (prefix ``AIAAS_``) or a ``.env`` file.

The settings turn themselves into aiokafka keyword arguments so that size limits, security and
tuning agree in one place (see docs/operations.md: limits that disagree stall silently).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1024 * 1024


def default_state_dir() -> Path:
    """``$XDG_CACHE_HOME/aiaas/state`` (``~/.cache/aiaas/state``): local state (the broker's data,
    logs, pid files, faust's table folders) belongs to the user, never to the installed package
    (site-packages may be read-only) nor to whatever directory a command runs in."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "aiaas" / "state"


class Settings(BaseSettings):
    """Process-wide configuration; every field can be set as ``AIAAS_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="AIAAS_", env_file=".env", extra="ignore")

    bootstrap_servers: str = "127.0.0.1:19092"
    client_id: str = "aiaas"
    topic_prefix: str = "aiaas."
    replication_factor: int | None = Field(default=None, ge=1)  # None: the broker's default

    security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    # access control on (docs/operations.md, "Access control"): the processes aiaas starts (a job's
    # aggregator and trainers, serve's workers and bridge, the demo's Kafka caller) log in as their
    # role's user, from <state_dir>/credentials/<user>.env (aiaas acl apply), not as this one
    role_users: bool = False

    redis_url: str = "redis://127.0.0.1:16379/0"
    # where local processes keep state; infra/kafka/env.sh has the same default (docs/operations.md)
    state_dir: Path = Field(default_factory=default_state_dir)

    metrics_port: int | None = Field(default=None, ge=0, le=65535)  # None: no exposition server
    metrics_addr: str = "127.0.0.1"  # loopback unless exposing on purpose (a pod: 0.0.0.0)
    otel_exporter: Literal["none", "console", "otlp"] = "none"  # needs opentelemetry-sdk installed

    max_message_bytes: int = Field(default=8 * MIB, ge=64 * 1024)
    chunk_bytes: int = Field(default=4 * MIB, ge=1024)
    linger_ms: int = Field(default=5, ge=0)
    max_batch_size: int = Field(default=256 * 1024, ge=16 * 1024)
    compression: Literal["none", "gzip", "lz4", "zstd", "snappy"] = "lz4"
    request_timeout_ms: int = 30_000
    session_timeout_ms: int = 30_000
    heartbeat_interval_ms: int = 3_000
    max_poll_interval_ms: int = 300_000
    # how long the broker holds a fetch with nothing to return (it answers as soon as data arrives:
    # fetch_min_bytes 1): 50 ms kept every idle consumer at 20 fetches/s (benchmarks/idle.py)
    fetch_max_wait_ms: int = 500
    # how often aiokafka's fetch routine looks again with nothing happening (its default 200 ms: 5
    # extra wake-ups/s per idle consumer); a fetch answered, a new assignment, a consume or a metadata
    # change wakes it at once anyway, so a longer safety poll costs no latency (issue 18 item 5)
    consumer_timeout_ms: int = Field(default=1000, ge=10)
    # how long start-up paths retry what a broker not ready yet refuses (aiaas.streams.retry)
    connect_deadline_s: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _check_security(self) -> Settings:
        """Refuse half-configured security: it would fail deep inside the client, or worse,
        connect unauthenticated without a word."""
        sasl = self.security_protocol.startswith("SASL_")
        if sasl and self.sasl_mechanism is None:
            raise ValueError(f"security_protocol {self.security_protocol} needs sasl_mechanism")
        if self.sasl_mechanism is not None and not sasl:
            raise ValueError("sasl_mechanism needs security_protocol SASL_PLAINTEXT or SASL_SSL")
        if self.sasl_mechanism is not None and (not self.sasl_username or self.sasl_password is None):
            raise ValueError(f"sasl_mechanism {self.sasl_mechanism} needs sasl_username and sasl_password")
        return self

    @model_validator(mode="after")
    def _chunks_fit(self) -> Settings:
        """A chunk plus its headers must fit in one record; derive it unless set explicitly."""
        limit = self.max_message_bytes - 64 * 1024
        if self.chunk_bytes > limit:
            if "chunk_bytes" in self.model_fields_set:
                raise ValueError(f"chunk_bytes must be <= max_message_bytes - 64 KiB ({limit})")
            self.chunk_bytes = self.max_message_bytes // 2
        return self

    def common_kwargs(self) -> dict[str, Any]:
        """Connection and security options shared by producers, consumers and the admin client."""
        kw: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
            "request_timeout_ms": self.request_timeout_ms,
        }
        if self.sasl_mechanism:
            kw["sasl_mechanism"] = self.sasl_mechanism
            kw["sasl_plain_username"] = self.sasl_username
            kw["sasl_plain_password"] = (
                self.sasl_password.get_secret_value() if self.sasl_password else None
            )
        if self.security_protocol in ("SSL", "SASL_SSL"):
            from aiokafka.helpers import create_ssl_context

            kw["ssl_context"] = create_ssl_context(
                cafile=self.ssl_cafile, certfile=self.ssl_certfile, keyfile=self.ssl_keyfile
            )
        return kw

    def producer_kwargs(self, **overrides: Any) -> dict[str, Any]:
        kw = self.common_kwargs()
        kw.update(
            acks="all",
            enable_idempotence=True,
            compression_type=None if self.compression == "none" else self.compression,
            linger_ms=self.linger_ms,
            max_batch_size=self.max_batch_size,
            max_request_size=self.max_message_bytes,
        )
        kw.update(overrides)
        return kw

    def consumer_kwargs(self, group_id: str | None, **overrides: Any) -> dict[str, Any]:
        kw = self.common_kwargs()
        kw.update(
            group_id=group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=self.max_message_bytes,
            fetch_max_bytes=max(52_428_800, self.max_message_bytes),
            fetch_max_wait_ms=self.fetch_max_wait_ms,
            consumer_timeout_ms=self.consumer_timeout_ms,
            session_timeout_ms=self.session_timeout_ms,
            heartbeat_interval_ms=self.heartbeat_interval_ms,
            max_poll_interval_ms=self.max_poll_interval_ms,
            isolation_level="read_committed",
        )
        kw.update(overrides)
        return kw

    def to_env(self) -> dict[str, str]:
        """``AIAAS_*`` variables that rebuild these settings in a child process."""
        env: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            elif isinstance(value, list | dict):
                value = json.dumps(value)
            env[f"AIAAS_{name.upper()}"] = str(value)
        return env

    def topic(self, name: str) -> str:
        """Full topic name with the configured prefix."""
        return f"{self.topic_prefix}{name}"


def get_settings(**overrides: Any) -> Settings:
    """Settings from the environment, with explicit overrides (tests use a fresh prefix)."""
    return Settings(**overrides)
