"""The HTTP bridge with tenant data keys, on the real broker, Redis and a worker (docs/security.md,
"Payload encryption"): a tenant with a key has its requests and replies sealed on Kafka and gets the
right answer over HTTP, a tenant without one stays in clear (the control: the raw read does find
its values), and a webhook body the bridge dead-letters is kept sealed."""

from __future__ import annotations

import asyncio
import base64
import json

import numpy as np
import onnxruntime as ort
import pytest
from aiokafka import AIOKafkaConsumer

from aiaas.streams import headers as h
from aiaas.streams.envelope import is_sealed
from aiaas.streams.keyring import key_file_json, new_key
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics
from tests.integration.test_bridge import MODEL, ONNX, StackFactory
from tests.integration.test_bridge import stack as stack  # the fixture
from tests.integration.test_encryption import raw_values

SEALED_X = np.full((2, 4), 4321.5, np.float32)
CLEAR_X = np.full((2, 4), 8765.25, np.float32)


def body(x: np.ndarray) -> dict[str, object]:
    return {"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32",
                        "data": x.ravel().tolist()}]}


async def first_record(settings: Settings, topic: str, timeout_s: float = 20.0) -> bytes:
    """The first record value of ``topic`` once there is one (a readiness wait on the broker)."""
    cons = AIOKafkaConsumer(topic, **settings.common_kwargs(), auto_offset_reset="earliest",
                            enable_auto_commit=False, group_id=None)
    await cons.start()
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                for recs in (await cons.getmany(timeout_ms=300)).values():
                    return recs[0].value or b""
    finally:
        await cons.stop()


async def test_the_bridge_seals_a_tenants_payloads(stack: StackFactory,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIAAS_DATA_KEYS", key_file_json([new_key("acme", "acme-1")]))  # bridge and worker
    want = ort.InferenceSession(ONNX, providers=["CPUExecutionProvider"]).run(None, {"input": SEALED_X})[0]
    async with stack(webhook_attempts=1) as s:  # the stack's own key is tenant acme's
        resp = await s.infer(body(SEALED_X))
        assert resp.status_code == 200, resp.text
        out = resp.json()["outputs"][0]
        np.testing.assert_allclose(np.array(out["data"]).reshape(2, 3), want, rtol=1e-5)
        clear = await s.http.post(f"/v2/models/{MODEL}/infer", json=body(CLEAR_X),
                                  headers={"X-API-Key": await s.new_key("plain")})
        assert clear.status_code == 200, clear.text
        hooked = await s.infer(body(SEALED_X), params={"callback": "http://127.0.0.1:9/hook"})  # refused
        assert hooked.status_code == 202, hooked.text
        letter = json.loads(await first_record(s.settings, Topics(s.settings).dlq("webhooks").name))
        topics = [Topics(s.settings).infer_requests(MODEL).name, s.bridge.client.reply_topic]
    records = await raw_values(s.settings, topics)
    sealed_replies = [(v, hd) for t, v, hd in records if t == topics[1] and h.DATA_KEY in hd]
    mine = [(v, hd) for _, v, hd in records if hd.get(h.TENANT) == "acme"] + sealed_replies
    assert len(mine) >= 4 and all(hd[h.DATA_KEY] == "acme-1" and is_sealed(v) for v, hd in mine)  # 2 each way
    theirs = [v for _, v, hd in records if hd.get(h.TENANT) == "plain"]
    assert theirs and all(not is_sealed(v) for v in theirs)
    markers = (b"4321.5", SEALED_X.tobytes()[:8], want.astype(np.float32).tobytes()[:8])
    assert not any(m in v for m in markers for _, v, _ in records)
    assert any(b"8765.25" in v or CLEAR_X.tobytes()[:8] in v for v in theirs)  # a clear value is found
    kept = base64.b64decode(letter["value_b64"])
    assert letter["details"]["data_key"] == "acme-1" and is_sealed(kept)
    assert not any(m in kept for m in markers) and b"4321.5" not in json.dumps(letter).encode()
