"""Bridge state on the real Redis, below HTTP: the fair per-tenant webhook claim (and the move of
old single-queue entries), and the in-flight lease of idempotent requests."""

from __future__ import annotations

import asyncio
import time

import redis.asyncio as aioredis

from aiaas.agents.bridge.idempotency import Idempotency, fingerprint
from aiaas.agents.bridge.rediskeys import RedisKeys
from aiaas.agents.bridge.state import RequestState, StateStore
from aiaas.agents.bridge.webhookqueue import WebhookQueue
from aiaas.streams.settings import Settings


async def test_claim_gives_each_tenant_its_share_and_leases_what_it_took(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    queue = WebhookQueue(redis_client, RedisKeys(settings))
    past = time.time() - 10
    for i in range(10):  # the flood has ten due, half of them before the calm tenant's one
        await queue.put("flood", f"f{i}", past + i)
    await queue.put("calm", "c0", past + 5)
    await queue.put("calm", "later", time.time() + 3600)
    got = await queue.claim(free=4, per_tenant=2, lease_s=60, in_flight={})
    assert sorted(got) == [("calm", "c0"), ("flood", "f0"), ("flood", "f1")]
    # the flood already holds its share here: nothing more for it, however much is due
    await queue.put("calm", "c1", past)
    assert await queue.claim(free=4, per_tenant=2, lease_s=60, in_flight={"flood": 2}) == [("calm", "c1")]
    # claimed ones are leased (not due again until the lease ends); the rest is still queued
    assert await queue.count("flood") == 10 and await queue.count("calm") == 3
    await queue.remove("flood", "f0")
    assert await queue.count("flood") == 9


async def test_a_request_id_in_the_old_single_queue_moves_to_its_tenants_queue(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    keys = RedisKeys(settings)
    now = time.time()
    await StateStore(redis_client, keys, 60).create(RequestState(
        id="old1", tenant="acme", model="m", created=now, deadline=now + 1, callback="http://x/"))
    await redis_client.zadd(keys.webhooks_due(), {"old1": now - 1, "gone": now - 1})  # the old layout
    queue = WebhookQueue(redis_client, keys)
    assert await queue.claim(free=4, per_tenant=2, lease_s=60, in_flight={}) == []  # moved, not lost
    assert await queue.claim(free=4, per_tenant=2, lease_s=60, in_flight={}) == [("acme", "old1")]
    assert await redis_client.zscore(keys.webhooks_due(), "gone") is None  # no state: dropped


async def test_an_idempotent_request_is_taken_over_only_once_its_lease_lapses(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    # the key's record outlives any stall of a loaded machine; the lease is short, renewed every third
    idem = Idempotency(redis_client, RedisKeys(settings), ttl_s=3600, lease_s=1.0)
    fp = fingerprint("/v2/models/m/infer", b"{}")
    assert await idem.claim("t", "k", fp, "r1") is None
    async with idem.hold("t", "k", "r1"):
        await asyncio.sleep(2.0)  # twice the lease: only the renewals keep it
        assert not await idem.lapsed("t", "k")
        assert not await idem.take_over("t", "k", fp, "r1", "r2")  # its owner is alive
    assert await idem.lapsed("t", "k")  # released when the owner finished
    assert await idem.claim("t", "k", fp, "r3") == "r1"  # a repeat still follows r1
    assert not await idem.take_over("t", "k", fp, "wrong", "r2")  # only from the current owner
    assert await idem.take_over("t", "k", fp, "r1", "r2")
    assert not await idem.take_over("t", "k", fp, "r1", "r4")  # one taker wins
    assert await idem.claim("t", "k", fp, "r5") == "r2" and not await idem.lapsed("t", "k")
