"""A W3C traceparent travels HTTP -> bridge -> Kafka request -> inference worker -> Kafka reply
(-> HTTP response), on the real broker with the real bridge app and worker."""

from __future__ import annotations

import asyncio
import uuid

import httpx

from aiaas.agents.bridge.app import create_app
from aiaas.agents.bridge.settings import BridgeSettings
from aiaas.registry.store import Registry
from aiaas.streams import frame, tracing
from aiaas.streams import headers as h
from aiaas.streams.admin import Admin
from aiaas.streams.consumer import Consumer
from aiaas.streams.record import Record
from aiaas.streams.replywire import replies_of
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics
from tests import examples
from tests.workers import running_worker

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
INCOMING = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
BODY = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [0.1, 0.2, 0.3, 0.4]}]}


async def _first(settings: Settings, topic: str) -> Record:
    """The first record of ``topic``, read by an observer outside every group."""
    async with Consumer(settings, [topic], None) as cons, asyncio.timeout(30):
        while True:
            recs = await cons.getmany(timeout_ms=200)
            if recs:
                return recs[0]


async def test_traceparent_travels_through_bridge_kafka_and_worker(settings: Settings, admin: Admin,
                                                                  redis_client: object) -> None:
    model = f"traced{uuid.uuid4().hex[:6]}"
    await admin.ensure_topics([Topics(settings).infer_requests(model)])
    async with Registry(settings) as reg:
        await reg.publish(model, examples.mlp([4, 8, 2]), stage="production")
    app = create_app(settings, BridgeSettings(auth=False, instance=f"tr{uuid.uuid4().hex[:6]}"))
    bridge = app.state.bridge
    async with running_worker(settings, model=model), app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bridge", timeout=30) as http:
            resp = await http.post(f"/v2/models/{model}/infer", json=BODY, headers={"traceparent": INCOMING})
        assert resp.status_code == 200, resp.text
        assert resp.json()["outputs"][0]["shape"] == [1, 2]
        request = await _first(settings, Topics(settings).infer_requests(model).name)
        reply = await _first(settings, bridge.client.reply_topic)

    # The bridge sends frames: the request is an entry, its traceparent the entry's own header
    [entry] = frame.decode(request.value, request.headers)
    [answer] = replies_of(reply.value, reply.headers)
    # The request the worker consumed carries the caller's trace ...
    assert tracing.trace_id(tracing.extract(entry.headers)) == TRACE_ID
    # ... and the worker's reply, matched by correlation id, continues the same trace.
    assert answer.request_id == answer.headers[h.CORRELATION_ID] == entry.id
    assert tracing.trace_id(tracing.extract(answer.headers)) == TRACE_ID
    # every hop is a span of its own: the caller's, the bridge's, the worker's
    spans = [INCOMING, entry.headers[h.TRACEPARENT], answer.headers[h.TRACEPARENT]]
    assert len({s.split("-")[2] for s in spans}) == 3
    # and the bridge hands the worker's span back to the HTTP caller
    assert resp.headers[h.TRACEPARENT] == answer.headers[h.TRACEPARENT]


def test_a_request_without_trace_starts_one_at_the_bridge() -> None:
    first = tracing.hop(None, "bridge.infer")
    second = tracing.hop(first, "inference.request")
    assert tracing.trace_id(tracing.extract({"traceparent": first})) == first.split("-")[1]
    assert second.split("-")[1] == first.split("-")[1] and second.split("-")[2] != first.split("-")[2]
