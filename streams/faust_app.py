"""Settings -> faust configuration, so faust agents (the trainers) connect like every other client.

faust keeps its own names for what ``Settings.common_kwargs`` says to aiokafka: a ``kafka://`` URL
list, a credentials object for SASL/TLS, and its own size limits. Building them here keeps the
broker address, security and the 8 MiB record limit in one place (docs/operations.md). faust's
own folder goes under the state dir (``AIAAS_STATE_DIR``), not into the current directory.
"""

from __future__ import annotations

from typing import Any

from faust.auth import SASLCredentials, SSLCredentials
from faust.types.auth import CredentialsT

from aiaas.streams.settings import Settings


def broker_urls(settings: Settings) -> list[str]:
    """``bootstrap_servers`` ("h1:p1,h2:p2") as faust's list of ``kafka://`` URLs."""
    hosts = [h.strip() for h in settings.bootstrap_servers.split(",") if h.strip()]
    return [h if "://" in h else f"kafka://{h}" for h in hosts]


def broker_credentials(settings: Settings) -> CredentialsT | None:
    """faust ``broker_credentials`` for the configured security protocol (None for PLAINTEXT)."""
    protocol = settings.security_protocol
    if protocol == "PLAINTEXT":
        return None
    ssl_context = settings.common_kwargs().get("ssl_context")
    if protocol == "SSL":
        return SSLCredentials(ssl_context)
    password = settings.sasl_password.get_secret_value() if settings.sasl_password else None
    # SASLCredentials picks SASL_SSL itself when given an SSL context, SASL_PLAINTEXT otherwise.
    return SASLCredentials(
        username=settings.sasl_username,
        password=password,
        mechanism=settings.sasl_mechanism,
        ssl_context=ssl_context,
    )


def app_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """Keyword arguments for ``faust.App(id, **app_config(settings))``.

    Connection, security and size limits come from ``settings``; ``overrides`` win (e.g.
    ``web_enabled=True`` or ``store="rocksdb://"``).
    """
    faust_dir = settings.state_dir / "faust"
    faust_dir.mkdir(parents=True, exist_ok=True)  # faust makes only the last level itself
    cfg: dict[str, Any] = {
        "broker": broker_urls(settings),
        "broker_credentials": broker_credentials(settings),
        "broker_client_id": settings.client_id,
        "broker_request_timeout": settings.request_timeout_ms / 1000,
        "broker_session_timeout": settings.session_timeout_ms / 1000,
        "broker_heartbeat_interval": settings.heartbeat_interval_ms / 1000,
        "broker_max_poll_interval": settings.max_poll_interval_ms / 1000,
        "producer_max_request_size": settings.max_message_bytes,
        "producer_acks": -1,
        "consumer_max_fetch_size": settings.max_message_bytes,
        "consumer_auto_offset_reset": "earliest",
        "topic_replication_factor": settings.replication_factor or 1,  # aiaas' admin creates the topics
        "web_enabled": False,
        # faust's table folder, else ``<app id>-data`` in the current directory (docs/operations.md)
        "datadir": str(faust_dir / "{conf.name}-data"),
    }
    cfg.update(overrides)
    return cfg
