"""Per-tenant token buckets in Redis, shared by every bridge, spent in small local leases.

The script reads Redis' own clock (``TIME``), so several bridges share one bucket per tenant
without trusting each other's clocks. A bucket refills at ``rate`` tokens/s up to ``burst``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from aiaas.agents.bridge.keys import Tenant
from aiaas.agents.bridge.redisconn import guarded
from aiaas.agents.bridge.rediskeys import RedisKeys
from aiaas.agents.bridge.settings import BridgeSettings
from aiaas.schemas.errors import RateLimited

# ARGV: rate, burst, want, refund. Grants min(want, whole tokens available), at least 1 or nothing;
# when nothing, says in how many seconds one token will be there.
TOKEN_BUCKET = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local refund = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1]) or burst
local ts = tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate + refund)
local granted = 0
local retry = 0
if tokens >= 1 then
  granted = math.min(want, math.floor(tokens))
  tokens = tokens - granted
else
  retry = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {granted, tostring(retry)}
"""
MAX_LEASE = 100


@dataclass
class _Lease:
    tokens: int = 0  # granted by Redis, not yet spent here
    expires: float = 0.0
    used: int = 0  # spent during the current lease: sizes the next one
    blocked_until: float = 0.0  # Redis said no token before then: refuse without asking again
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class RateLimiter:
    """Spends tokens from the tenant's bucket in Redis, leasing a few at a time when traffic is high.

    A bridge asks for about twice what it spent during the previous lease window (``lease_s``), at
    most ``rate * lease_s`` and ``MAX_LEASE``, and gets what the bucket has (at least one); the rest
    of a lease is refunded with the next call once the window ends. A refusal is remembered until
    the time Redis named, so a flood of refused calls costs no round trips either. A busy tenant
    costs one Redis call per window instead of one per request; a slow one is counted exactly.
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
            if now < lease.blocked_until:
                self._refuse(tenant, lease.blocked_until - now)
            await self._renew(tenant, lease, now)

    @guarded
    async def _renew(self, tenant: Tenant, lease: _Lease, now: float) -> None:
        rate = tenant.rate_per_s or self.settings.rate_per_s
        burst = tenant.burst or self.settings.rate_burst
        cap = max(1, min(MAX_LEASE, int(rate * self.lease_s), int(burst)))
        want = max(1, min(cap, 2 * lease.used))
        refund, lease.tokens, lease.used = lease.tokens, 0, 0
        granted, retry = await self._script(keys=[self.k.bucket(tenant.name)],
                                            args=[rate, burst, want, refund])
        if int(granted) < 1:
            lease.blocked_until = now + float(retry)
            self._refuse(tenant, float(retry))
        lease.tokens, lease.used, lease.expires = int(granted) - 1, 1, now + self.lease_s

    def _refuse(self, tenant: Tenant, retry_after_s: float) -> None:
        raise RateLimited("rate limit exceeded", tenant=tenant.name, retry_after_s=retry_after_s,
                          rate_per_s=tenant.rate_per_s or self.settings.rate_per_s,
                          burst=tenant.burst or self.settings.rate_burst)
