"""``Idempotency-Key``: the same key and body within the TTL map to the same request.

The first call claims ``idem:<tenant>:<sha256(key)>`` with ``SET NX`` (atomic across bridges) and
stores the fingerprint of what it asked (path + body). A repeat with the same fingerprint gets the
first request's id (and so its result, without a second inference); a different fingerprint
under the same key is a 409.
"""

from __future__ import annotations

import hashlib

import redis.asyncio as aioredis

from agents.bridge.errors import BadRequest, Conflict
from agents.bridge.rediskeys import RedisKeys, text

MAX_KEY = 255


def fingerprint(path: str, body: bytes) -> str:
    h = hashlib.sha256(path.encode())
    h.update(b"\n")
    h.update(body)
    return h.hexdigest()


class Idempotency:
    def __init__(self, redis: aioredis.Redis, keys: RedisKeys, ttl_s: int) -> None:
        self.redis = redis
        self.k = keys
        self.ttl_s = ttl_s

    async def claim(self, tenant: str, key: str, fp: str, request_id: str) -> str | None:
        """None when this call owns the key; else the earlier request's id (409 on a new body)."""
        if not key or len(key) > MAX_KEY:
            raise BadRequest("Idempotency-Key must be 1-255 characters", length=len(key))
        rkey = self.k.idempotency(tenant, hashlib.sha256(key.encode()).hexdigest())
        value = f"{fp}:{request_id}"
        for _ in range(3):
            if await self.redis.set(rkey, value, nx=True, ex=self.ttl_s):
                return None
            existing = await self.redis.get(rkey)
            if existing is None:
                continue  # expired between SET and GET: try to claim again
            old_fp, _, old_id = text(existing).partition(":")
            if old_fp != fp:
                raise Conflict(
                    "Idempotency-Key was already used with a different request", request_id=old_id
                )
            return old_id
        raise Conflict("Idempotency-Key is contended; retry")

    async def release(self, tenant: str, key: str, request_id: str) -> None:
        """Forget a claim whose request never started (so a retry may run it)."""
        rkey = self.k.idempotency(tenant, hashlib.sha256(key.encode()).hexdigest())
        existing = await self.redis.get(rkey)
        if existing is not None and text(existing).endswith(f":{request_id}"):
            await self.redis.delete(rkey)
