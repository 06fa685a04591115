"""Per-tenant token buckets in Redis, spent by one atomic Lua call per request (or per lease).

The script reads Redis' own clock (``TIME``), so several bridges share one bucket per tenant
without trusting each other's clocks. A bucket refills at ``rate`` tokens/s up to ``burst``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from agents.bridge.errors import RateLimited
from agents.bridge.keys import Tenant
from agents.bridge.rediskeys import RedisKeys
from agents.bridge.settings import BridgeSettings

TOKEN_BUCKET = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local refund = tonumber(ARGV[4]) or 0
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1]) or burst
local ts = tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate + refund)
local allowed = 0
local retry = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  retry = (cost - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {allowed, tostring(retry), tostring(tokens)}
"""
MAX_LEASE = 100


@dataclass
class _Lease:
    tokens: float = 0.0  # leased from Redis, not yet spent
    expires: float = 0.0
    used: int = 0  # spent during the current lease: sizes the next one
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class RateLimiter:
    """Spends tokens from the tenant's bucket in Redis, leasing a few at a time when traffic is high.

    A bridge leases about twice what it spent during the previous lease window (``lease_s``), at
    most ``rate * lease_s`` and ``MAX_LEASE``, at least 1, and spends them locally; what is left
    when the window ends is refunded on the next call. A busy tenant costs one Redis round trip per
    window instead of one per request; a quiet or slow tenant is counted exactly, token by token.
    """

    def __init__(self, redis: aioredis.Redis, keys: RedisKeys, settings: BridgeSettings,
                 lease_s: float = 0.05) -> None:
        self.k = keys
        self.settings = settings
        self.lease_s = lease_s
        self._script = redis.register_script(TOKEN_BUCKET)
        self._leases: dict[str, _Lease] = {}

    async def take(self, tenant: Tenant) -> None:
        """Spend one token or raise RateLimited with ``retry_after_s``."""
        lease = self._leases.get(tenant.name)
        if lease is None:
            if len(self._leases) > 10_000:
                self._leases.clear()
            lease = self._leases.setdefault(tenant.name, _Lease())
        async with lease.lock:
            now = time.monotonic()
            if lease.tokens >= 1 and now < lease.expires:
                lease.tokens -= 1
                lease.used += 1
                return
            await self._renew(tenant, lease, now)

    async def _renew(self, tenant: Tenant, lease: _Lease, now: float) -> None:
        rate = tenant.rate_per_s or self.settings.rate_per_s
        burst = tenant.burst or self.settings.rate_burst
        cap = max(1, min(MAX_LEASE, int(rate * self.lease_s), int(burst)))
        chunk = float(max(1, min(cap, 2 * lease.used)))
        refund, lease.tokens, lease.used = lease.tokens, 0.0, 1
        ok, retry = await self._spend(tenant.name, rate, burst, chunk, refund)
        if not ok and chunk > 1:
            chunk = 1.0  # not enough for a lease: maybe enough for this one call
            ok, retry = await self._spend(tenant.name, rate, burst, chunk, 0.0)
        if not ok:
            raise RateLimited("rate limit exceeded", tenant=tenant.name, retry_after_s=retry,
                              rate_per_s=rate, burst=burst)
        lease.tokens, lease.expires = chunk - 1, now + self.lease_s

    async def _spend(
        self, bucket: str, rate: float, burst: float, cost: float, refund: float
    ) -> tuple[bool, float]:
        allowed, retry, _ = await self._script(
            keys=[self.k.bucket(bucket)], args=[rate, burst, cost, refund]
        )
        return int(allowed) == 1, float(retry)
