"""InferenceClient on the real broker: many concurrent callers on one instance, duplicates dropped,
timeouts, raw pass-through of OIP JSON (what the HTTP bridge does)."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import onnxruntime as ort
import pytest

from aiaas.client.inference import STATUS, InferenceClient, InferenceError, InferResult
from aiaas.registry.store import Registry
from aiaas.streams import headers as h
from aiaas.streams.admin import ensure
from aiaas.streams.producer import Producer
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics
from tests import examples
from tests.workers import running_worker


@pytest.fixture(scope="module")
def model() -> bytes:
    return examples.mlp([4, 16, 3], seed=4)


async def test_one_client_many_concurrent_callers(settings: Settings, model: bytes) -> None:
    async with Registry(settings) as reg:
        await reg.publish("cc", model)
    xs = np.random.default_rng(1).normal(size=(200, 1, 4)).astype(np.float32)
    want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"input": xs[:, 0]})[0]
    async with running_worker(settings, model="cc"), InferenceClient(settings, max_in_flight=64) as client:
        results = await asyncio.gather(*(
            client.infer("cc", {"input": xs[i]}, timeout=30, binary=i % 2 == 0) for i in range(len(xs))
        ))
        for i, r in enumerate(results):  # every caller got the reply to its own request
            np.testing.assert_allclose(r.outputs["logits"][0], want[i], rtol=1e-5, atol=1e-6)
        assert client.in_flight == 0


async def test_duplicate_replies_are_dropped_and_raw_json_passes_through(
    settings: Settings, model: bytes
) -> None:
    async with Registry(settings) as reg:
        await reg.publish("dup", model)
    tensor = {"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}
    body = {"id": "mine", "inputs": [tensor]}
    async with running_worker(settings, model="dup"), InferenceClient(settings) as client, \
            Producer(settings) as prod:
        reply = await client.request("dup", json.dumps(body).encode(), {"content-type": "application/json"},
                                     request_id="r-1", timeout=20)
        assert reply.ok and reply.headers[STATUS] == "200" and reply.headers[h.MODEL_VERSION] == "1"
        decoded = json.loads(reply.value)
        assert decoded["kind"] == "inference_response" and decoded["id"] == "mine"
        assert decoded["outputs"][0]["shape"] == [1, 3] and len(decoded["outputs"][0]["data"]) == 3
        # a second delivery of the same reply (as after a worker restart) is dropped, counted
        await prod.send_and_wait(client.reply_topic, reply.value, key="r-1",
                                 headers={h.CORRELATION_ID: "r-1", STATUS: "200"})
        again = await client.infer("dup", {"input": np.ones((1, 4), np.float32)}, timeout=20)
        assert again.model_version == "1"
        assert client.duplicates == 1  # it was on the reply topic before the second reply


async def test_no_worker_means_a_timeout_error(settings: Settings) -> None:
    await ensure(settings, [Topics(settings).infer_requests("idle")])
    async with InferenceClient(settings) as client:
        with pytest.raises(InferenceError) as info:
            await client.infer("idle", {"input": np.ones((1, 4), np.float32)}, timeout=0.5)
        assert info.value.status_code == 504 and info.value.retriable
        assert client.in_flight == 0


async def test_a_request_larger_than_a_producer_batch_is_sent_and_answered(settings: Settings) -> None:
    """Requests leave in per-tick record batches; ones bigger than a batch (256 KiB) still go, each
    in a batch of its own (a 400 KB input: ~2 MB as JSON, 400 KB binary, both sent in one tick)."""
    big = examples.mlp([100_000, 3], seed=5)
    async with Registry(settings) as reg:
        await reg.publish("big", big)
    x = np.random.default_rng(3).normal(size=(1, 100_000)).astype(np.float32)
    want = ort.InferenceSession(big, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    async with running_worker(settings, model="big"), InferenceClient(settings) as client:
        as_json, as_binary = await asyncio.gather(
            client.infer("big", {"input": x}, timeout=60, binary=False),
            client.infer("big", {"input": x}, timeout=60, binary=True))
        # infer_many packs requests, but not ones over half a pack's bytes: those go one per record
        many = [r async for _, r in client.infer_many("big", [{"input": x}] * 3, binary=True, timeout=60)]
    assert len(many) == 3
    for r in (as_json, as_binary, *many):
        assert isinstance(r, InferResult), r
        np.testing.assert_allclose(r.outputs["logits"], want, rtol=1e-4, atol=1e-5)
