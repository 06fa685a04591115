"""Bridge state on the real Redis and broker, below HTTP: rate-limit leases, idempotency claims,
key storage, audit summaries."""

from __future__ import annotations

import asyncio
import hashlib
import time

import pytest
import redis.asyncio as aioredis

from aiaas.agents.bridge.audit import AuditLog
from aiaas.agents.bridge.idempotency import Idempotency, fingerprint
from aiaas.agents.bridge.keys import KeyStore, Principal
from aiaas.agents.bridge.ratelimit import RateLimiter
from aiaas.agents.bridge.rediskeys import RedisKeys
from aiaas.agents.bridge.settings import BridgeSettings
from aiaas.schemas.errors import Conflict, RateLimited
from aiaas.schemas.records import AuditRecord
from aiaas.streams.admin import ensure
from aiaas.streams.consumer import Consumer
from aiaas.streams.producer import Producer
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics


async def test_busy_tenant_leases_tokens_and_never_exceeds_its_bucket(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    keys = RedisKeys(settings)
    store = KeyStore(redis_client, keys)
    tenant = await store.ensure_tenant("busy", rate_per_s=200.0, burst=50.0)
    limiter = RateLimiter(redis_client, keys, BridgeSettings())
    calls = 0
    script = limiter._script

    async def counted(**kw: object) -> object:
        nonlocal calls
        calls += 1
        return await script(**kw)  # type: ignore[arg-type]

    limiter._script = counted  # type: ignore[assignment]
    allowed = refused = 0
    start = time.monotonic()
    for _ in range(400):
        try:
            await limiter.take(tenant)
            allowed += 1
        except RateLimited as exc:
            refused += 1
            assert exc.details["retry_after_s"] > 0
    elapsed = time.monotonic() - start
    # never more than the bucket plus its refill (plus one lease of slack), and leases cut calls
    assert 50 <= allowed <= 50 + 200 * elapsed + 10, (allowed, elapsed)
    assert refused == 400 - allowed
    assert calls < 400 / 4, (calls, allowed)  # leases and remembered refusals: few round trips


async def test_idempotency_claims_are_atomic_across_callers(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    idem = Idempotency(redis_client, RedisKeys(settings), ttl_s=60)
    fp = fingerprint("/v2/models/m/infer", b"{}")
    results = await asyncio.gather(*(idem.claim("t", "k1", fp, f"r{i}") for i in range(10)))
    owners = [r for r in results if r is None]
    assert len(owners) == 1  # exactly one caller runs the request; the others get its id
    assert len({r for r in results if r is not None}) == 1
    with pytest.raises(Conflict):
        await idem.claim("t", "k1", fingerprint("/v2/models/m/infer", b"{ }"), "r99")
    assert await idem.claim("other-tenant", "k1", fp, "r100") is None  # keys are per tenant


async def test_keys_are_stored_hashed_and_revocable(settings: Settings, redis_client: aioredis.Redis) -> None:
    keys = RedisKeys(settings)
    store = KeyStore(redis_client, keys)
    plaintext, record, _ = await store.create("acme", ["infer"])
    stored = [k async for k in redis_client.scan_iter(f"{keys.ns}*")]
    dump = b"".join([await redis_client.get(k) or b"" for k in stored
                     if await redis_client.type(k) == b"string"])
    assert plaintext.encode() not in dump and plaintext.split("_")[-1].encode() not in dump
    assert await redis_client.exists(keys.api_key(hashlib.sha256(plaintext.encode()).hexdigest()))
    who = await store.lookup(plaintext)
    assert who is not None and who.tenant.name == "acme" and who.scopes == ["infer"]
    assert await store.revoke(record.key_id) and await store.lookup(plaintext) is None


async def test_sync_inference_is_audited_as_per_interval_summaries(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    topic = Topics(settings).audit()
    await ensure(settings, [topic])
    tenant = await KeyStore(redis_client, RedisKeys(settings)).ensure_tenant("acme")
    who = Principal(tenant=tenant, key_id="k1", scopes=["infer"])
    async with Producer(settings) as prod:
        audit = AuditLog(prod, topic.name, interval_s=3600)
        for i in range(5):
            await audit.infer(who, "m", 200, f"r{i}")
        await audit.infer(who, "m", 504, "r5")
        await audit.record(who, "submit_job", "j1", model="m")
        await audit.flush()
        await prod.flush()
    async with Consumer(settings, [topic.name], None) as cons, asyncio.timeout(30):
        recs: list[AuditRecord] = []
        while len(recs) < 3:
            recs += [AuditRecord.from_record(r.value) for r in await cons.getmany(timeout_ms=200)]
    by_action = {(r.action, r.details.get("status")): r for r in recs}
    assert by_action[("infer", 200)].details["count"] == 5 and by_action[("infer", 504)].details["count"] == 1
    job = by_action[("submit_job", None)]
    assert job.tenant == "acme" and job.actor == "k1" and job.target == "j1"


async def test_audit_summaries_are_flushed_by_the_flusher_after_it_rested(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    """At rest the flusher waits for the first count (no wake-ups); a count wakes it and its summary
    goes out one interval later, again after the next quiet spell."""
    topic = Topics(settings).audit()
    await ensure(settings, [topic])
    tenant = await KeyStore(redis_client, RedisKeys(settings)).ensure_tenant("rest")
    who = Principal(tenant=tenant, key_id="k2", scopes=["infer"])
    async with Producer(settings) as prod, Consumer(settings, [topic.name], None) as cons:
        audit = AuditLog(prod, topic.name, interval_s=0.05)
        await audit.start()
        try:
            for n in (1, 2):
                for i in range(n):
                    await audit.infer(who, "rested", 200, f"r{n}.{i}")
                async with asyncio.timeout(30):
                    got: list[AuditRecord] = []
                    while not got:
                        got = [rec for r in await cons.getmany(timeout_ms=200)
                               if (rec := AuditRecord.from_record(r.value)).target == "rested"]
                assert [r.details["count"] for r in got] == [n]
        finally:
            await audit.stop()
