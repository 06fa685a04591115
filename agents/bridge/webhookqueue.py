"""The webhook queue in Redis: one due-time sorted set per tenant, and an index of tenants.

Each tenant's webhooks wait in ``webhooks:due:<tenant>`` (request id scored by due time); the index
``webhooks:due`` scores each tenant by its earliest due webhook. A claim walks the tenants that
have something due and takes at most ``per_tenant - in flight`` of each tenant's, so one tenant's
backlog or slow receivers never fill every delivery slot: another tenant's webhook is claimed on
the next round. A claim is a lease (the member's score moves to now + lease), so a webhook whose
bridge died comes due again. The scripts read Redis' clock, so bridges need not agree on time.
"""

from __future__ import annotations

from collections.abc import Mapping

import redis.asyncio as aioredis

from aiaas.agents.bridge.rediskeys import RedisKeys, text

# KEYS: index, queue. ARGV: due (or '' to remove), request id, tenant. Keeps the index score at the
# queue's earliest due time (a tenant with an empty queue leaves the index).
PUT = """
if ARGV[1] == '' then redis.call('ZREM', KEYS[2], ARGV[2])
else redis.call('ZADD', KEYS[2], tonumber(ARGV[1]), ARGV[2]) end
local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if #first == 0 then redis.call('ZREM', KEYS[1], ARGV[3])
else redis.call('ZADD', KEYS[1], first[2], ARGV[3]) end
return 1
"""

# KEYS: index. ARGV: lease_s, free slots, per-tenant limit, queue key prefix, request key prefix,
# then tenant/in-flight pairs. Returns a flat list: tenant, request id, tenant, request id...
# A member of the index that is a request id (the single queue of bridges before per-tenant
# queues) moves to its tenant's queue, read from its request state: an upgrade forgets nothing.
CLAIM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local lease, free, per, prefix = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local busy = {}
for i = 6, #ARGV, 2 do busy[ARGV[i]] = tonumber(ARGV[i + 1]) end
local function requeue(id)  -- an index member without a queue: a request id of the old layout
  local due = redis.call('ZSCORE', KEYS[1], id)
  redis.call('ZREM', KEYS[1], id)
  local ok, state = pcall(cjson.decode, redis.call('HGET', ARGV[5] .. id, 'meta') or '')
  if ok and type(state) == 'table' and type(state.tenant) == 'string' then
    redis.call('ZADD', prefix .. state.tenant, due, id)
    local first = redis.call('ZRANGE', prefix .. state.tenant, 0, 0, 'WITHSCORES')
    redis.call('ZADD', KEYS[1], first[2], state.tenant)
  end
end
local out = {}
for _, ten in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 1000)) do
  if free <= 0 then break end
  local q = prefix .. ten
  if redis.call('EXISTS', q) == 0 then
    requeue(ten)
  elseif per - (busy[ten] or 0) > 0 then
    for _, id in ipairs(redis.call('ZRANGEBYSCORE', q, '-inf', now, 'LIMIT', 0,
                                   math.min(free, per - (busy[ten] or 0)))) do
      redis.call('ZADD', q, now + lease, id)
      out[#out + 1] = ten
      out[#out + 1] = id
      free = free - 1
    end
    local first = redis.call('ZRANGE', q, 0, 0, 'WITHSCORES')
    if #first == 0 then redis.call('ZREM', KEYS[1], ten) else redis.call('ZADD', KEYS[1], first[2], ten) end
  end
end
return out
"""


class WebhookQueue:
    """Due webhooks per tenant; ``claim`` is fair between tenants (see the module docstring)."""

    def __init__(self, redis: aioredis.Redis, keys: RedisKeys) -> None:
        self.redis = redis
        self.k = keys
        self._put = redis.register_script(PUT)
        self._claim = redis.register_script(CLAIM)

    async def put(self, tenant: str, request_id: str, due: float) -> None:
        """Queue (or move) a webhook to be delivered at ``due`` (unix seconds)."""
        await self._put(keys=[self.k.webhooks_due(), self.k.webhooks_queue(tenant)],
                        args=[repr(due), request_id, tenant])

    async def remove(self, tenant: str, request_id: str) -> None:
        await self._put(keys=[self.k.webhooks_due(), self.k.webhooks_queue(tenant)],
                        args=["", request_id, tenant])

    async def claim(
        self, free: int, per_tenant: int, lease_s: float, in_flight: Mapping[str, int]
    ) -> list[tuple[str, str]]:
        """Up to ``free`` due webhooks as (tenant, request id), leased for ``lease_s``."""
        busy = [x for ten, n in in_flight.items() if n > 0 for x in (ten, n)]
        flat = await self._claim(keys=[self.k.webhooks_due()], args=[
            lease_s, free, per_tenant, self.k.webhooks_queue(""), self.k.request(""), *busy])
        return [(text(flat[i]), text(flat[i + 1])) for i in range(0, len(flat), 2)]

    async def count(self, tenant: str) -> int:
        """Webhooks queued for ``tenant`` (due or not)."""
        return int(await self.redis.zcard(self.k.webhooks_queue(tenant)))
