"""Entries of stacked rows (blocks) on the real broker (``aiaas.streams.frame``): a hand-built block is
checked once and answered with one entry of rows; a bad, late or malformed block gets an error reply
per request and (but for lateness) one dead letter holding the block; a block without ``reply-to``
is answered on the results topic; a request that fails in onnxruntime fails alone; a version pin
holds for the whole block; the worker keeps serving throughout."""

from __future__ import annotations

import asyncio
import base64
import time

import numpy as np
import onnxruntime as ort

from aiaas.client.inference import InferenceClient, InferenceError, InferResult
from aiaas.registry.store import Registry
from aiaas.streams import frame
from aiaas.streams import headers as h
from aiaas.streams.admin import ensure
from aiaas.streams.consumer import Consumer
from aiaas.streams.producer import Producer
from aiaas.streams.replywire import STATUS, replies_of
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


def block(ids: list[str], x: np.ndarray, *, deadline_s: float = 20.0,
          **extra: str) -> tuple[bytes, list[tuple[str, bytes]]]:
    """A frame of one block of ``ids`` (``x``: one row per id) with its record headers."""
    value, kind = frame.encode([frame.Entry(ids, {"input": x[:, None, :]}, rows=True)])
    deadline = str(int((time.time() + deadline_s) * 1000))
    return value, [*kind, (h.DEADLINE, deadline.encode()), *((k, v.encode()) for k, v in extra.items())]


async def test_blocks_are_answered_whole_and_bad_ones_per_request(settings: Settings) -> None:
    data = examples.mlp([4, 6, 3], seed=21)
    await publish(settings, "blk", data)
    topics = Topics(settings)
    reply_topic = topics.replies("blk-hand")
    await ensure(settings, [reply_topic])
    x = np.random.default_rng(7).normal(size=(3, 4)).astype(np.float32)
    to_me = {h.REPLY_TO: reply_topic.name}
    good = block(["g0", "g1", "g2"], x, **to_me)
    bad = block(["b0", "b1"], np.ones((2, 5), np.float32), **to_me)  # wrong shape
    late = block(["l0"], x[:1], deadline_s=-1.0, **to_me)
    broken_value, broken_kind = block(["m0", "m1"], x[:2], **to_me)  # trailing bytes: ids still readable
    junk = (b"{not json", [("content-type", frame.CONTENT_TYPE.encode()), (frame.LENGTH, b"9"),
                           (h.REPLY_TO, reply_topic.name.encode())])
    request_topic = topics.infer_requests("blk").name
    async with running_worker(settings, model="blk", max_wait_ms=20) as worker, Producer(settings) as prod, \
            InferenceClient(settings) as client:
        for key, (value, headers) in {"good": good, "bad": bad, "late": late,
                                      "broken": (broken_value + b"xx", broken_kind), "junk": junk}.items():
            await prod.send_and_wait(request_topic, value, key=key, headers=headers)
        ids = {"g0", "g1", "g2", "b0", "b1", "l0", "m0", "m1"}
        records: list[list[str]] = []
        got, kinds = await answers(settings, reply_topic.name, ids, records)
        dead = {d.key_b64: d for d in await dead_letters(settings, "blk", 3)}
        later = await client.infer("blk", {"input": x[:2]}, timeout=20, binary=True)  # still serving
        assert worker.stats["replies"] == 4 and worker.stats["error_bad_request"] == 2
        assert worker.stats["error_deadline_exceeded"] == 1 and worker.stats["error_invalid_message"] == 3
    np.testing.assert_allclose(later.outputs["logits"], direct(data, x[:2]), rtol=1e-5, atol=1e-6)
    want = direct(data, x)
    for i in range(3):
        result = got[f"g{i}"].result()
        assert result.id == f"g{i}" and result.model_version == "1"
        assert result.outputs["logits"].shape == (1, 3)
        np.testing.assert_allclose(result.outputs["logits"][0], want[i], rtol=1e-5, atol=1e-6)
    assert set(kinds) == {frame.CONTENT_TYPE}
    assert [r for r in records if "g0" in r or "g1" in r or "g2" in r] == [  # the good block's three
        next(r for r in records if "g0" in r)] and {"g1", "g2"} <= set(next(r for r in records if "g0" in r))
    for rid, (status, reason) in {"b0": (400, "wrong shape"), "b1": (400, "wrong shape"),
                                  "l0": (504, "deadline"), "m0": (400, "do not add up"),
                                  "m1": (400, "do not add up")}.items():
        assert got[rid].headers[STATUS] == str(status)
        assert reason in got[rid].error().reason
    assert set(dead) == {base64.b64encode(k).decode() for k in (b"bad", b"broken", b"junk")}  # not "late"
    letter = dead[base64.b64encode(b"bad").decode()]
    assert letter.reason == "wrong shape" and base64.b64decode(letter.value_b64 or "") == bad[0]
    assert letter.headers["content-type"] == frame.CONTENT_TYPE
    assert dead[base64.b64encode(b"junk").decode()].reason == "frame head is not JSON"
    broken = dead[base64.b64encode(b"broken").decode()]
    assert base64.b64decode(broken.value_b64 or "") == broken_value + b"xx"  # the whole record


async def test_blocks_are_answered_on_their_reply_topic_or_the_results_topic(settings: Settings) -> None:
    data = examples.mlp([4, 3], seed=22)
    await publish(settings, "per", data)
    topics = Topics(settings)
    reply_topic = topics.replies("per-hand")
    await ensure(settings, [reply_topic])
    x = np.random.default_rng(8).normal(size=(4, 4)).astype(np.float32)
    want = direct(data, x)
    request_topic = topics.infer_requests("per").name
    async with running_worker(settings, model="per", max_wait_ms=20), Producer(settings) as prod:
        value, headers = block(["p0", "p1"], x[:2], **{h.REPLY_TO: reply_topic.name})
        await prod.send_and_wait(request_topic, value, key="p", headers=headers)
        got, kinds = await answers(settings, reply_topic.name, {"p0", "p1"})
        value, headers = block(["s0", "s1"], x[2:])  # no reply-to: stream records
        await prod.send_and_wait(request_topic, value, key="s", headers=headers)
        results = topics.infer_results("per").name
        async with Consumer(settings, [results], None) as cons, asyncio.timeout(20):
            streamed = []
            while len(streamed) < 1:
                streamed += await cons.getmany(timeout_ms=200)
    assert kinds == [frame.CONTENT_TYPE]  # one reply frame for the block
    for i, rid in enumerate(("p0", "p1")):
        np.testing.assert_allclose(got[rid].result().outputs["logits"][0], want[i], rtol=1e-5, atol=1e-6)
    [rec] = streamed
    assert rec.key == b"s0" and frame.is_frame(rec.headers)
    answered = replies_of(rec.value, rec.headers)
    assert [r.request_id for r in answered] == ["s0", "s1"]
    for i, reply in enumerate(answered):
        np.testing.assert_allclose(reply.result().outputs["logits"][0], want[2 + i], rtol=1e-5, atol=1e-6)


def gather_model() -> bytes:
    """out[b, 1] = table[idx[b, 0]]: onnxruntime fails on an index out of range (a request that
    passes every check but fails in the model)."""
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "idx"], ["out"], axis=0)], "gather",
        [helper.make_tensor_value_info("idx", TensorProto.INT64, ["batch", 1])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 1])],
        [numpy_helper.from_array(np.array([10.0, 11.0, 12.0, 13.0], np.float32), "table")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    return bytes(model.SerializeToString())


async def test_a_request_that_fails_in_the_model_fails_alone_in_its_block(settings: Settings) -> None:
    await publish(settings, "gather", gather_model())
    idx = [[0], [3], [99], [1]]  # 99: out of range
    async with running_worker(settings, model="gather", max_wait_ms=20) as worker, \
            InferenceClient(settings) as client:
        got = {i: r async for i, r in client.infer_many(
            "gather", ({"idx": np.array([row], np.int64)} for row in idx), binary=True, timeout=20)}
        assert worker.stats["replies"] == 3 and worker.stats["error_bad_request"] == 1
    bad = got.pop(2)
    assert isinstance(bad, InferenceError) and bad.status_code == 400 and "model failed" in bad.reason
    assert {i: float(r.outputs["out"][0, 0]) for i, r in got.items()} == {0: 10.0, 1: 13.0, 3: 11.0}
    (letter,) = await dead_letters(settings, "gather", 1)  # that request alone, as a frame of one
    assert letter.headers[h.CORRELATION_ID] == bad.details["request_id"]
    assert letter.headers["content-type"] == frame.CONTENT_TYPE
    [entry] = frame.decode(base64.b64decode(letter.value_b64 or ""), letter.headers)
    assert entry.ids == [bad.details["request_id"]] and entry.tensors["idx"].tolist() == [[99]]


async def test_a_block_pinned_to_a_version_is_served_by_it(settings: Settings) -> None:
    old, new = examples.mlp([4, 3], seed=31), examples.mlp([4, 3], seed=32)
    await publish(settings, "pin", old)
    await publish(settings, "pin", new)  # version 2 serves by default
    x = np.random.default_rng(9).normal(size=(6, 1, 4)).astype(np.float32)
    async with running_worker(settings, model="pin", max_wait_ms=20), InferenceClient(settings) as client:
        pinned = [r async for _, r in client.infer_many("pin", ({"input": row} for row in x), binary=True,
                                                          version=1, timeout=20)]
        default = [r async for _, r in client.infer_many("pin", ({"input": row} for row in x), binary=True,
                                                           timeout=20)]
        missing = [r async for _, r in client.infer_many("pin", ({"input": row} for row in x[:2]),
                                                           binary=True, version=9, timeout=20)]
    assert all(isinstance(r, InferResult) and r.model_version == "1" for r in pinned)
    assert all(isinstance(r, InferResult) and r.model_version == "2" for r in default)
    assert all(isinstance(r, InferenceError) and r.status_code == 404 for r in missing)
    for data, results in ((old, pinned), (new, default)):
        want = direct(data, x[:, 0])
        got = np.concatenate([r.outputs["logits"] for r in results if isinstance(r, InferResult)])
        np.testing.assert_allclose(np.sort(got, axis=0), np.sort(want, axis=0), rtol=1e-5, atol=1e-6)
