"""SIGKILL a bridge with webhooks pending: another bridge delivers every one, nothing is lost.
SIGKILL a bridge with an idempotent sync request in flight: a retry on another bridge runs it.

Bridge A accepts two async requests: one whose webhook receiver fails its first attempts (so a
retry is scheduled in Redis when A dies), and one for a model no worker serves (so its reply
never comes; A dies before its deadline). Bridge B, started after the kill, knows nothing but
Redis and Kafka: it retries the first webhook to success and, at the second one's deadline,
delivers a signed "failed: no reply before the deadline" webhook.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import time
import uuid

import httpx
import pytest
import redis.asyncio as aioredis

from aiaas.agents.bridge.keys import KeyStore
from aiaas.agents.bridge.rediskeys import RedisKeys
from aiaas.cli.demo.receiver import Receiver
from aiaas.client.webhooks import SIGNATURE_HEADER, verify_signature
from aiaas.registry.store import Registry
from aiaas.streams.admin import ensure
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics
from tests import examples
from tests.spawn import BridgeProcess
from tests.workers import running_worker

BODY = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1.0, 2.0, 3.0, 4.0]}]}


def bridge_env(settings: Settings) -> dict[str, str]:
    return {
        "AIAAS_TOPIC_PREFIX": settings.topic_prefix, "AIAAS_LOG_LEVEL": "WARNING",
        "AIAAS_BRIDGE_INSTANCE": uuid.uuid4().hex[:8], "AIAAS_BRIDGE_CALLBACK_ALLOWLIST": '["127.0.0.1/32"]',
        "AIAAS_BRIDGE_WEBHOOK_BACKOFF_S": "1.0", "AIAAS_BRIDGE_WEBHOOK_LEASE_S": "2",
        "AIAAS_BRIDGE_WEBHOOK_TIMEOUT_S": "1",
        "AIAAS_BRIDGE_DISPATCH_POLL_S": "0.1",
    }


@pytest.mark.timeout(120)
async def test_sigkill_bridge_with_pending_webhooks_another_bridge_delivers_them(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    async with Registry(settings) as reg:
        await reg.publish("ok", examples.mlp([4, 3], seed=1), stage="production")
        await reg.publish("idle", examples.mlp([4, 3], seed=2), stage="production")
    await ensure(settings, [Topics(settings).infer_requests("idle")])
    key, _, tenant = await KeyStore(redis_client, RedisKeys(settings)).create("acme")
    auth = {"X-API-Key": key}
    async with running_worker(settings, model="ok"), Receiver(statuses=[500, 500]) as flaky, \
            Receiver() as steady:
        a = BridgeProcess(bridge_env(settings))
        await a.start()
        try:
            async with httpx.AsyncClient(base_url=a.url, timeout=30, trust_env=False) as http:
                r1 = await http.post("/v2/models/ok/infer", json=BODY, headers=auth,
                                     params={"callback": flaky.url})
                r2 = await http.post("/v2/models/idle/infer", json=BODY, headers=auth,
                                     params={"callback": steady.url, "timeout": "1"})
            assert r1.status_code == r2.status_code == 202, (r1.text, r2.text)
            await flaky.wait_for(1)  # attempt 1 failed: the retry now waits in Redis
        finally:
            await a.kill()
        assert a.proc is not None and a.proc.returncode == -signal.SIGKILL

        async with BridgeProcess(bridge_env(settings)) as b:
            hooks = await flaky.wait_for(3, timeout_s=60)  # attempts 2 (500) and 3 (200) by B
            late = await steady.wait_for(1, timeout_s=60)
            async with httpx.AsyncClient(base_url=b.url, timeout=30, trust_env=False) as http:
                done1 = (await http.get(r1.headers["location"], headers=auth)).json()
                done2 = (await http.get(r2.headers["location"], headers=auth)).json()

    for hook in [*hooks, *late]:
        verify_signature(tenant.secret, hook.headers[SIGNATURE_HEADER.lower()], hook.body, 120)
    assert [h.headers["x-aiaas-attempt"] for h in hooks] == ["1", "2", "3"]
    first = json.loads(hooks[-1].body)
    assert first["id"] == r1.json()["id"] and first["status"] == "succeeded"
    assert first["response"]["outputs"][0]["shape"] == [1, 3]
    assert done1["status"] == "succeeded" and done1["webhook"] == "delivered"
    orphan = json.loads(late[0].body)
    assert orphan["id"] == r2.json()["id"] and orphan["status"] == "failed"
    assert orphan["error"]["code"] == "timeout"
    assert done2["status"] == "failed" and done2["webhook"] == "delivered"


@pytest.mark.timeout(120)
async def test_sigkill_bridge_with_idempotent_sync_request_in_flight_a_retry_runs_it(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    """The request's deadline is 60 s away when its bridge dies; its in-flight lease (2 s) lapses,
    so a retry with the same key on another bridge runs it instead of waiting for the deadline
    (and answering 504 for the key's 24 h TTL)."""
    async with Registry(settings) as reg:
        await reg.publish("ok", examples.mlp([4, 3], seed=1), stage="production")
    await ensure(settings, [Topics(settings).infer_requests("ok")])  # no worker yet: it stays in flight
    key, _, _ = await KeyStore(redis_client, RedisKeys(settings)).create("acme")
    idem = f"k-{uuid.uuid4().hex}"
    hdrs, params = {"X-API-Key": key, "Idempotency-Key": idem}, {"timeout": "60"}
    env = {**bridge_env(settings), "AIAAS_BRIDGE_IDEMPOTENCY_LEASE_S": "2"}
    claim = RedisKeys(settings).idempotency("acme", hashlib.sha256(idem.encode()).hexdigest())
    a = BridgeProcess(env)
    await a.start()
    try:
        async with httpx.AsyncClient(base_url=a.url, timeout=90, trust_env=False) as http:
            first = asyncio.create_task(
                http.post("/v2/models/ok/infer", json=BODY, headers=hdrs, params=params))
            async with asyncio.timeout(30):
                while True:  # A claimed the key and stored the pending state: the request is in flight
                    owner = await redis_client.get(claim)
                    rid = owner.decode().rpartition(":")[2] if owner else ""
                    if rid and await redis_client.exists(RedisKeys(settings).request(rid)):
                        break
                    await asyncio.sleep(0.02)
            await a.kill()
            with pytest.raises(httpx.HTTPError):
                await first
    finally:
        await a.kill()
    async with running_worker(settings, model="ok"), BridgeProcess(env) as b, \
            httpx.AsyncClient(base_url=b.url, timeout=90, trust_env=False) as http:
        t0 = time.monotonic()
        again = await http.post("/v2/models/ok/infer", json=BODY, headers=hdrs, params=params)
        elapsed = time.monotonic() - t0
        third = await http.post("/v2/models/ok/infer", json=BODY, headers=hdrs, params=params)
    assert again.status_code == 200, again.text
    assert again.json()["outputs"][0]["shape"] == [1, 3]
    assert elapsed < 30, elapsed  # the lease, not the 60 s deadline
    assert third.status_code == 200 and third.json() == again.json()  # kept: not run a third time
    assert again.json()["id"] != rid  # run again under a fresh request id
