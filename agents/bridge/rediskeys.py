"""The Redis key layout of the bridge, in one place.

Every key starts with ``<topic prefix>bridge:`` so deployments (and tests, which use a fresh topic
prefix each) never see each other's keys in a shared Redis.
"""

from __future__ import annotations

from aiaas.streams.settings import Settings


def text(raw: bytes | str) -> str:
    """A Redis reply as text: the bridge's clients return bytes (no ``decode_responses``), but
    redis-py types every reply as ``bytes | str`` since a client may be built to decode."""
    return raw if isinstance(raw, str) else raw.decode()


def blob(raw: bytes | str) -> bytes:
    """A Redis reply as bytes (see ``text``)."""
    return raw.encode() if isinstance(raw, str) else raw


class RedisKeys:
    def __init__(self, settings: Settings) -> None:
        self.ns = f"{settings.topic_prefix}bridge:"

    def api_key(self, digest: str) -> str:
        return f"{self.ns}key:{digest}"

    def key_id(self, key_id: str) -> str:
        return f"{self.ns}keyid:{key_id}"

    def tenant(self, name: str) -> str:
        return f"{self.ns}tenant:{name}"

    def tenants(self) -> str:
        return f"{self.ns}tenants"

    def bucket(self, tenant: str) -> str:
        return f"{self.ns}bucket:{tenant}"

    def idempotency(self, tenant: str, digest: str) -> str:
        return f"{self.ns}idem:{tenant}:{digest}"

    def request(self, request_id: str) -> str:
        return f"{self.ns}req:{request_id}"

    def done_channel(self, request_id: str) -> str:
        return f"{self.ns}done:{request_id}"

    def webhooks_due(self) -> str:
        """The index of tenants with queued webhooks, scored by their earliest due time."""
        return f"{self.ns}webhooks:due"

    def webhooks_queue(self, tenant: str) -> str:
        """One tenant's queued webhooks (request ids scored by due time)."""
        return f"{self.ns}webhooks:due:{tenant}"

    def idempotency_lease(self, tenant: str, digest: str) -> str:
        """Held (and renewed) by the bridge running an idempotent request: gone when it died."""
        return f"{self.ns}idem-lease:{tenant}:{digest}"

    def job_owner(self, job_id: str) -> str:
        return f"{self.ns}job:{job_id}"
