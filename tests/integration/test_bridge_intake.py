"""What a bridge takes on before and while it reads request bodies, on the real broker and Redis.

A caller is known from its headers before a body byte is read (keyless slow uploads get a 401 and
a closed connection, and the bridge's memory stays flat); a body must arrive in time (408); request
body bytes and infer calls in flight are capped per tenant (429) and per bridge (503), with
Retry-After; /metrics and model readiness honour key scopes; ragged nested data is a 400.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from aiaas.agents.bridge.keys import KeyStore
from aiaas.agents.bridge.rediskeys import RedisKeys
from aiaas.streams.settings import Settings
from tests.integration import test_bridge
from tests.integration.test_bridge import BODY, MODEL, StackFactory
from tests.slowbodies import Partial, partial_request, rss_mb
from tests.spawn import BridgeProcess

stack = test_bridge.stack  # the fixture: a model, a worker, a bridge on real HTTP, a key
INFER = f"/v2/models/{MODEL}/infer"
MIB = 1024 * 1024


def padded(length: int) -> bytes:
    """A valid JSON infer body of exactly ``length`` bytes (whitespace after the object)."""
    raw = json.dumps(BODY).encode()
    return raw + b" " * (length - len(raw))


async def until(check: Any, timeout_s: float = 10.0) -> None:
    """Wait for a condition of the in-process bridge (a readiness wait, not a sleep)."""
    async with asyncio.timeout(timeout_s):
        while True:
            if check():
                return
            await asyncio.sleep(0.01)  # polling the bridge's counters (no event to wait on)


@pytest.mark.timeout(120)
async def test_keyless_slow_bodies_are_refused_from_headers_and_memory_stays_flat(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    """150 keyless uploads of 4 MiB bodies sent slowly: each gets its 401 from the headers alone and
    its connection closed; the bridge process grows by a few MB, not by the bodies (it was 600 MB)."""
    key, _, _ = await KeyStore(redis_client, RedisKeys(settings)).create("acme")
    env = {"AIAAS_TOPIC_PREFIX": settings.topic_prefix, "AIAAS_LOG_LEVEL": "WARNING",
           "AIAAS_BRIDGE_INSTANCE": uuid.uuid4().hex[:8]}
    bridge = BridgeProcess(env)
    await bridge.start()
    try:
        assert bridge.proc is not None
        before = rss_mb(bridge.proc.pid)
        chunk = b" " * 65536
        conns: list[Partial] = await asyncio.gather(*(
            partial_request(bridge.port, INFER if i % 2 else "/v1/jobs", length=4 * MIB, body=chunk,
                            headers={"X-API-Key": "aiaas_wrong_key"} if i % 3 == 0 else None)
            for i in range(150)))
        try:
            for conn in conns:  # keep sending, slowly: the bridge must not be reading any of it
                with contextlib.suppress(ConnectionError):
                    await conn.send(chunk)
                answer = await conn.answer()
                assert answer is not None and answer.status == 401, answer
                assert answer.headers["connection"] == "close" and json.loads(answer.body)["error"]
                assert await conn.closed_by_server()
            peak = rss_mb(bridge.proc.pid)
        finally:
            for conn in conns:
                conn.close()
        assert peak - before < 40, (before, peak)
        # refused while still sending a big body, a client can read its answer (not a reset)
        async with httpx.AsyncClient(base_url=bridge.url, timeout=30, trust_env=False) as http:
            refused = await asyncio.gather(*(
                http.post(INFER, content=padded(2 * MIB), headers={"X-API-Key": "aiaas_wrong_key"})
                for _ in range(32)))
        assert {r.status_code for r in refused} == {401}
        # the bridge still serves callers with a key
        ok = await partial_request(bridge.port, "/v2/models/nope/infer", length=len(json.dumps(BODY)),
                                   body=json.dumps(BODY).encode(), headers={"X-API-Key": key})
        answer = await ok.answer()
        ok.close()
        assert answer is not None and answer.status == 404, answer
    finally:
        await bridge.stop()


@pytest.mark.timeout(120)
async def test_request_heads_are_bounded_in_size_and_time(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    """150 connections trickling 4 MiB header values get a 431 at 64 KiB and are closed (the bridge
    grew by 640 MB before); a stalled head gets a 408; big bodies after a normal head still pass."""
    key, _, _ = await KeyStore(redis_client, RedisKeys(settings)).create("acme")
    env = {"AIAAS_TOPIC_PREFIX": settings.topic_prefix, "AIAAS_LOG_LEVEL": "WARNING",
           "AIAAS_BRIDGE_INSTANCE": uuid.uuid4().hex[:8], "AIAAS_BRIDGE_HEAD_TIMEOUT_S": "1"}
    bridge = BridgeProcess(env)
    await bridge.start()
    try:
        assert bridge.proc is not None
        before = rss_mb(bridge.proc.pid)
        opened = [asyncio.open_connection("127.0.0.1", bridge.port) for _ in range(150)]
        conns = [Partial(r, w) for r, w in await asyncio.gather(*opened)]
        for conn in conns:
            await conn.send(b"POST /v2/models/m/infer HTTP/1.1\r\nhost: b\r\nx-junk: ")
        try:
            for _ in range(2):  # 128 KiB each, in steps: over the limit
                for conn in conns:
                    with contextlib.suppress(ConnectionError):
                        await conn.send(b"a" * 65536)
            for conn in conns:
                answer = await conn.answer()
                assert answer is not None and answer.status == 431, answer
                assert json.loads(answer.body)["limit_bytes"] == 65536 and await conn.closed_by_server()
            peak = rss_mb(bridge.proc.pid)
        finally:
            for conn in conns:
                conn.close()
        assert peak - before < 40, (before, peak)
        reader, writer = await asyncio.open_connection("127.0.0.1", bridge.port)
        slow = Partial(reader, writer)
        await slow.send(b"POST /v2/models/m/infer HTTP/1.1\r\nhost: b\r\n")
        answer = await slow.answer()
        slow.close()
        assert answer is not None and answer.status == 408, answer
        big = padded(3 * MIB)
        ok = await partial_request(bridge.port, "/v2/models/nope/infer", length=len(big), body=big,
                                   headers={"X-API-Key": key})
        answer = await ok.answer()
        ok.close()
        assert answer is not None and answer.status == 404, answer  # the body was read, the model looked up
    finally:
        await bridge.stop()


async def test_a_body_that_does_not_arrive_in_time_is_a_408(stack: StackFactory) -> None:
    async with stack(worker=False, body_timeout_s=0.5) as s:
        port = int(s.url.rsplit(":", 1)[1])
        t0 = time.monotonic()
        conn = await partial_request(port, INFER, length=1000, body=b'{"inputs": [', headers=s.auth)
        answer = await conn.answer()
        assert answer is not None and answer.status == 408, answer
        body = json.loads(answer.body)
        assert body["code"] == "timeout" and "in time" in body["error"] and body["timeout_s"] == 0.5
        assert answer.headers["connection"] == "close" and await conn.closed_by_server()
        assert time.monotonic() - t0 < 5
        conn.close()
        await until(lambda: s.bridge.admission.bytes == 0 and s.bridge.admission.calls == 0)
        # the same on the generic routes (jobs)
        conn = await partial_request(port, "/v1/jobs", length=1000, body=b"{", headers=s.auth)
        answer = await conn.answer()
        conn.close()
        assert answer is not None and answer.status == 408, answer


async def test_body_bytes_in_flight_are_capped_per_tenant_and_per_bridge(stack: StackFactory) -> None:
    caps = {"json_cost_factor": 2.0, "max_body_bytes_per_tenant": 100_000,
            "max_body_bytes_in_flight": 150_000}
    async with stack(worker=False, **caps) as s:
        port = int(s.url.rsplit(":", 1)[1])
        other = {"X-API-Key": await s.new_key("other")}
        admission = s.bridge.admission
        # acme's upload of 40 kB (80 kB of cost) is under way
        first = await partial_request(port, f"{INFER}?timeout=0.2", length=40_000, body=padded(40_000)[:100],
                                      headers=s.auth)
        await until(lambda: admission.bytes == 80_000)
        # acme again: over its share -> 429; other tenant: over the bridge's cap -> 503
        more = await s.http.post(INFER, content=padded(20_000), headers=s.auth)
        assert more.status_code == 429 and more.json()["code"] == "rate_limited", more.text
        assert int(more.headers["retry-after"]) >= 1 and more.json()["limit_bytes"] == 100_000
        for _ in range(5):  # a big body refused unread: the answer is still readable (lingering close)
            big = await s.http.post(INFER, content=padded(MIB), headers=s.auth)
            assert big.status_code == 429 and big.headers["connection"] == "close", big.text
        full = await s.http.post(INFER, content=padded(40_000), headers=other)
        assert full.status_code == 503 and int(full.headers["retry-after"]) >= 1, full.text
        small = await s.http.post(INFER, content=padded(30_000), headers=other, params={"timeout": 0.2})
        assert small.status_code == 504, small.text  # fits: admitted (no worker, so a timeout)
        # the first upload completes and is served; its share is given back
        await first.send(padded(40_000)[100:])
        answer = await first.answer()
        first.close()
        assert answer is not None and answer.status == 504  # admitted and served (no worker: a timeout)
        await until(lambda: admission.bytes == 0)
        assert (await s.http.post(INFER, content=padded(40_000), headers=other,
                                  params={"timeout": 0.2})).status_code == 504
        text = (await s.http.get("/metrics", headers={"X-API-Key": await s.new_key("ops", ["metrics"])})).text
        assert 'aiaas_bridge_refused_total{reason="tenant_bytes"} 6.0' in text
        assert 'aiaas_bridge_refused_total{reason="bridge_bytes"} 1.0' in text


async def test_an_async_request_holds_its_share_until_answered_not_until_its_202(stack: StackFactory) -> None:
    async with stack(worker=False, json_cost_factor=2.0) as s:
        admission = s.bridge.admission
        accepted = await s.http.post(INFER, content=padded(40_000), params={"timeout": 1.5},
                                     headers={**s.auth, "Prefer": "respond-async"})
        assert accepted.status_code == 202, accepted.text
        assert admission.bytes == 80_000 and admission.calls == 1  # the body waits for its answer
        await until(lambda: admission.bytes == 0 and admission.calls == 0)  # no worker: it timed out
        polled = await s.http.get(accepted.headers["location"], headers=s.auth)
        assert polled.json()["status"] in ("failed", "timeout"), polled.text


async def test_infer_calls_in_flight_are_capped_per_tenant_and_per_bridge(stack: StackFactory) -> None:
    async with stack(worker=False, max_sync_per_tenant=2, max_sync_in_flight=3) as s:
        port = int(s.url.rsplit(":", 1)[1])
        other = {"X-API-Key": await s.new_key("other")}
        held = [await partial_request(port, INFER, length=100, body=b"{", headers=s.auth) for _ in range(2)]
        await until(lambda: s.bridge.admission.calls == 2)
        over = await s.http.post(INFER, json=BODY, headers=s.auth)
        assert over.status_code == 429 and int(over.headers["retry-after"]) >= 1, over.text
        held.append(await partial_request(port, INFER, length=100, body=b"{", headers=other))
        await until(lambda: s.bridge.admission.calls == 3)
        full = await s.http.post(INFER, json=BODY, headers=other)
        assert full.status_code == 503 and int(full.headers["retry-after"]) >= 1, full.text
        for conn in held:  # callers that leave give their slots back at once
            conn.close()
        await until(lambda: s.bridge.admission.calls == 0)
        again = await s.http.post(INFER, json=BODY, headers=s.auth, params={"timeout": 0.2})
        assert again.status_code == 504, again.text


async def test_metrics_need_the_metrics_scope_unless_open(stack: StackFactory) -> None:
    async with stack(worker=False) as s:
        assert (await s.infer(path="/v2/models/nope/infer")).status_code == 404
        keyless = await s.http.get("/metrics")
        assert keyless.status_code == 401 and MODEL not in keyless.text
        tenant = await s.http.get("/metrics", headers=s.auth)
        assert tenant.status_code == 403 and tenant.json()["scope"] == "metrics"
        ops = await s.http.get("/metrics", headers={"X-API-Key": await s.new_key("ops", ["metrics"])})
        assert ops.status_code == 200 and "aiaas_bridge_infer_requests_total" in ops.text
    async with stack(worker=False, metrics_open=True) as s:
        assert (await s.http.get("/metrics")).status_code == 200


async def test_model_metadata_and_readiness_need_the_models_scope(stack: StackFactory) -> None:
    async with stack(worker=False) as s:
        infer_only = {"X-API-Key": await s.new_key("acme", ["infer"])}
        for path in (f"/v2/models/{MODEL}", f"/v2/models/{MODEL}/ready",
                     f"/v2/models/{MODEL}/versions/1/ready", f"/v2/models/{MODEL}/versions/1"):
            resp = await s.http.get(path, headers=infer_only)
            assert resp.status_code == 403 and resp.json()["scope"] == "models", (path, resp.text)
            assert (await s.http.get(path, headers=s.auth)).status_code == 200, path
            assert (await s.http.get(path)).status_code == 401, path


async def test_ragged_nested_data_is_a_400_naming_the_field(stack: StackFactory) -> None:
    async with stack() as s:
        base = BODY["inputs"][0]
        for data in ([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0], [8.0]],  # 8 values, rows of 4, 3, 1
                     [[1.0, 2.0, 3.0, 4.0], 5.0, 6.0, 7.0, 8.0],  # a row and values mixed
                     [[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0, 7.0, 8.0]]]):
            resp = await s.infer({"inputs": [{**base, "data": data}]})
            assert resp.status_code == 400, resp.text
            assert "ragged" in resp.json()["error"] and resp.json()["field"] == "inputs.0.data", resp.text
        nested = [[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]]  # regular nesting is still fine
        assert (await s.infer({"inputs": [{**base, "data": nested}]})).status_code == 200


async def test_an_unknown_model_is_a_quick_404(stack: StackFactory) -> None:
    async with stack(worker=False) as s:
        t0 = time.monotonic()
        resp = await s.infer(path="/v2/models/never-registered/infer")
        assert resp.status_code == 404 and resp.json()["code"] == "not_found", resp.text
        assert time.monotonic() - t0 < 5
        ready = await s.http.get("/v2/health/ready")
        assert ready.status_code == 200 and ready.json() == {"ready": True, "kafka": True, "redis": True}
