"""``Idempotency-Key``: the same key and body within the TTL map to the same request.

The first call claims ``idem:<tenant>:<sha256(key)>`` with ``SET NX`` (atomic across bridges) and
stores the fingerprint of what it asked (path + body). A repeat with the same fingerprint gets the
first request's id (and so its result, without a second inference); a different fingerprint
under the same key is a 409.

The claim comes with a short in-flight lease (``idem-lease:...``, ``idempotency_lease_s``) that the
bridge running the request renews while it runs (``hold``). A bridge killed mid-request stops
renewing; once the lease lapses, a repeat takes the key over (``take_over``, atomic) and runs the
request again instead of waiting for a result that will never come.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator

import redis.asyncio as aioredis

from aiaas.agents.bridge.redisconn import DOWN, guarded
from aiaas.agents.bridge.rediskeys import RedisKeys, text
from aiaas.schemas.errors import BadRequest, Conflict
from aiaas.streams.lifecycle import cancel

log = logging.getLogger(__name__)
MAX_KEY = 255

# KEYS: record, lease. ARGV: value, ttl_s, request id, lease_ms. '' when claimed, else the record.
CLAIM = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', tonumber(ARGV[2])) then
  redis.call('SET', KEYS[2], ARGV[3], 'PX', tonumber(ARGV[4]))
  return ''
end
return redis.call('GET', KEYS[1])
"""
# KEYS: record, lease. ARGV: old value, new value, ttl_s, new request id, lease_ms. 1 when taken.
TAKE_OVER = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] or redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', tonumber(ARGV[3]))
redis.call('SET', KEYS[2], ARGV[4], 'PX', tonumber(ARGV[5]))
return 1
"""
# KEYS: lease. ARGV: request id, lease_ms (0: release). Only the holder renews or releases.
RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '0' then return redis.call('DEL', KEYS[1]) end
return redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
"""


def fingerprint(path: str, body: bytes) -> str:
    h = hashlib.sha256(path.encode())
    h.update(b"\n")
    h.update(body)
    return h.hexdigest()


class Idempotency:
    def __init__(self, redis: aioredis.Redis, keys: RedisKeys, ttl_s: int, lease_s: float = 10.0) -> None:
        self.redis = redis
        self.k = keys
        self.ttl_s = ttl_s
        self.lease_ms = max(1, int(lease_s * 1000))
        self._claim = redis.register_script(CLAIM)
        self._take_over = redis.register_script(TAKE_OVER)
        self._renew = redis.register_script(RENEW)

    def _keys(self, tenant: str, key: str) -> list[str]:
        digest = hashlib.sha256(key.encode()).hexdigest()
        return [self.k.idempotency(tenant, digest), self.k.idempotency_lease(tenant, digest)]

    @guarded
    async def claim(self, tenant: str, key: str, fp: str, request_id: str) -> str | None:
        """None when this call owns the key; else the earlier request's id (409 on a new body)."""
        if not key or len(key) > MAX_KEY:
            raise BadRequest("Idempotency-Key must be 1-255 characters", length=len(key))
        existing = text(await self._claim(keys=self._keys(tenant, key),
                                          args=[f"{fp}:{request_id}", self.ttl_s, request_id, self.lease_ms]))
        if not existing:
            return None
        old_fp, _, old_id = existing.partition(":")
        if old_fp != fp:
            raise Conflict("Idempotency-Key was already used with a different request", request_id=old_id)
        return old_id

    @guarded
    async def lapsed(self, tenant: str, key: str) -> bool:
        """True when no bridge holds the in-flight lease (its owner finished or died)."""
        return not await self.redis.exists(self._keys(tenant, key)[1])

    @guarded
    async def take_over(self, tenant: str, key: str, fp: str, old_id: str, request_id: str) -> bool:
        """Make ``request_id`` the key's request when ``old_id``'s lease lapsed (atomic)."""
        taken = await self._take_over(keys=self._keys(tenant, key), args=[
            f"{fp}:{old_id}", f"{fp}:{request_id}", self.ttl_s, request_id, self.lease_ms])
        return bool(taken)

    @contextlib.asynccontextmanager
    async def hold(self, tenant: str, key: str, request_id: str) -> AsyncIterator[None]:
        """Renew the in-flight lease while the body runs; release it after."""
        lease = self._keys(tenant, key)[1]
        renewer = asyncio.create_task(self._renew_forever(lease, request_id))
        try:
            yield
        finally:
            await cancel(renewer)
            with contextlib.suppress(*DOWN):  # unreleased, it lapses by itself
                await self._renew(keys=[lease], args=[request_id, 0])

    async def _renew_forever(self, lease: str, request_id: str) -> None:
        while True:
            await asyncio.sleep(self.lease_ms / 3000)  # the renewal period, not a synchronisation
            try:
                await self._renew(keys=[lease], args=[request_id, self.lease_ms])
            except DOWN as exc:  # keep trying: a lapsed lease only lets a repeat run it again
                log.warning("renewing idempotency lease of %s failed: %s", request_id, type(exc).__name__)

    @guarded
    async def release(self, tenant: str, key: str, request_id: str) -> None:
        """Forget a claim whose request never started (so a retry may run it)."""
        rkey = self._keys(tenant, key)[0]
        existing = await self.redis.get(rkey)
        if existing is not None and text(existing).endswith(f":{request_id}"):
            await self.redis.delete(rkey)
