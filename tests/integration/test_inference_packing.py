"""Frames on the real broker: ``infer_many`` packs many requests per frame (those of one layout as
rows of one entry; one per record with ``pack_requests=1``); in a hand-built frame every entry is
checked and answered on its own (a bad one gets an error reply and a dead letter holding that entry,
an expired one a 504, the others results); a malformed frame goes to the dead letters whole; the
worker keeps serving throughout."""

from __future__ import annotations

import asyncio
import base64
import time

import numpy as np
import onnxruntime as ort
from aiokafka.structs import TopicPartition

from aiaas.agents.inference.intake import unpack
from aiaas.client.inference import InferenceClient, InferResult
from aiaas.registry.store import Registry
from aiaas.schemas.records import DeadLetter
from aiaas.streams import frame
from aiaas.streams import headers as h
from aiaas.streams.admin import Admin, ensure
from aiaas.streams.consumer import Consumer
from aiaas.streams.producer import Producer
from aiaas.streams.record import Record
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics
from tests import examples
from tests.inferreads import answers, dead_letters
from tests.workers import running_worker


async def publish(settings: Settings, name: str, data: bytes) -> None:
    async with Registry(settings) as reg:
        await reg.publish(name, data, stage="production")


def direct(data: bytes, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]  # type: ignore[no-any-return]


async def every_record(settings: Settings, topic: str) -> list[Record]:
    """All records a topic holds now (read from the start up to its end offsets)."""
    async with Admin(settings) as admin:
        tps = [TopicPartition(topic, p) for p in range(await admin.partitions(topic))]
    out: list[Record] = []
    async with Consumer(settings, [topic], None) as cons:
        want = sum((await cons.raw.end_offsets(tps)).values())
        async with asyncio.timeout(20):
            while len(out) < want:
                out += await cons.getmany(timeout_ms=200)
    assert len(out) == want
    return out


async def test_infer_many_packs_requests_into_fewer_records(settings: Settings) -> None:
    data = examples.mlp([4, 8, 3], seed=11)
    await publish(settings, "packed", data)
    topic = Topics(settings).infer_requests("packed").name
    x = np.random.default_rng(4).normal(size=(96, 4)).astype(np.float32)
    want = direct(data, x)
    async with running_worker(settings, model="packed", max_batch=64, max_wait_ms=20) as worker:
        async with InferenceClient(settings) as client:  # frames of rows
            got = {i: r async for i, r in client.infer_many(
                "packed", ({"input": x[i : i + 1]} for i in range(64)), binary=False, timeout=20)}
        packed = await every_record(settings, topic)
        async with InferenceClient(settings, pack_requests=1) as client:
            got |= {64 + i: r async for i, r in client.infer_many(
                "packed", ({"input": x[i : i + 1]} for i in range(64, 80)), binary=False, timeout=20)}
        after_singles = await every_record(settings, topic)
        async with InferenceClient(settings) as client:  # binary: the same
            got |= {80 + i: r async for i, r in client.infer_many(
                "packed", ({"input": x[i : i + 1]} for i in range(80, 96)), binary=True, timeout=20)}
        assert worker.stats["replies"] == 96
    assert sorted(got) == list(range(96))
    for i, r in got.items():
        assert isinstance(r, InferResult), (i, r)
        np.testing.assert_allclose(r.outputs["logits"][0], want[i], rtol=1e-5, atol=1e-6)
        assert r.outputs["logits"].shape == (1, 3) and r.model_version == "1"
    def ids_in(rec: Record) -> list[str]:
        return [i for r in unpack(rec) for i in r.message.ids]

    sizes = [len(ids_in(r)) for r in packed]
    assert all(frame.is_frame(r.headers) for r in packed)
    assert sum(sizes) == 64 and len(packed) < 64 and max(sizes) <= 32, sizes
    def place(rec: Record) -> tuple[int, int]:
        return rec.partition, rec.offset

    seen = {place(r) for r in packed}
    singles = [r for r in after_singles if place(r) not in seen]
    assert len(after_singles) == len(packed) + 16 and all(len(ids_in(r)) == 1 for r in singles)
    assert len({ids_in(r)[0] for r in singles}) == 16
    seen |= {place(r) for r in after_singles}
    blocks = [r for r in await every_record(settings, topic) if place(r) not in seen]
    ids = [i for r in blocks for i in ids_in(r)]
    assert len(ids) == len(set(ids)) == 16 and len(blocks) < 16
    assert all(e.rows for r in blocks for e in frame.decode(r.value, r.headers))


def _entry(rid: str, x: np.ndarray, *, deadline_s: float = 20.0, **fields: object) -> frame.Entry:
    deadline = str(int((time.time() + deadline_s) * 1000))
    return frame.Entry([rid], {"input": x}, {h.DEADLINE: deadline}, dict(fields))


async def test_entries_of_a_hand_built_frame_are_answered_one_by_one(settings: Settings) -> None:
    data = examples.mlp([4, 3], seed=12)
    await publish(settings, "hand", data)
    topics = Topics(settings)
    reply_topic = topics.replies("hand-built")
    await ensure(settings, [reply_topic])
    x = np.random.default_rng(5).normal(size=(3, 4)).astype(np.float32)
    entries = {
        "ok0": _entry("ok0", x[0:1]),
        "bad": _entry("bad", np.ones((1, 5), np.float32)),  # wrong shape
        "ok1": _entry("ok1", x[1:2], outputs=[{"name": "logits"}]),
        "late": _entry("late", x[0:1], deadline_s=-1.0),  # its deadline has passed
        "ok2": _entry("ok2", x[2:3]),
    }
    entries["odd"] = _entry("odd", x[0:1], outputs="logits")  # fields of the wrong type
    value, kind = frame.encode(list(entries.values()))
    shared = [(h.REPLY_TO, reply_topic.name.encode())]
    async with running_worker(settings, model="hand", max_wait_ms=20) as worker, Producer(settings) as prod, \
            InferenceClient(settings) as client:
        meta = await prod.send_and_wait(topics.infer_requests("hand").name, value, key="hand",
                                        headers=[*shared, *kind])
        got, _ = await answers(settings, reply_topic.name, set(entries))
        later = await client.infer("hand", {"input": x[:2]}, timeout=20, binary=True)  # still serving
        np.testing.assert_allclose(later.outputs["logits"], direct(data, x[:2]), rtol=1e-5, atol=1e-6)
        assert worker.stats["error_bad_request"] == 1 and worker.stats["error_deadline_exceeded"] == 1
        assert worker.stats["error_invalid_message"] == 1 and worker.stats["replies"] == 4
    want = direct(data, x)
    for i in range(3):
        result = got[f"ok{i}"].result()
        assert result.id == f"ok{i}"
        np.testing.assert_allclose(result.outputs["logits"][0], want[i], rtol=1e-5, atol=1e-6)
    errors = {rid: got[rid].error() for rid in ("bad", "late", "odd")}
    assert errors["bad"].status_code == 400 and errors["bad"].reason == "wrong shape"
    assert errors["late"].status_code == 504 and "deadline" in errors["late"].reason
    assert errors["odd"].status_code == 400 and "outputs a list" in errors["odd"].reason
    # every reply is in, so every dead letter is (a worker writes the letter before the error reply)
    dlq = await every_record(settings, topics.infer_dlq("hand").name)
    letters = {d.headers[h.CORRELATION_ID]: d for d in (DeadLetter.from_record(r.value) for r in dlq)}
    assert len(dlq) == 2 and set(letters) == {"bad", "odd"}  # an expired request is not dead-lettered
    bad = letters["bad"]
    assert bad.reason == "wrong shape" and bad.code == "bad_request"
    [held] = frame.decode(base64.b64decode(bad.value_b64 or ""), bad.headers)  # that entry, not the frame
    assert held.ids == ["bad"] and held.headers == entries["bad"].headers
    np.testing.assert_array_equal(held.tensors["input"], entries["bad"].tensors["input"])
    assert (bad.source_topic, bad.source_partition, bad.source_offset) == (meta.topic, meta.partition,
                                                                          meta.offset)
    assert bad.headers[h.REPLY_TO] == reply_topic.name and frame.is_frame(bad.headers)


async def test_a_malformed_frame_goes_to_the_dead_letters_whole(settings: Settings) -> None:
    """... and so does a frame of a newer wire-version, whose requests get an error reply saying so."""
    await publish(settings, "junk", examples.mlp([4, 2], seed=13))
    topic = Topics(settings).infer_requests("junk").name
    past_end = (b'{"entries":[{"id":"x","tensors":[{"name":"input","datatype":"FP32","shape":[1,4],'
                b'"offset":0,"length":99}]}]}')
    junk = {"not-json": (b"{junk index}...", "12"), "past-end": (past_end, str(len(past_end)))}
    async with running_worker(settings, model="junk") as worker, Producer(settings) as prod, \
            InferenceClient(settings) as client:
        for key, (value, length) in junk.items():
            await prod.send_and_wait(topic, value, key=key, headers=[
                ("content-type", frame.CONTENT_TYPE.encode()), (frame.LENGTH, length.encode()),
                (h.REPLY_TO, client.reply_topic.encode())])
        rid = client.new_id()
        future = await client.waiting.add(rid, 20)
        value, kind = frame.encode([frame.Entry([rid], {"input": np.ones((1, 4), np.float32)})])
        newer = [(k, b"2" if k == h.WIRE_VERSION else v) for k, v in kind]
        await prod.send_and_wait(topic, value, key="newer", headers=[*newer, (h.REPLY_TO,
                                                                              client.reply_topic.encode())])
        refused = (await future).error()
        assert refused.status_code == 400 and "unsupported wire-version" in refused.reason
        assert refused.details["got"] == "2"
        letters = {d.key_b64: d for d in await dead_letters(settings, "junk", 3)}
        ok = await client.infer("junk", {"input": np.ones((1, 4), np.float32)}, timeout=20)  # still serving
        assert ok.outputs["logits"].shape == (1, 2)
        assert worker.stats["error_invalid_message"] == 3 and worker.stats["replies"] == 1
    newer_letter = letters[base64.b64encode(b"newer").decode()]
    assert base64.b64decode(newer_letter.value_b64 or "") == value
    assert newer_letter.headers[h.WIRE_VERSION] == "2"
    assert newer_letter.reason.startswith("unsupported wire-version")
    for key, (value, _) in junk.items():
        letter = letters[base64.b64encode(key.encode()).decode()]
        assert letter.code == "invalid_message" and letter.source_topic == topic
        assert base64.b64decode(letter.value_b64 or "") == value  # the whole record
        assert letter.headers["content-type"] == frame.CONTENT_TYPE
    assert letters[base64.b64encode(b"not-json").decode()].reason == "frame head is not JSON"
    assert letters[base64.b64encode(b"past-end").decode()].reason == "tensor bytes lie outside the frame"
