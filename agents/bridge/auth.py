"""Who is calling: API key from ``Authorization: Bearer`` or ``X-API-Key``, checked in Redis.

Lookups are cached in-process for ``auth_cache_s`` (a revoked key stops working within that
window) so the hot inference path costs no Redis round trip for auth. With auth switched off
every caller is the ``local`` tenant; that is refused on a non-loopback bind unless the operator
sets ``insecure_public`` explicitly.
"""

from __future__ import annotations

import logging
import time

from aiaas.agents.bridge.keys import ALL_SCOPES, KeyStore, Principal, digest
from aiaas.agents.bridge.settings import BridgeSettings
from aiaas.schemas.errors import InsecureConfig, Unauthorized

log = logging.getLogger(__name__)
LOCAL_TENANT = "local"
_CACHE_MAX = 10_000


def check_bind(settings: BridgeSettings) -> None:
    """Refuse auth=false on a public address unless explicitly allowed; always say so loudly."""
    if settings.auth:
        return
    if not settings.is_loopback_bind() and not settings.insecure_public:
        raise InsecureConfig(
            "auth is off but the bridge binds a non-loopback address; set "
            "AIAAS_BRIDGE_INSECURE_PUBLIC=true to allow it", host=settings.host,
        )
    log.warning("AUTH IS OFF: every caller is tenant %r (host %s)", LOCAL_TENANT, settings.host)


def presented_key(authorization: str | None, x_api_key: str | None) -> str | None:
    if x_api_key:
        return x_api_key.strip()
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return None


class Authenticator:
    def __init__(self, store: KeyStore, settings: BridgeSettings) -> None:
        self.store = store
        self.settings = settings
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._local: Principal | None = None

    async def principal(self, authorization: str | None, x_api_key: str | None) -> Principal:
        if not self.settings.auth:
            return await self._local_principal()
        key = presented_key(authorization, x_api_key)
        if key is None:
            raise Unauthorized("missing API key (Authorization: Bearer <key> or X-API-Key)")
        found = await self._lookup(key)
        if found is None:
            raise Unauthorized("invalid API key")
        return found

    async def _lookup(self, key: str) -> Principal | None:
        if len(key) > 256:
            return None
        d = digest(key)
        now = time.monotonic()
        hit = self._cache.get(d)
        if hit is not None and hit[0] > now:
            return hit[1]
        found = await self.store.lookup(key)
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[d] = (now + self.settings.auth_cache_s, found)
        return found

    async def _local_principal(self) -> Principal:
        if self._local is None:
            ten = await self.store.ensure_tenant(LOCAL_TENANT)
            self._local = Principal(tenant=ten, key_id="local", scopes=list(ALL_SCOPES))
        return self._local
