"""A model's personal request parameters on the real broker (docs/security.md, "Masking"): a model
version declares ``masking``; requests through the HTTP bridge (sync and async) carry the marker in
``parameters``; it appears on no topic of the test (requests, replies, dead letters, registry), in
no log line, audit record or Redis value, and the calls are answered. The masking is declared with
``aiaas models mask`` (audited)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid

import httpx
import pytest
import redis.asyncio as aioredis

from aiaas.agents.bridge.app import create_app
from aiaas.agents.bridge.settings import BridgeSettings
from aiaas.registry.store import Registry
from aiaas.schemas.masking import Masking
from aiaas.streams.settings import Settings
from tests import examples
from tests.integration.test_bridge import serve
from tests.integration.test_cli_models import aiaas
from tests.integration.test_masking import everything_under
from tests.workers import running_worker

MODEL = "masked"


async def redis_values(client: aioredis.Redis, mark: bytes) -> list[bytes]:
    """Every Redis string and hash value holding ``mark``."""
    hits: list[bytes] = []
    async for key in client.scan_iter(count=1000):
        kind = await client.type(key)
        if kind == b"string":
            values = [await client.get(key) or b""]
        elif kind == b"hash":
            values = list((await client.hgetall(key)).values())
        else:
            continue
        hits += [v for v in values if isinstance(v, bytes) and mark in v]
    return hits


async def test_model_personal_parameters_never_reach_kafka_logs_or_redis(
        settings: Settings, redis_client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="aiaas")
    monkeypatch.setenv("AIAAS_MASK_KEY", "bridge-mask-key")
    mark = f"pii-{uuid.uuid4().hex}"
    async with Registry(settings) as reg:
        await reg.publish(MODEL, examples.mlp([4, 8, 3], seed=7), stage="production")
    rc, out, err = await aiaas(settings, "models", "mask", MODEL, "1", "--hash", "customer.email",
                               "--drop", "ssn")
    assert rc == 0, err
    declared = Masking.model_validate(json.loads(out)["masking"])
    assert declared == Masking(hash=["customer.email"], drop=["ssn"])
    bs = BridgeSettings(auth=False, instance=uuid.uuid4().hex[:8], audit_each_infer=True)
    app = create_app(settings, bs)
    params = {"customer": {"email": mark, "tier": "gold"}, "ssn": mark}
    body = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}],
            "parameters": params}
    bad = {"inputs": [{"name": "input", "shape": [1, 5], "datatype": "FP32", "data": [1, 2, 3, 4, 5]}],
           "parameters": params}  # the wrong width: refused by the worker (or the bridge)
    async with contextlib.AsyncExitStack() as es:
        await es.enter_async_context(running_worker(settings, model=MODEL))
        url = await es.enter_async_context(serve(app))
        http = await es.enter_async_context(httpx.AsyncClient(base_url=url, timeout=60, trust_env=False))
        path = f"/v2/models/{MODEL}/infer"
        ok = await http.post(path, json=body)
        assert ok.status_code == 200, ok.text
        assert ok.json()["outputs"][0]["shape"] == [1, 3]
        accepted = await http.post(path, json=body, headers={"Prefer": "respond-async"})
        assert accepted.status_code == 202, accepted.text
        refused = await http.post(path, json=bad)
        assert 400 <= refused.status_code < 500 and mark not in refused.text
        async with asyncio.timeout(30):
            while True:
                done = await http.get(accepted.headers["location"])
                if done.status_code != 202:
                    break
                await asyncio.sleep(0.05)  # polling a request's state, not timing
        assert done.status_code == 200, done.text
    mine = [x for x in await everything_under(settings, "") if x]
    assert any(MODEL.encode() in x for x in mine)  # the request topic was read
    assert any(b'"kind":"dead_letter"' in x for x in mine)  # the refused call's dead letter too
    assert not [x for x in mine if mark.encode() in x]
    assert await redis_values(redis_client, mark.encode()) == []
    assert mark not in caplog.text
    audit = [json.loads(x) for x in mine if b'"kind":"audit"' in x]
    assert {"model.mask", "infer_async"} <= {a["action"] for a in audit}  # the audit topic was read
