"""Inference: exact results, batching, two workers, stream records, deadlines, bad input."""

from __future__ import annotations

import asyncio
import base64
import time

import numpy as np
import onnxruntime as ort
import pytest

from aiaas.client.inference import InferenceClient, InferenceError, InferResult, encode_request
from aiaas.registry.store import Registry
from aiaas.schemas.errors import NotFound
from aiaas.schemas.inference import InferenceRequest, InferenceResponse
from aiaas.streams import headers as h
from aiaas.streams import tensorcodec as tc
from aiaas.streams.consumer import Consumer
from aiaas.streams.producer import Producer
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics
from tests import examples
from tests.inferreads import dead_letters
from tests.workers import running_worker, until_balanced


@pytest.fixture(scope="module")
def digits() -> tuple[bytes, np.ndarray]:
    data, x, _ = examples.digits_mlp()
    return data, x[:64]


@pytest.fixture
def fast(settings: Settings) -> Settings:
    """Quicker group rebalances for tests that start several workers."""
    return settings.model_copy(update={"heartbeat_interval_ms": 300, "session_timeout_ms": 6000})


async def publish(settings: Settings, name: str, data: bytes, stage: str = "production") -> int:
    async with Registry(settings) as reg:
        return (await reg.publish(name, data, stage=stage)).version  # type: ignore[arg-type]


def direct(data: bytes, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, feeds)  # type: ignore[return-value]


@pytest.mark.parametrize("binary", [False, True])
async def test_digits_results_equal_onnxruntime(fast: Settings, digits: tuple[bytes, np.ndarray],
                                                binary: bool) -> None:
    data, x = digits
    await publish(fast, "digits", data)
    want = direct(data, {"input": x})[0]
    async with running_worker(fast, model="digits", max_wait_ms=5) as worker, InferenceClient(fast) as client:
        one = await client.infer("digits", {"input": x[:3]}, timeout=20, binary=binary)
        assert one.model_name == "digits" and one.model_version == "1"
        np.testing.assert_allclose(one.outputs["logits"], want[:3], rtol=1e-5, atol=1e-5)
        got: dict[int, InferResult] = {}
        rows = ({"input": x[i : i + 1]} for i in range(len(x)))
        async for i, r in client.infer_many("digits", rows, binary=binary, timeout=20):
            assert isinstance(r, InferResult), r
            got[i] = r
        out = np.concatenate([got[i].outputs["logits"] for i in range(len(x))])
        np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
        assert worker.sessions.calls < 1 + len(x)  # the pipelined requests were batched


async def test_multi_io_with_int64_and_bool(settings: Settings) -> None:
    data = examples.multi_io()
    await publish(settings, "multi", data)
    rng = np.random.default_rng(0)
    feeds = {"x": rng.normal(size=(5, 4)).astype(np.float32),
             "ids": rng.integers(-(2**40), 2**40, size=(5, 3)),
             "mask": rng.random((5, 3)) > 0.5}
    want = dict(zip(["y", "total", "inv"], direct(data, feeds), strict=True))
    async with running_worker(settings, model="multi"), InferenceClient(settings) as client:
        for binary in (False, True):
            r = await client.infer("multi", feeds, timeout=20, binary=binary)
            assert set(r.outputs) == {"y", "total", "inv"}
            for name, arr in want.items():
                assert r.outputs[name].dtype == arr.dtype
                np.testing.assert_array_equal(r.outputs[name], arr)
        only = await client.infer("multi", feeds, timeout=20, outputs=["total"])
        assert list(only.outputs) == ["total"]
        np.testing.assert_array_equal(only.outputs["total"], want["total"])


async def test_two_workers_both_serve_and_batch(fast: Settings, digits: tuple[bytes, np.ndarray]) -> None:
    data, x = digits
    await publish(fast, "digits", data)
    async with running_worker(fast, model="digits", weight=1) as w1, \
            running_worker(fast, model="digits", weight=1) as w2, InferenceClient(fast) as client:
        await until_balanced([w1, w2], 8)  # both members own partitions before the load starts
        n = 600
        rows = ({"input": x[i % len(x)][None]} for i in range(n))
        answered = 0
        async for _, r in client.infer_many("digits", rows, binary=True, window=300, timeout=30):
            assert isinstance(r, InferResult), r
            answered += 1
        assert answered == n
        assert w1.stats["replies"] > 0 and w2.stats["replies"] > 0
        assert w1.stats["replies"] + w2.stats["replies"] >= n
        calls = w1.sessions.calls + w2.sessions.calls
        assert calls < n / 2, f"{calls} onnxruntime calls for {n} requests"


async def test_stream_records_go_to_results_for_two_groups(settings: Settings) -> None:
    data = examples.mlp([4, 8, 2])
    await publish(settings, "chain", data)
    topics = Topics(settings)
    x = np.ones((1, 4), np.float32)
    async with running_worker(settings, model="chain"), Producer(settings) as prod:
        for i in range(3):
            enc = encode_request({"input": x * i}, request_id=f"s{i}")
            await prod.send_and_wait(topics.infer_requests("chain").name, enc.value, key=f"k{i}",
                                     headers=enc.headers)
        results = topics.infer_results("chain").name
        for group in ("dashboard", "next-model"):
            async with Consumer(settings, [results], group) as cons:
                got: dict[bytes, np.ndarray] = {}
                async with asyncio.timeout(30):
                    while len(got) < 3:
                        for rec in await cons.getmany(timeout_ms=200):
                            resp, arrays = tc.decode(rec.value, InferenceResponse, "outputs")
                            assert rec.key is not None and resp.id == f"s{rec.key.decode()[1:]}"
                            got[rec.key] = arrays["logits"]
                want = direct(data, {"input": np.concatenate([x * 0, x * 1, x * 2])})[0]
                for i in range(3):
                    np.testing.assert_allclose(got[f"k{i}".encode()], want[i : i + 1], rtol=1e-6)


async def test_deadline_is_honoured_without_compute(settings: Settings) -> None:
    await publish(settings, "dl", examples.mlp([4, 2]))
    async with running_worker(settings, model="dl") as worker, InferenceClient(settings) as client:
        await client.infer("dl", {"input": np.ones((1, 4), np.float32)}, timeout=20)
        calls = worker.sessions.calls
        past = str(int(time.time() * 1000) - 1000)
        with pytest.raises(InferenceError) as info:
            await client.infer("dl", {"input": np.ones((1, 4), np.float32)}, timeout=20,
                               headers={h.DEADLINE: past})
        assert info.value.status_code == 504 and "deadline" in info.value.reason
        assert worker.sessions.calls == calls and worker.stats["error_deadline_exceeded"] == 1


async def test_bad_input_gets_error_replies_and_dead_letters(settings: Settings) -> None:
    await publish(settings, "bad", examples.mlp([4, 2]))
    ok = np.ones((1, 4), np.float32)
    cases: dict[str, tuple[bytes, dict[str, str], int]] = {}

    def case(name: str, inputs: dict[str, np.ndarray], status: int, **hdrs: str) -> None:
        enc = encode_request(inputs, request_id=name)
        cases[name] = (enc.value, {**enc.headers, **hdrs}, status)

    case("shape", {"input": np.ones((1, 5), np.float32)}, 400)
    case("rank", {"input": np.ones((4,), np.float32)}, 400)
    case("dtype", {"input": np.ones((1, 4), np.float64)}, 400)
    case("name", {"inptu": ok}, 400)
    case("missing", {"input": ok, "extra": ok}, 400)
    case("version", {"input": ok}, 404, **{h.MODEL_VERSION: "99"})
    case("oversize", {"input": np.ones((2000, 4), np.float32)}, 413)
    cases["junk"] = (b"\x00\x01junk", {}, 400)
    cases["nested"] = (b"[" * 5000, {}, 400)  # json.loads: RecursionError, once a crash
    cases["digits"] = (ok.tobytes(), {"content-type": "application/octet-stream",
                                      "inference-header-content-length": "9" * 5000}, 400)
    cases["json"] = (b'{"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1]}]}',
                     {}, 400)
    binary = tc.encode_body(InferenceRequest.KIND, {"id": "binary"}, "inputs", {"input": ok}, binary=True)
    cases["binary"] = (binary.value, binary.headers, 400)  # the OIP binary extension is HTTP's, not Kafka's
    async with running_worker(settings, model="bad", max_request_bytes=16 * 1024) as worker, \
            InferenceClient(settings) as client:
        for name, (value, hdrs, status) in cases.items():
            reply = await client.request("bad", value, hdrs, request_id=name, timeout=20)
            assert not reply.ok, name
            err = reply.error()
            assert err.status_code == status and err.reason, (name, reply.value)
        with pytest.raises(InferenceError) as info:  # the same, raised by infer()
            await client.infer("bad", {"input": np.ones((1, 5), np.float32)}, timeout=20, request_id="raised")
        assert info.value.status_code == 400 and info.value.reason == "wrong shape"
        with pytest.raises(NotFound):
            await client.infer("no-such-model", {"input": ok}, timeout=5)
        good = await client.infer("bad", {"input": ok}, timeout=20)  # the worker is alive and well
        assert good.outputs["logits"].shape == (1, 2)
        assert worker.stats["replies"] == 1
    want = {*cases, "raised"}
    letters = await dead_letters(settings, "bad", len(want))
    by_id = {d.headers[h.CORRELATION_ID]: d for d in letters}
    assert set(by_id) == want
    assert all(d.source_topic.endswith("infer.bad.requests") and d.value_b64 for d in letters)
    assert by_id["junk"].code == "invalid_message" and by_id["version"].code == "not_found"
    assert by_id["oversize"].code == "too_large" and by_id["dtype"].reason == "wrong datatype"
    assert "application/json" in by_id["binary"].reason and by_id["binary"].code == "invalid_message"
    assert base64.b64decode(by_id["junk"].value_b64 or "") == b"\x00\x01junk"
