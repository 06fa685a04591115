"""Reply frames on the real broker: the client gets one record per worker poll and splits it; one bad
request in it gets its own error entry while the others succeed; redelivered frames are deduplicated
by request id and junk ones dropped; OIP requests (the bridge's pass-through) get one record per
reply."""

from __future__ import annotations

import asyncio

import numpy as np
import onnxruntime as ort

from aiaas.client.inference import STATUS, InferenceClient, InferenceError, InferResult, encode_request
from aiaas.registry.store import Registry
from aiaas.streams import frame
from aiaas.streams import headers as h
from aiaas.streams.consumer import Consumer
from aiaas.streams.producer import Producer
from aiaas.streams.record import Record
from aiaas.streams.replywire import replies_of
from aiaas.streams.settings import Settings
from tests import examples
from tests.workers import running_worker


async def publish(settings: Settings, name: str, data: bytes) -> None:
    async with Registry(settings) as reg:
        await reg.publish(name, data, stage="production")


async def reply_records(settings: Settings, topic: str, replies: int) -> list[Record]:
    """Every record on a reply topic until they hold ``replies`` replies in all."""
    out: list[Record] = []

    def count() -> int:
        return sum(len(replies_of(r.value, r.headers)) if frame.is_frame(r.headers) else 1 for r in out)

    async with Consumer(settings, [topic], None) as cons:
        async with asyncio.timeout(20):
            while count() < replies:
                out += await cons.getmany(timeout_ms=200)
    return out


async def test_one_bad_request_in_a_reply_frame_does_not_affect_the_others(settings: Settings) -> None:
    model = examples.mlp([4, 8, 3], seed=2)
    await publish(settings, "mix", model)
    xs = np.random.default_rng(3).normal(size=(32, 1, 4)).astype(np.float32)
    items: list[dict[str, np.ndarray]] = [{"input": x} for x in xs]
    items[7] = {"input": np.ones((1, 5), np.float32)}  # wrong shape
    want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"input": xs[:, 0]})[0]
    async with running_worker(settings, model="mix", max_batch=64, max_wait_ms=500) as worker, \
            InferenceClient(settings) as client:
        got = {i: r async for i, r in client.infer_many("mix", items, window=64, binary=False, timeout=30)}
        assert client.in_flight == 0 and client.duplicates == 0
    bad = got.pop(7)
    assert isinstance(bad, InferenceError) and bad.status_code == 400 and bad.reason == "wrong shape"
    for i, r in got.items():
        assert isinstance(r, InferResult), (i, r)
        np.testing.assert_allclose(r.outputs["logits"][0], want[i], rtol=1e-5, atol=1e-6)
    assert worker.stats["replies"] == 31 and worker.stats["error_bad_request"] == 1
    records = await reply_records(settings, client.reply_topic, 32)
    assert all(frame.is_frame(r.headers) for r in records) and len(records) < 32
    batches = [replies_of(r.value, r.headers) for r in records]
    mixed = [b for b in batches if {x.headers[STATUS] for x in b} == {"200", "400"}]
    assert mixed, [[x.headers[STATUS] for x in b] for b in batches]  # the error shares a record with OKs
    assert all(x.headers[h.CORRELATION_ID] == x.request_id for b in batches for x in b)


async def test_redelivered_frames_are_deduplicated_and_junk_frames_dropped(settings: Settings) -> None:
    await publish(settings, "redo", examples.mlp([4, 3], seed=5))
    xs = np.ones((8, 1, 4), np.float32)
    async with running_worker(settings, model="redo", max_wait_ms=200), InferenceClient(settings) as client, \
            Producer(settings) as prod:
        first = [r async for _, r in client.infer_many("redo", ({"input": x} for x in xs), binary=True)]
        assert all(isinstance(r, InferResult) for r in first)
        records = await reply_records(settings, client.reply_topic, 8)
        for rec in records:  # the same frames again, as after a worker restart
            await prod.send_and_wait(client.reply_topic, rec.value or b"", headers=rec.headers)
        await prod.send_and_wait(client.reply_topic, b"[[{}, 99]]",  # malformed: dropped, counted
                                 headers={"content-type": rec.headers["content-type"],
                                          "inference-header-content-length": "10"})
        again = await client.infer("redo", {"input": xs[0]}, timeout=20, binary=True)  # after them
        assert again.outputs["logits"].shape == (1, 3)
        assert client.duplicates == 8 and client.malformed == 1 and client.in_flight == 0


async def test_oip_requests_get_one_record_per_reply(settings: Settings) -> None:
    await publish(settings, "single", examples.mlp([4, 3], seed=6))
    xs = np.ones((12, 1, 4), np.float32)
    async with running_worker(settings, model="single", max_wait_ms=200), InferenceClient(settings) as client:
        encoded = [(f"s{i}", encode_request({"input": x}, request_id=f"s{i}"))
                   for i, x in enumerate(xs)]
        got = await asyncio.gather(*(client.request("single", enc.value, enc.headers, request_id=rid,
                                                    timeout=20) for rid, enc in encoded))
        assert all(r.result().outputs["logits"].shape == (1, 3) for r in got)
    records = await reply_records(settings, client.reply_topic, 12)
    assert len(records) == 12 and not any(frame.is_frame(r.headers) for r in records)
    assert len({r.headers[h.CORRELATION_ID] for r in records}) == 12
    assert all(r.key == r.headers[h.CORRELATION_ID].encode() for r in records)
    assert [r.headers[h.CONTENT_TYPE] for r in records] == ["application/json"] * 12
