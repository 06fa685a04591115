"""The bridge on real HTTP (uvicorn on loopback), the real broker, Redis and inference worker.

Each test gets a fresh topic prefix (so its own Redis keys too), a model, a worker serving it
in-process and a bridge app served by uvicorn on a free loopback port.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import redis.asyncio as aioredis
import uvicorn
from fastapi import FastAPI

from aiaas.agents.bridge.app import create_app
from aiaas.agents.bridge.core import Bridge
from aiaas.agents.bridge.keys import Scope
from aiaas.agents.bridge.settings import BridgeSettings
from aiaas.agents.inference.worker import InferenceWorker
from aiaas.cli.demo.receiver import Receiver
from aiaas.client.webhooks import SIGNATURE_HEADER, verify_signature
from aiaas.registry.store import Registry
from aiaas.schemas.errors import SignatureError
from aiaas.schemas.records import JobStatus
from aiaas.schemas.training import MetricsMessage
from aiaas.streams.admin import Admin
from aiaas.streams.audit import tail
from aiaas.streams.producer import Producer
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics
from tests import examples
from tests.inferreads import letters_on
from tests.workers import running_worker

MODEL = "mlp"
ONNX = examples.mlp([4, 8, 3], seed=7)
X = np.random.default_rng(3).normal(size=(2, 4)).astype(np.float32)
EXPECTED = ort.InferenceSession(ONNX, providers=["CPUExecutionProvider"]).run(None, {"input": X})[0]
BODY = {"inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", "data": X.ravel().tolist()}]}


@dataclass
class Stack:
    url: str
    key: str
    secret: str
    bridge: Bridge
    settings: Settings
    http: httpx.AsyncClient
    worker: InferenceWorker | None
    app: FastAPI

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    async def new_key(self, tenant: str, scopes: list[Scope] | None = None, **limits: float) -> str:
        key, _, _ = await self.bridge.keys.create(tenant, scopes, **limits)
        return key

    async def infer(self, body: Any = None, *, path: str = f"/v2/models/{MODEL}/infer",
                    headers: dict[str, str] | None = None, **kw: Any) -> httpx.Response:
        return await self.http.post(path, json=BODY if body is None else body,
                                    headers={**self.auth, **(headers or {})}, **kw)

    async def poll_done(self, location: str, timeout_s: float = 30.0) -> dict[str, Any]:
        """Poll until the request left ``pending`` (a readiness wait, not a sleep)."""
        async with asyncio.timeout(timeout_s):
            while True:
                resp = await self.http.get(location, headers=self.auth)
                if resp.status_code == 200:
                    return dict(resp.json())
                assert resp.status_code == 202, resp.text
                await asyncio.sleep(0.05)


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port (real HTTP)."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                           lifespan="on", loop="none"))
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(60):
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.02)  # waiting on the started flag (a condition), not timing
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


StackFactory = Callable[..., Any]


@pytest.fixture
async def stack(settings: Settings, redis_client: aioredis.Redis) -> AsyncIterator[StackFactory]:
    """``async with stack(worker=True, **bridge_settings) as s``: a model, a worker, a bridge, a key."""

    @asynccontextmanager
    async def make(worker: bool = True, **bs: Any) -> AsyncIterator[Stack]:
        async with Registry(settings) as reg:
            await reg.publish(MODEL, ONNX, stage="production")
        cfg = {"instance": uuid.uuid4().hex[:8], "callback_allowlist": ["127.0.0.1/32"],
               "webhook_backoff_s": 0.05, "dispatch_poll_s": 0.05, **bs}
        app = create_app(settings, BridgeSettings(**cfg))
        bridge: Bridge = app.state.bridge
        async with contextlib.AsyncExitStack() as es:
            w = await es.enter_async_context(running_worker(settings, model=MODEL)) if worker else None
            url = await es.enter_async_context(serve(app))
            http = await es.enter_async_context(httpx.AsyncClient(base_url=url, timeout=60, trust_env=False))
            key, _, tenant = await bridge.keys.create("acme")
            yield Stack(url, key, tenant.secret, bridge, settings, http, w, app)

    yield make


async def test_sync_infer_json_and_binary_are_correct(stack: StackFactory) -> None:
    async with stack() as s:
        resp = await s.infer()
        assert resp.status_code == 200, resp.text
        out = resp.json()["outputs"][0]
        assert out["name"] == "logits" and out["shape"] == [2, 3]
        np.testing.assert_allclose(np.array(out["data"]).reshape(2, 3), EXPECTED, rtol=1e-5, atol=1e-6)
        assert resp.json()["model_name"] == MODEL and resp.json()["model_version"] == "1"

        # OIP binary extension both ways: JSON header + raw little-endian tensors
        head = json.dumps({"inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32",
                                       "parameters": {"binary_data_size": X.nbytes}}],
                           "parameters": {"binary_data_output": True}}).encode()
        resp = await s.http.post(f"/v2/models/{MODEL}/versions/1/infer", content=head + X.tobytes(),
                                 headers={**s.auth, "Inference-Header-Content-Length": str(len(head)),
                                          "Content-Type": "application/octet-stream"})
        assert resp.status_code == 200, resp.text
        n = int(resp.headers["inference-header-content-length"])
        meta = json.loads(resp.content[:n])
        assert meta["outputs"][0]["parameters"]["binary_data_size"] == EXPECTED.nbytes
        got = np.frombuffer(resp.content[n:], dtype="<f4").reshape(2, 3)
        np.testing.assert_allclose(got, EXPECTED, rtol=1e-5, atol=1e-6)

        # values the edge does not check one by one are refused by the worker: a 400 passed back
        bad = {"inputs": [{**BODY["inputs"][0], "datatype": "INT8", "data": [300] * 8}]}
        resp = await s.infer(bad)
        assert resp.status_code == 400 and resp.json()["error"], resp.text

        # JSON in, one output asked as binary
        mixed = {**BODY, "outputs": [{"name": "logits", "parameters": {"binary_data": True}}]}
        resp = await s.infer(mixed)
        n = int(resp.headers["inference-header-content-length"])
        np.testing.assert_allclose(np.frombuffer(resp.content[n:], "<f4").reshape(2, 3), EXPECTED, rtol=1e-5)


async def test_oip_metadata_health_and_models_listing(stack: StackFactory) -> None:
    async with stack(worker=False) as s:
        assert (await s.http.get("/v2/health/live")).json() == {"live": True}
        assert (await s.http.get("/v2/health/ready")).status_code == 200
        assert "binary_tensor_data" in (await s.http.get("/v2")).json()["extensions"]
        meta = (await s.http.get(f"/v2/models/{MODEL}", headers=s.auth)).json()
        assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
        assert meta["versions"] == ["1"]
        assert (await s.http.get(f"/v2/models/{MODEL}/versions/1/ready", headers=s.auth)).json()["ready"]
        assert (await s.http.get(f"/v2/models/{MODEL}/versions/9", headers=s.auth)).status_code == 404
        listed = (await s.http.get("/v1/models", headers=s.auth)).json()["models"]
        assert [(m["name"], m["version"]) for m in listed] == [(MODEL, 1)]
        doc = (await s.http.get("/openapi.json")).json()
        assert "/v2/models/{model}/infer" in doc["paths"]
        assert "InferenceRequest" in doc["components"]["schemas"]


async def test_async_callback_gets_a_correctly_signed_body(stack: StackFactory) -> None:
    async with stack() as s, Receiver() as rx:
        resp = await s.infer(params={"callback": rx.url})
        assert resp.status_code == 202, resp.text
        rid, location = resp.json()["id"], resp.headers["location"]
        assert location == f"/v2/requests/{rid}"
        (hook,) = await rx.wait_for(1)
        verify_signature(s.secret, hook.headers[SIGNATURE_HEADER.lower()], hook.body, 60)
        with pytest.raises(SignatureError):
            verify_signature("not-the-secret", hook.headers[SIGNATURE_HEADER.lower()], hook.body, 60)
        payload = json.loads(hook.body)
        assert payload["id"] == rid and payload["status"] == "succeeded"
        got = np.array(payload["response"]["outputs"][0]["data"]).reshape(2, 3)
        np.testing.assert_allclose(got, EXPECTED, rtol=1e-5, atol=1e-6)
        done = await s.poll_done(location)
        assert done["status"] == "succeeded" and done["webhook"] == "delivered" and done["attempts"] == 1

        # the callback may also come in the body; Prefer: respond-async alone means poll
        body = {**BODY, "parameters": {"callback_url": rx.url}}
        assert (await s.infer(body)).status_code == 202
        await rx.wait_for(2)
        resp = await s.infer(headers={"Prefer": "respond-async"})
        assert resp.status_code == 202
        assert (await s.poll_done(resp.headers["location"]))["webhook"] == "none"


async def test_dispatcher_retries_after_receiver_500s_then_succeeds(stack: StackFactory) -> None:
    async with stack(webhook_attempts=5) as s, Receiver(statuses=[500, 503]) as rx:
        resp = await s.infer(params={"callback": rx.url})
        hooks = await rx.wait_for(3)
        assert [hk.headers["x-aiaas-attempt"] for hk in hooks] == ["1", "2", "3"]
        assert len({hk.body for hk in hooks}) == 1  # same body, fresh signature each time
        for hk in hooks:
            verify_signature(s.secret, hk.headers[SIGNATURE_HEADER.lower()], hk.body, 60)
        done = await s.poll_done(resp.headers["location"])
        async with asyncio.timeout(10):
            while done["webhook"] != "delivered":
                done = await s.poll_done(resp.headers["location"])
        assert done["status"] == "succeeded" and done["attempts"] == 3


async def test_all_attempts_failing_dead_letters_and_marks_failed(stack: StackFactory, admin: Admin) -> None:
    async with stack(webhook_attempts=3) as s, Receiver(default=500) as rx:
        resp = await s.infer(params={"callback": rx.url})
        rid = resp.json()["id"]
        await rx.wait_for(3)
        (letter, *_) = await letters_on(s.settings, Topics(s.settings).dlq("webhooks").name, 1, timeout_s=30)
        assert letter.details["request_id"] == rid and letter.details["attempts"] == 3
        assert letter.details["last"] == "status 500"
        async with asyncio.timeout(10):
            while (done := await s.poll_done(resp.headers["location"]))["status"] != "failed":
                pass
        assert done["webhook"] == "failed" and "callback delivery failed" in done["error"]["error"]
        assert len(rx.received) == 3


async def test_idempotency_same_body_once_different_body_conflicts(stack: StackFactory) -> None:
    async with stack() as s:
        assert s.worker is not None
        key = {"Idempotency-Key": f"k-{uuid.uuid4().hex}"}
        first = await s.infer(headers=key)
        served = s.worker.stats["requests"]
        again = await s.infer(headers=key)
        assert first.status_code == again.status_code == 200
        assert again.json()["outputs"] == first.json()["outputs"]
        assert again.json()["id"] == first.json()["id"]
        assert s.worker.stats["requests"] == served  # no second inference
        other = {"inputs": [{**BODY["inputs"][0], "data": [0.0] * 8}]}
        conflict = await s.infer(other, headers=key)
        assert conflict.status_code == 409 and conflict.json()["code"] == "conflict"

        # async: the same key gives the same request id; concurrent repeats wait for one result
        akey = {"Idempotency-Key": f"a-{uuid.uuid4().hex}", "Prefer": "respond-async"}
        a1, a2 = await s.infer(headers=akey), await s.infer(headers=akey)
        assert a1.status_code == a2.status_code == 202 and a1.json()["id"] == a2.json()["id"]
        ckey = {"Idempotency-Key": f"c-{uuid.uuid4().hex}"}
        before = s.worker.stats["requests"]
        many = await asyncio.gather(*(s.infer(headers=ckey) for _ in range(5)))
        assert {r.status_code for r in many} == {200} and len({r.json()["id"] for r in many}) == 1
        await s.poll_done(a1.headers["location"])
        assert s.worker.stats["requests"] - before <= 2  # the async one (if not yet served) + one


async def test_auth_401_403_and_tenant_isolation(stack: StackFactory) -> None:
    async with stack(worker=False) as s:
        assert (await s.http.post(f"/v2/models/{MODEL}/infer", json=BODY)).status_code == 401
        bad = await s.http.post(f"/v2/models/{MODEL}/infer", json=BODY, headers={"X-API-Key": "aiaas_x_y"})
        assert bad.status_code == 401 and bad.headers["www-authenticate"] == "Bearer"
        assert bad.json()["error"]
        infer_only = await s.new_key("acme", ["infer"])
        job = {"job_id": "j1", "model": {"input_dim": 4, "output_dim": 3}, "steps": 1}
        forbidden = await s.http.post("/v1/jobs", json=job, headers={"X-API-Key": infer_only})
        assert forbidden.status_code == 403 and forbidden.json()["code"] == "forbidden"
        # a model registered for another tenant is invisible (404), its own is visible
        async with Registry(s.settings) as reg:
            await reg.publish("private", examples.mlp([4, 2], seed=1), tenant="other")
        assert (await s.http.get("/v2/models/private", headers=s.auth)).status_code == 404
        assert (await s.infer(path="/v2/models/private/infer")).status_code == 404
        other = await s.new_key("other")
        assert (await s.http.get("/v2/models/private", headers={"X-API-Key": other})).status_code == 200
        names = [m["name"] for m in (await s.http.get("/v1/models", headers=s.auth)).json()["models"]]
        assert "private" not in names


async def test_rate_limit_gives_429_with_retry_after(stack: StackFactory) -> None:
    async with stack(worker=False) as s:
        slow = await s.new_key("slow", rate_per_s=0.5, burst=2)
        hdrs = {"X-API-Key": slow}
        assert (await s.http.get(f"/v2/models/{MODEL}/infer", headers=hdrs)).status_code == 405
        statuses = []
        for _ in range(3):
            r = await s.http.post(f"/v2/models/{MODEL}/infer", content=b"{}", headers=hdrs)
            statuses.append(r.status_code)
        assert statuses == [400, 400, 429]
        assert int(r.headers["retry-after"]) >= 1 and r.json()["code"] == "rate_limited"
        # other tenants have their own bucket
        r = await s.http.post(f"/v2/models/{MODEL}/infer", content=b"{}", headers=s.auth)
        assert r.status_code == 400


async def test_callback_urls_to_private_ranges_are_refused(stack: StackFactory) -> None:
    async with stack(worker=False) as s:
        for url in ["http://10.1.2.3/x", "http://169.254.169.254/latest/meta-data", "http://[::1]:80/",
                    "http://127.0.0.2:9/x", "http://0.0.0.0/", "http://192.168.1.1/", "ftp://1.1.1.1/",
                    "file:///etc/passwd", "http://user:pw@8.8.8.8/", "http://[fe80::1]/", "not a url",
                    "http://[::ffff:10.0.0.1]/"]:
            resp = await s.infer(params={"callback": url})
            assert resp.status_code == 400, (url, resp.text)
            assert resp.json()["code"] == "bad_request"
        assert await s.bridge.redis.zcard(s.bridge.rk.webhooks_due()) == 0


async def test_body_size_limit_gives_413(stack: StackFactory) -> None:
    async with stack(worker=False, max_body_bytes=4096) as s:
        big = {"inputs": [{"name": "input", "shape": [1, 2000], "datatype": "FP32", "data": [0.5] * 2000}]}
        resp = await s.infer(big)
        assert resp.status_code == 413 and resp.json()["code"] == "too_large"

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it streams
            for _ in range(10):
                yield b" " * 1000

        resp = await s.http.post(f"/v2/models/{MODEL}/infer", content=chunks(), headers=s.auth)
        assert resp.status_code == 413


async def test_no_worker_gives_504(stack: StackFactory) -> None:
    async with stack(worker=False) as s:
        resp = await s.infer(params={"timeout": 0.5})
        assert resp.status_code == 504 and resp.json()["code"] == "timeout"
        ops = {"X-API-Key": await s.new_key("ops", ["metrics"])}
        metrics = (await s.http.get("/metrics", headers=ops)).text
        assert f'aiaas_bridge_infer_requests_total{{model="{MODEL}",status="504"}} 1.0' in metrics


async def test_metrics_count_requests_latency_and_in_flight(stack: StackFactory) -> None:
    async with stack() as s:
        for _ in range(3):
            assert (await s.infer()).status_code == 200
        text = (await s.http.get("/metrics", headers={"X-API-Key": await s.new_key("ops", ["metrics"])})).text
        assert f'aiaas_bridge_infer_requests_total{{model="{MODEL}",status="200"}} 3.0' in text
        assert f'aiaas_bridge_infer_seconds_count{{model="{MODEL}"}} 3.0' in text
        assert f'aiaas_bridge_reply_lag_seconds_count{{model="{MODEL}"}} 3.0' in text
        assert "aiaas_bridge_infer_in_flight 0.0" in text
        assert 'aiaas_bridge_http_requests_total{method="POST",route="/v2/models/{model}/infer"' in text


async def test_jobs_api_submits_and_reports_status_and_metrics(stack: StackFactory) -> None:
    async with stack(worker=False) as s:
        job_id = f"job{uuid.uuid4().hex[:6]}"
        spec = {"job_id": job_id, "model": {"input_dim": 64, "output_dim": 10}, "steps": 5}
        resp = await s.http.post("/v1/jobs", json=spec, headers=s.auth)
        assert resp.status_code == 201, resp.text
        assert resp.headers["location"] == f"/v1/jobs/{job_id}"
        assert (await s.http.post("/v1/jobs", json=spec, headers=s.auth)).status_code == 409
        bad = await s.http.post("/v1/jobs", json={**spec, "job_id": "x2", "steps": 0}, headers=s.auth)
        assert bad.status_code == 400, bad.text
        assert bad.json()["errors"]
        got = (await s.http.get(f"/v1/jobs/{job_id}", headers=s.auth)).json()
        assert got["state"] == "submitted" and got["metrics"] is None
        topics = Topics(s.settings)
        async with Producer(s.settings) as prod:
            await prod.send_and_wait(topics.jobs().name, JobStatus(job_id=job_id, state="running",
                                                                   version=3).to_record(), key=job_id)
            async with Admin(s.settings) as adm:
                await adm.ensure_topics([topics.train_metrics(job_id)])
            await prod.send_and_wait(topics.train_metrics(job_id).name,
                                     MetricsMessage(job_id=job_id, version=3, loss=0.25).to_record())
        got = (await s.http.get(f"/v1/jobs/{job_id}", headers=s.auth)).json()
        assert got["state"] == "running" and got["metrics"]["loss"] == 0.25
        async with Producer(s.settings) as prod:  # heartbeats promised every second, none for a minute
            stale = JobStatus(job_id=job_id, state="running", version=3, heartbeat_s=1.0, ts=time.time() - 60)
            await prod.send_and_wait(topics.jobs().name, stale.to_record(), key=job_id)
        got = (await s.http.get(f"/v1/jobs/{job_id}", headers=s.auth)).json()
        assert got["state"] == "lost" and "no heartbeat" in got["why"], got
        other = await s.new_key("other")
        assert (await s.http.get(f"/v1/jobs/{job_id}", headers={"X-API-Key": other})).status_code == 404
        starts = []  # audited (docs/operations.md): the submission, and the refused second one
        async with asyncio.timeout(30), contextlib.aclosing(tail(s.settings, last=100, follow=True)) as recs:
            async for rec in recs:
                if rec.action == "job.start" and rec.target == job_id:
                    starts.append(rec)
                    if len(starts) == 2:
                        break
        assert [(r.source, r.outcome) for r in starts] == [("bridge", "ok"), ("bridge", "failed")], starts
        assert starts[1].error is not None and "conflict" in starts[1].error
