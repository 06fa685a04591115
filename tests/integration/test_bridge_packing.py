"""Concurrent HTTP calls leave the bridge packed as entries of frames, on the real broker: fewer
request records than calls, each call answered on its own, a bad call's error its own."""

from __future__ import annotations

import asyncio
import uuid

import httpx

from aiaas.agents.bridge.app import create_app
from aiaas.agents.bridge.settings import BridgeSettings
from aiaas.registry.store import Registry
from aiaas.streams import frame
from aiaas.streams.admin import Admin
from aiaas.streams.consumer import Consumer
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics
from tests import examples
from tests.workers import running_worker

CALLS = 16


def _body(i: int, width: int = 4) -> dict[str, object]:
    return {"id": f"call-{i}", "inputs": [{"name": "input", "shape": [1, width], "datatype": "FP32",
                                           "data": [float(i)] * width}]}


async def _ids_per_record(settings: Settings, topic: str, calls: int) -> list[list[str]]:
    """The request ids of each record on ``topic`` until ``calls`` ids were seen."""
    out: list[list[str]] = []
    async with Consumer(settings, [topic], None) as cons, asyncio.timeout(30):
        while sum(map(len, out)) < calls:
            for rec in await cons.getmany(timeout_ms=200):
                assert frame.is_frame(rec.headers)
                out.append([i for e in frame.decode(rec.value, rec.headers) for i in e.ids])
    return out


async def test_concurrent_calls_share_frames_and_keep_their_own_answers(
        settings: Settings, admin: Admin, redis_client: object) -> None:
    model = f"packed{uuid.uuid4().hex[:6]}"
    topic = Topics(settings).infer_requests(model)
    await admin.ensure_topics([topic])
    async with Registry(settings) as reg:
        await reg.publish(model, examples.mlp([4, 8, 2]), stage="production")
    bs = BridgeSettings(auth=False, instance=f"pk{uuid.uuid4().hex[:6]}", pack_linger_ms=20)
    app = create_app(settings, bs)
    async with running_worker(settings, model=model), app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bridge", timeout=30) as http:
            bodies = [_body(i) for i in range(CALLS - 1)] + [_body(CALLS - 1, width=3)]  # the last is bad
            got = await asyncio.gather(*(http.post(f"/v2/models/{model}/infer", json=b) for b in bodies))
        records = await _ids_per_record(settings, topic.name, CALLS)

    assert [r.status_code for r in got] == [200] * (CALLS - 1) + [400]
    assert [r.json()["id"] for r in got[:-1]] == [f"call-{i}" for i in range(CALLS - 1)]
    assert all(r.json()["outputs"][0]["shape"] == [1, 2] for r in got[:-1])
    assert "input" in got[-1].text  # the bad call's own error names its input
    assert sum(map(len, records)) == CALLS and len({i for r in records for i in r}) == CALLS
    assert len(records) < CALLS // 2, records  # packed: several calls per request record
