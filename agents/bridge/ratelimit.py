"""Per-tenant token buckets in Redis, one atomic Lua call per request.

The script reads Redis' own clock (``TIME``), so several bridges share one bucket per tenant
without trusting each other's clocks. A bucket refills at ``rate`` tokens/s up to ``burst``.
"""

from __future__ import annotations

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
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1]) or burst
local ts = tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
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


class RateLimiter:
    def __init__(self, redis: aioredis.Redis, keys: RedisKeys, settings: BridgeSettings) -> None:
        self.k = keys
        self.settings = settings
        self._script = redis.register_script(TOKEN_BUCKET)

    async def take(self, tenant: Tenant, cost: float = 1.0) -> float:
        """Spend ``cost`` tokens or raise RateLimited with ``retry_after_s``; returns tokens left."""
        rate = tenant.rate_per_s or self.settings.rate_per_s
        burst = tenant.burst or self.settings.rate_burst
        allowed, retry, left = await self._script(
            keys=[self.k.bucket(tenant.name)], args=[rate, burst, cost]
        )
        if int(allowed) != 1:
            raise RateLimited(
                "rate limit exceeded", tenant=tenant.name, retry_after_s=float(retry),
                rate_per_s=rate, burst=burst,
            )
        return float(left)
