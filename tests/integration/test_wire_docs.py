"""docs/wire-protocol.md, spoken by a plain aiokafka producer on the real broker: what a caller in
another language does, with the header names spelled as the page spells them (not imported).

A JSON request and a bad request get the replies the page describes, the bad one also its dead
letter with the original bytes; a record of the OIP binary extension (an HTTP form, not a Kafka one)
gets an error reply naming the forms that work, and its dead letter; every header a worker writes on
them is one the page's header table documents (so the table cannot fall behind what goes on the wire).
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time

import numpy as np
import onnxruntime as ort
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from aiaas.registry.store import Registry
from aiaas.streams.admin import ensure
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics
from tests import examples
from tests.unit.test_header_names import documented_headers
from tests.workers import running_worker

Headers = list[tuple[str, bytes]]


Seen = tuple[str, bytes | None, bytes, Headers]


async def _read(settings: Settings, topics: list[str], want: int) -> list[Seen]:
    """(topic, key, value, headers) of the first ``want`` records on ``topics``, read from the start."""
    out: list[Seen] = []
    cons = AIOKafkaConsumer(*topics, bootstrap_servers=settings.bootstrap_servers,
                            auto_offset_reset="earliest", enable_auto_commit=False)
    await cons.start()
    try:
        async with asyncio.timeout(30):
            while len(out) < want:
                for records in (await cons.getmany(timeout_ms=500)).values():
                    out += [(r.topic, r.key, r.value or b"", list(r.headers)) for r in records]
    finally:
        await cons.stop()
    return out


async def test_a_plain_producer_speaking_the_documented_protocol_gets_documented_replies(
    settings: Settings,
) -> None:
    model = examples.mlp([4, 8, 3], seed=2)
    async with Registry(settings) as reg:
        await reg.publish("wiredoc", model, stage="production")
    topics = Topics(settings)
    reply_topic, dlq = topics.replies("wiredoc-caller").name, topics.infer_dlq("wiredoc").name
    await ensure(settings, [topics.replies("wiredoc-caller")])
    x = np.array([[1.5, -2.0, 0.25, 4.0]], np.float32)
    want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    trace_id = secrets.token_hex(16)
    tensor = {"name": "input", "shape": [1, 4], "datatype": "FP32"}
    json_body = json.dumps({"id": "j1", "inputs": [{**tensor, "data": x.ravel().tolist()}]}).encode()
    head = json.dumps({"id": "b1", "inputs": [{**tensor, "parameters": {"binary_data_size": 16}}]}).encode()
    bad_body = json.dumps({"inputs": [{**tensor, "name": "nope", "data": [1, 2, 3, 4]}]}).encode()
    common: Headers = [("reply-to", reply_topic.encode())]
    requests: list[tuple[bytes, bytes, Headers]] = [
        (b"j1", json_body, [("correlation-id", b"j1"), *common, ("content-type", b"application/json"),
                            ("deadline", str(int(time.time() * 1000) + 60_000).encode()),
                            ("model-version", b"1"), ("tenant", b"acme"),
                            ("traceparent", f"00-{trace_id}-{secrets.token_hex(8)}-01".encode())]),
        (b"b1", head + x.astype("<f4").tobytes(),
         [("correlation-id", b"b1"), *common, ("content-type", b"application/octet-stream"),
          ("inference-header-content-length", str(len(head)).encode())]),
        (b"x1", bad_body, [("correlation-id", b"x1"), *common, ("content-type", b"application/json")]),
    ]
    async with running_worker(settings, model="wiredoc"):
        prod = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers)
        await prod.start()
        try:
            for key, value, hdrs in requests:
                await prod.send_and_wait(topics.infer_requests("wiredoc").name, value, key=key, headers=hdrs)
        finally:
            await prod.stop()
        records = await _read(settings, [reply_topic, dlq], 5)

    replies = {dict(hd)["correlation-id"].decode(): (key, value, dict(hd))
               for topic, key, value, hd in records if topic == reply_topic}
    assert set(replies) == {"j1", "b1", "x1"}

    key, value, hd = replies["j1"]
    assert key == b"j1" and hd["status-code"] == b"200" and hd["model-version"] == b"1"
    assert hd["content-type"] == b"application/json" and hd["tenant"] == b"acme"
    assert hd["traceparent"].decode().split("-")[1] == trace_id  # the worker's span, in our trace
    body = json.loads(value)
    assert body["kind"] == "inference_response" and body["id"] == "j1" and body["model_version"] == "1"
    np.testing.assert_allclose(np.array(body["outputs"][0]["data"]).reshape(1, 3), want, rtol=1e-5, atol=1e-6)

    _, value, hd = replies["b1"]
    refused = json.loads(value)
    assert hd["status-code"] == b"400" and hd["content-type"] == b"application/json"
    assert refused["kind"] == "error_reply" and refused["code"] == "invalid_message"
    assert "application/json" in refused["error"] and "application/vnd.aiaas.frame" in refused["error"]
    assert refused["details"]["content_type"] == "application/octet-stream"

    _, value, hd = replies["x1"]
    error = json.loads(value)
    assert hd["status-code"] == b"400" and hd["content-type"] == b"application/json"
    assert error["kind"] == "error_reply" and error["status_code"] == 400 and error["retriable"] is False
    assert error["code"] == "bad_request" and error["details"]["missing"] == ["input"]  # says what is wrong

    letters = {r[1]: json.loads(r[2]) for r in records if r[0] == dlq}
    assert set(letters) == {b"b1", b"x1"} and letters[b"b1"]["code"] == "invalid_message"
    key, letter = b"x1", letters[b"x1"]
    assert key == b"x1" and letter["kind"] == "dead_letter" and letter["code"] == error["code"]
    assert base64.b64decode(letter["value_b64"]) == bad_body and letter["headers"]["correlation-id"] == "x1"

    documented = set(documented_headers())
    on_the_wire = {name for _, _, _, hd in records for name, _ in hd} | set(letter["headers"])
    assert on_the_wire <= documented, on_the_wire - documented
