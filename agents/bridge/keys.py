"""API keys and tenants in Redis. Keys are stored only as SHA-256 digests.

A key is ``aiaas_<key id>_<32 random bytes, url-safe>``: high entropy, so a plain SHA-256 (no slow
KDF) is enough to make a leaked Redis dump useless for calling the API. The key id is public and
names the caller in audit records. Each tenant also has a webhook signing secret, stored as is
because the bridge needs it to sign.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from typing import Literal

import redis.asyncio as aioredis
from pydantic import BaseModel, Field

from aiaas.agents.bridge.redisconn import guarded
from aiaas.agents.bridge.rediskeys import RedisKeys, text
from aiaas.schemas.errors import AiaasError, ErrorCode

TENANT_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
Scope = Literal["infer", "models", "jobs", "metrics"]
ALL_SCOPES: tuple[Scope, ...] = ("infer", "models", "jobs", "metrics")
# what a new key gets unless asked: "metrics" (every tenant's model names) is for operators only
DEFAULT_SCOPES: tuple[Scope, ...] = ("infer", "models", "jobs")


class Tenant(BaseModel):
    name: str = Field(pattern=TENANT_NAME)
    secret: str
    rate_per_s: float | None = Field(default=None, gt=0.0)
    burst: float | None = Field(default=None, ge=1.0)
    created: float = 0.0


class ApiKey(BaseModel):
    key_id: str
    tenant: str
    scopes: list[Scope] = Field(default_factory=lambda: list(DEFAULT_SCOPES))
    created: float = 0.0


class Principal(BaseModel):
    """Who is calling: the tenant and the key (``key_id`` is ``local`` when auth is off)."""

    tenant: Tenant
    key_id: str
    scopes: list[Scope]

    def require(self, scope: Scope) -> None:
        if scope not in self.scopes:
            raise AiaasError("API key lacks a scope", code=ErrorCode.FORBIDDEN, scope=scope)


def digest(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


class KeyStore:
    """Create, look up and revoke keys; create tenants on their first key."""

    def __init__(self, redis: aioredis.Redis, keys: RedisKeys) -> None:
        self.redis = redis
        self.k = keys

    @guarded
    async def create(
        self, tenant: str, scopes: list[Scope] | None = None,
        rate_per_s: float | None = None, burst: float | None = None,
    ) -> tuple[str, ApiKey, Tenant]:
        """A new key for ``tenant`` (made if missing; limits updated when given)."""
        ten = await self.ensure_tenant(tenant, rate_per_s, burst)
        key_id = secrets.token_hex(6)
        plaintext = f"aiaas_{key_id}_{secrets.token_urlsafe(32)}"
        record = ApiKey(key_id=key_id, tenant=ten.name, scopes=scopes or list(DEFAULT_SCOPES),
                        created=time.time())
        d = digest(plaintext)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self.k.api_key(d), record.model_dump_json())
            pipe.set(self.k.key_id(key_id), d)
            await pipe.execute()
        return plaintext, record, ten

    @guarded
    async def ensure_tenant(
        self, name: str, rate_per_s: float | None = None, burst: float | None = None
    ) -> Tenant:
        ten = await self.tenant(name)
        if ten is None:
            ten = Tenant(name=name, secret=secrets.token_urlsafe(32), created=time.time())
        if rate_per_s is not None:
            ten.rate_per_s = rate_per_s
        if burst is not None:
            ten.burst = burst
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self.k.tenant(ten.name), ten.model_dump_json())
            pipe.sadd(self.k.tenants(), ten.name)
            await pipe.execute()
        return ten

    @guarded
    async def tenant(self, name: str) -> Tenant | None:
        raw = await self.redis.get(self.k.tenant(name))
        return Tenant.model_validate_json(raw) if raw else None

    @guarded
    async def lookup(self, plaintext: str) -> Principal | None:
        """The principal for a presented key, or None when unknown or revoked."""
        raw = await self.redis.get(self.k.api_key(digest(plaintext)))
        if not raw:
            return None
        key = ApiKey.model_validate_json(raw)
        ten = await self.tenant(key.tenant)
        if ten is None:
            return None
        return Principal(tenant=ten, key_id=key.key_id, scopes=key.scopes)

    @guarded
    async def revoke(self, key_id: str) -> bool:
        d = await self.redis.get(self.k.key_id(key_id))
        if not d:
            return False
        await self.redis.delete(self.k.api_key(text(d)), self.k.key_id(key_id))
        return True
