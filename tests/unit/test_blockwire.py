"""Request and reply blocks without a broker: the wire format (aiaas.streams.blockwire), reply blocks read
by the client (aiaas.streams.replywire), blocks in the worker (aiaas.agents.inference.blocks, the batcher's
grouping) and the client's packing of rows into block records (aiaas.client.tickbatches)."""

from __future__ import annotations

import asyncio
import json
import time
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from aiaas.agents.inference import blocks
from aiaas.agents.inference.batcher import Work, batch_signature, group
from aiaas.client.tickbatches import RowStream, TickBatches
from aiaas.schemas.errors import InvalidMessage
from aiaas.schemas.inference import InferenceRequest
from aiaas.streams import blockwire
from aiaas.streams import headers as h
from aiaas.streams import tensorcodec as tc
from aiaas.streams.blockwire import LENGTH, REPLIES, REQUESTS
from aiaas.streams.record import Record
from aiaas.streams.replywire import STATUS, unpack_block

NONE: frozenset[str] = frozenset()


def _hd(headers: list[tuple[str, bytes]]) -> dict[str, str]:
    return {k: v.decode() for k, v in headers}


def _requests(n: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"a": rng.normal(size=(1, 4)).astype(np.float32), "b": rng.integers(-9, 9, 2),
             "c": rng.integers(-100, 100, (1, 4)).astype(np.int8), "d": rng.normal(size=2).astype(np.float16)}
            for _ in range(n)]


def _stack(rows: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {name: np.stack([r[name] for r in rows]) for name in rows[0]}


@pytest.mark.parametrize("n", [1, 5])
def test_request_block_round_trip(n: int) -> None:
    rows, ids = _requests(n, n), [f"req-{i}" for i in range(n)]
    stacked = _stack(rows)
    value, headers = blockwire.encode(REQUESTS, {}, "inputs", ids, stacked)
    hd = _hd(headers)
    assert hd == {"content-type": REQUESTS, LENGTH: hd[LENGTH]} and blockwire.kind_of(hd) == REQUESTS
    head = json.loads(value[: int(hd[LENGTH])])
    assert [t["datatype"] for t in head["inputs"]] == ["FP32", "INT64", "INT8", "FP16"]
    block = blockwire.decode(value, hd, "inputs", NONE)
    assert block.ids == ids and block.head == {} and list(block.arrays) == ["a", "b", "c", "d"]
    for name, arr in block.arrays.items():
        assert arr.dtype == stacked[name].dtype and arr.shape == (n, *rows[0][name].shape)
        np.testing.assert_array_equal(arr, stacked[name])
    part = block.rows(np.array([n - 1, 0]))
    assert part.ids == [ids[-1], ids[0]]
    np.testing.assert_array_equal(part.arrays["b"], np.stack([rows[-1]["b"], rows[0]["b"]]))
    assert block.rows(slice(0, 1)).ids == ids[:1]
    assert blockwire.kind_of({"content-type": REPLIES}) == REPLIES
    assert blockwire.kind_of({"content-type": tc.BINARY}) is None and blockwire.kind_of({}) is None


T = {"name": "x", "datatype": "FP32", "shape": [2]}
TAIL = bytes(16)  # two requests of two FP32


def _head(**over: Any) -> bytes:
    """The head of a two-request block with ``over`` changed ("-": that key left out)."""
    head = {"ids": ["a", "b"], "inputs": [T], **over}
    return json.dumps({k: v for k, v in head.items() if v != "-"}).encode()


def _t(**over: Any) -> dict[str, Any]:
    return {k: v for k, v in {**T, **over}.items() if v != "-"}


AUTO = "auto"
BAD_LENGTH = "needs a valid inference-header-content-length"
NEEDS_IDS = "needs ids: a non-empty list of strings of 1 to 128"
EXACT = "tensors need exactly name, datatype and shape"
FIXED = "tensors need a fixed-size datatype"
SHAPE = "tensor shape must be a list of non-negative integers"


@pytest.mark.parametrize(("head", "tail", "length", "reason", "readable"), [
    (_head(), TAIL, None, BAD_LENGTH, False),
    (_head(), TAIL, "", BAD_LENGTH, False),
    (_head(), TAIL, "abc", BAD_LENGTH, False),
    (_head(), TAIL, "0", BAD_LENGTH, False),
    (_head(), TAIL, "\u00b2", BAD_LENGTH, False),  # isdigit() but not ASCII
    (_head(), TAIL, str(len(_head()) + 17), BAD_LENGTH, False),  # past the end
    (b"not json", TAIL, AUTO, "head is not JSON", False),
    (b"\xff\xfe{}", TAIL, AUTO, "head is not JSON", False),
    (b"[1, 2]", TAIL, AUTO, "head must be an object with ids and inputs", False),
    (_head(extra=1), TAIL, AUTO, "head must be an object with ids and inputs", True),  # ids still readable
    (_head(ids="-"), TAIL, AUTO, NEEDS_IDS, False),
    (_head(ids=[]), b"", AUTO, NEEDS_IDS, False),
    (_head(ids=["a", 2]), TAIL, AUTO, NEEDS_IDS, False),
    (_head(ids=["a", ""]), TAIL, AUTO, NEEDS_IDS, False),
    (_head(ids=["a", "b" * 129]), TAIL, AUTO, NEEDS_IDS, False),
    (_head(ids=["a", "a"]), TAIL, AUTO, "has duplicate ids", False),
    (_head(inputs="-"), TAIL, AUTO, "needs a non-empty inputs list", True),
    (_head(inputs=[]), TAIL, AUTO, "needs a non-empty inputs list", True),
    (_head(inputs=[_t(extra=1)]), TAIL, AUTO, EXACT, True),
    (_head(inputs=[_t(shape="-")]), TAIL, AUTO, EXACT, True),
    (_head(inputs=[_t(name=3)]), TAIL, AUTO, EXACT, True),
    (_head(inputs=[_t(datatype="BYTES")]), TAIL, AUTO, FIXED, True),
    (_head(inputs=[_t(datatype=5)]), TAIL, AUTO, FIXED, True),
    (_head(inputs=[_t(shape=[-1])]), TAIL, AUTO, SHAPE, True),
    (_head(inputs=[_t(shape=[2.0])]), TAIL, AUTO, SHAPE, True),
    (_head(inputs=[_t(shape=[True])]), TAIL, AUTO, SHAPE, True),
    (_head(inputs=[T, T]), TAIL * 2, AUTO, "names a tensor twice", True),
    (_head(), TAIL[:-1], AUTO, "is shorter than its tensors", True),
    (_head(), TAIL + b"x", AUTO, "has trailing bytes", True),
    (_head(inputs=[_t(datatype="BOOL")]), bytes([0, 1, 2, 0]), AUTO, "BOOL bytes other than 0 and 1", True),
])
def test_malformed_blocks_raise_invalid_message(head: bytes, tail: bytes, length: str | None, reason: str,
                                                readable: bool) -> None:
    for kind, what in ((REQUESTS, "request block "), (REPLIES, "reply block ")):
        hd = {"content-type": kind}
        if length is not None:
            hd[LENGTH] = str(len(head)) if length == AUTO else length
        with pytest.raises(InvalidMessage) as info:
            blockwire.decode(head + tail, hd, "inputs", NONE)
        assert reason in info.value.reason and info.value.reason.startswith(what)
        assert blockwire.ids_of(head + tail, hd) == (["a", "b"] if readable else [])


def test_no_value_details_and_good_edge_cases() -> None:
    with pytest.raises(InvalidMessage, match=r"^request block has no value$"):
        blockwire.decode(None, {"content-type": REQUESTS, LENGTH: "2"}, "inputs", NONE)
    assert blockwire.ids_of(None, {LENGTH: "2"}) == []
    with pytest.raises(InvalidMessage) as info:
        blockwire.decode(_head() + TAIL + b"xyz", {LENGTH: str(len(_head()))}, "inputs", NONE)
    assert info.value.reason == "block has trailing bytes" and info.value.details == {"extra": 3}
    with pytest.raises(InvalidMessage) as info:
        blockwire.decode(_head(extra=1) + TAIL, {LENGTH: str(len(_head(extra=1)))}, "inputs", NONE)
    assert info.value.details == {"allowed": ["ids", "inputs"]}
    head = _head(extra=1, ids=["a", "b" * 128], inputs=[_t(datatype="BOOL"), _t(name="e", shape=[0, 3])])
    block = blockwire.decode(head + bytes([1, 0, 0, 1]), {LENGTH: str(len(head))}, "inputs",
                             frozenset({"extra"}))
    assert block.head == {"extra": 1} and block.ids == ["a", "b" * 128]
    assert block.arrays["e"].shape == (2, 0, 3)
    np.testing.assert_array_equal(block.arrays["x"], [[True, False], [False, True]])


_NESTED = b"[" * 100_000
_HUGE_DIM = json.dumps({"ids": ["a"], "inputs": [_t(shape=[0, 10**30])]}).encode()


_OVERFLOW = json.dumps({"ids": ["a"], "inputs": [_t(shape=[0, 2**30, 2**30, 2**30])]}).encode()


@pytest.mark.parametrize(("value", "length"), [  # each once escaped as ValueError or RecursionError
    (_head() + TAIL, "9" * 5000),  # int() refuses over 4300 digits
    (_NESTED, str(len(_NESTED))),  # json.loads: RecursionError
    (_HUGE_DIM, str(len(_HUGE_DIM))),  # zero elements, so no byte check; then reshape refuses
    (_OVERFLOW, str(len(_OVERFLOW))),  # every dimension allowed, their product overflows
])
def test_hostile_blocks_raise_invalid_message(value: bytes, length: str) -> None:
    with pytest.raises(InvalidMessage):
        blockwire.decode(value, {"content-type": REQUESTS, LENGTH: length}, "inputs", NONE)


@pytest.mark.parametrize(("dtype", "ok"), [
    (np.float32, True), (np.int64, True), (np.uint8, True), (np.float16, True),
    (np.bool_, False), (object, False), (">f4", False), (">i8", False), ("<f4", True),
])
def test_blockable(dtype: Any, ok: bool) -> None:
    assert blockwire.blockable(np.zeros((2, 3), dtype)) is ok


# --------------------------------------------------------------------------- the worker's blocks

MODEL: Any = SimpleNamespace(version=3)
SHARED = {h.REPLY_TO: "replies", blockwire.ACCEPT: "1", h.DEADLINE: "99", h.MODEL_VERSION: "3"}


def _block_work(ids: list[str], per: int | None, headers: dict[str, str] | None = None, seed: int = 0,
                width: int = 4) -> Work:
    """A block's Work as the intake builds it (signature of one request's inputs)."""
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {"x": rng.normal(size=(len(ids), per or 1, width)).astype(np.float32),
                                     "k": rng.integers(0, 9, (len(ids), per or 1, 3))}
    hd = {**SHARED, "content-type": REQUESTS, LENGTH: "10", **(headers or {})}
    rec = Record("t.requests", 2, 40, ids[0].encode(), b"", hd, 1234, 40)
    sig = batch_signature({n: a[0] for n, a in arrays.items()})
    return blocks.block_work(rec, ids, arrays, MODEL, per, sig)


def _outputs(w: Work, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    rows = w.rows or 0
    return {"y": rng.normal(size=(rows, 5)).astype(np.float32), "z": rng.integers(0, 9, rows)}


@pytest.mark.parametrize("tenant", [None, "acme"])
def test_reply_block_round_trips_to_replies(tenant: str | None) -> None:
    extra = {h.TENANT: tenant} if tenant else {}
    works = [_block_work(["a0", "a1"], 2, extra, 1), _block_work(["b0", "b1", "b2"], 2, extra, 2)]
    results = [_outputs(w, i) for i, w in enumerate(works)]
    assert blocks.reply_key(works[0], results[0]) == blocks.reply_key(works[1], results[1])
    assert all(blocks.accepts_blocks(w) and blocks.blockable(r) for w, r in zip(works, results, strict=True))
    value, headers = blocks.reply_block("m", 3, works, results)
    hd = _hd(headers)
    assert hd[STATUS] == "200" and hd["content-type"] == REPLIES and hd.get(h.TENANT) == tenant
    replies = unpack_block(value, hd)
    assert [r.request_id for r in replies] == ["a0", "a1", "b0", "b1", "b2"]
    per_request = [row for w, r in zip(works, results, strict=True) for row in blocks.row_results(w, r)]
    for reply, want in zip(replies, per_request, strict=True):
        res = reply.result()
        assert reply.ok and reply.value == b"" and (res.id, res.model_name, res.model_version) == (
            reply.request_id, "m", "3")
        assert set(res.outputs) == {"y", "z"}
        for name in want:
            assert res.outputs[name].shape == (2, *want[name].shape[1:])
            np.testing.assert_array_equal(res.outputs[name], want[name])


def test_reply_blocks_without_status_or_model_name_are_refused() -> None:
    stacked = {"y": np.zeros((2, 1, 3), np.float32)}
    head: dict[str, Any] = {"model_name": "m", "model_version": "1"}
    value, kind = blockwire.encode(REPLIES, head, "outputs", ["a", "b"], stacked)
    assert len(unpack_block(value, {**_hd(kind), STATUS: "200"})) == 2
    for status in ({}, {STATUS: "500"}):
        with pytest.raises(InvalidMessage, match="status-code 200"):
            unpack_block(value, {**_hd(kind), **status})
    for head in ({"model_version": "1"}, {"model_name": 7}, {"model_name": "m", "model_version": 1}):
        value, kind = blockwire.encode(REPLIES, head, "outputs", ["a", "b"], stacked)
        with pytest.raises(InvalidMessage, match="model_name"):
            unpack_block(value, {**_hd(kind), STATUS: "200"})


def test_accepts_blocks_needs_a_reply_topic_and_the_header() -> None:
    assert not blocks.accepts_blocks(_block_work(["a"], 1, {blockwire.ACCEPT: "0"}))
    w = _block_work(["a"], 1)
    w.reply_to = None
    assert not blocks.accepts_blocks(w)
    assert not blocks.blockable({"y": np.zeros(2, bool)})


@pytest.mark.parametrize("per", [2, None])
def test_explode_gives_the_single_requests(per: int | None) -> None:
    ids = ["r0", "r1", "r2"]
    w = _block_work(ids, per, {h.TENANT: "acme"})
    assert w.count == 3 and w.rows == (None if per is None else 6)
    parts = blocks.explode(w)
    assert [p.request_id for p in parts] == ids
    for k, (rid, p) in enumerate(zip(ids, parts, strict=True)):
        rows = w.inputs["x"].shape[0] // 3 if per else None
        assert p.rows == rows and p.ids is None and p.count == 1 and p.response_id == rid
        assert (p.reply_to, p.model, p.sig, p.binary) == ("replies", MODEL, w.sig, True)
        want = {n: a[k * per:(k + 1) * per] for n, a in w.inputs.items()} if per else \
            {n: a[k] for n, a in w.inputs.items()}
        r = p.record
        assert (r.topic, r.partition, r.offset, r.timestamp_ms, r.first_offset, r.key) == (
            "t.requests", 2, 40, 1234, 40, rid.encode())
        assert r.headers[h.CORRELATION_ID] == rid and r.headers["content-type"] == tc.BINARY
        assert blockwire.ACCEPT not in r.headers and r.headers[h.TENANT] == "acme"
        assert {k: r.headers[k] for k in (h.REPLY_TO, h.DEADLINE, h.MODEL_VERSION)} == {
            k: SHARED[k] for k in (h.REPLY_TO, h.DEADLINE, h.MODEL_VERSION)}
        msg, arrays = tc.decode(r.value, r.headers, InferenceRequest, "inputs")
        assert msg.id == rid and list(arrays) == list(want)
        for name in want:
            assert arrays[name].dtype == want[name].dtype
            np.testing.assert_array_equal(arrays[name], want[name])
            np.testing.assert_array_equal(p.inputs[name], want[name])


def test_row_results_split_outputs_per_request() -> None:
    w = _block_work(["r0", "r1", "r2"], 2)
    out = _outputs(w, 5)
    parts = blocks.row_results(w, out)
    assert len(parts) == 3
    for k, part in enumerate(parts):
        np.testing.assert_array_equal(part["y"], out["y"][2 * k:2 * k + 2])
        np.testing.assert_array_equal(part["z"], out["z"][2 * k:2 * k + 2])


def test_group_counts_a_blocks_requests() -> None:
    bl = [_block_work([f"b{i}-{j}" for j in range(32)], 1, seed=i) for i in range(4)]
    assert [len(g) for g in group(bl, 64)] == [2, 2]
    big = _block_work([f"big{j}" for j in range(100)], 1)
    assert [[len(g), g[0] is big] for g in group([big, *bl[:2]], 64)] == [[1, True], [2, False]]
    assert [[w.count for w in g] for g in group([bl[0], big, bl[1]], 64)] == [[32], [100], [32]]
    single = Work(bl[0].record, "s", None, True, {"x": np.zeros((1, 4), np.float32)}, MODEL, 1)
    other = _block_work(["o1", "o2"], 3, width=8)  # another signature
    assert other.sig != bl[0].sig and single.group_key() != bl[0].group_key()
    groups = group([bl[0], single, other, bl[1], single, bl[2]], 64)
    assert [[w.count for w in g] for g in groups] == [[32, 32], [1, 1], [2], [32]]
    alike = Work(bl[0].record, "s", None, True, {"x": np.zeros((2, 4), np.float32),
                                                   "k": np.zeros((2, 3), np.int64)}, MODEL, 2)
    assert alike.group_key() == bl[0].group_key()  # a single request of the same layout joins a block
    assert [[w.count for w in g] for g in group([bl[0], alike, bl[1]], 64)] == [[32, 1], [32]]


# --------------------------------------------------------------------------- the client's rows


class _Builder:
    def __init__(self) -> None:
        self.records: list[tuple[bytes | None, bytes, dict[str, str]]] = []
        self.closed = False

    def append(self, *, timestamp: int | None, key: bytes | None, value: bytes,
               headers: list[tuple[str, bytes]]) -> object:
        self.records.append((key, value, _hd(headers)))
        return object()

    def close(self) -> None:
        self.closed = True


class _Producer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, int, _Builder]] = []

    def create_batch(self) -> _Builder:
        return _Builder()

    async def send_batch(self, builder: _Builder, topic: str, *, partition: int) -> asyncio.Future[None]:
        assert builder.closed
        self.sent.append((topic, partition, builder))
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


SHARED_WIRE = ((h.REPLY_TO, b"replies"), (blockwire.ACCEPT, b"1"))


async def _send_rows(rows: list[tuple[str, dict[str, np.ndarray]]], streams: list[RowStream] | None = None,
                     **limits: int) -> list[dict[str, Any]]:
    producer, failed = _Producer(), list[list[str]]()
    tb = TickBatches(producer, lambda rids, exc: failed.append(rids), **limits)
    default = RowStream("t.requests", 4, SHARED_WIRE, 30.0, None)
    for i, (rid, arrays) in enumerate(rows):
        layout = tuple([(n, a.dtype, a.shape) for n, a in arrays.items()])
        tb.add_row(streams[i] if streams else default, layout, rid, arrays)
    await tb.drain()
    assert not failed and all(len(b.records) == 1 for _, _, b in producer.sent)
    out = []
    for topic, partition, b in producer.sent:
        key, value, hd = b.records[0]
        block = blockwire.decode(value, hd, "inputs", NONE)
        assert topic == "t.requests" and key == block.ids[0].encode() and hd["content-type"] == REQUESTS
        assert hd[h.REPLY_TO] == "replies" and hd[blockwire.ACCEPT] == "1"
        out.append({"partition": partition, "deadline": hd[h.DEADLINE], "block": block})
    return out


async def test_rows_become_request_block_records() -> None:
    reqs = _requests(40, 7)
    rows = [(f"r{i}", {n: r[n] for n in ("a", "b")}) for i, r in enumerate(reqs)]
    sent = await _send_rows(rows, pack_max=32)
    assert [len(s["block"].ids) for s in sent] == [32, 8]
    now_ms = time.time() * 1000
    deadlines = [int(s["deadline"]) for s in sent]  # the first row's: now + the 30 s timeout
    assert deadlines == sorted(deadlines) and all(now_ms + 29_000 < d <= now_ms + 30_000 for d in deadlines)
    assert sent[0]["partition"] != sent[1]["partition"]
    for s, part in zip(sent, (rows[:32], rows[32:]), strict=True):
        assert s["block"].ids == [rid for rid, _ in part]
        for name in ("a", "b"):
            np.testing.assert_array_equal(s["block"].arrays[name], np.stack([a[name] for _, a in part]))


async def test_rows_of_other_layouts_and_the_byte_limit() -> None:
    narrow, wide = np.ones((1, 4), np.float32), np.ones((1, 8), np.float32)
    sent = await _send_rows([(f"r{i}", {"a": narrow if i % 2 else wide}) for i in range(6)])
    assert sorted(s["block"].ids for s in sent) == [["r0", "r2", "r4"], ["r1", "r3", "r5"]]
    assert {s["block"].arrays["a"].shape for s in sent} == {(3, 1, 4), (3, 1, 8)}
    assert len({s["block"].arrays["a"].dtype for s in await _send_rows(
        [("f", {"a": narrow}), ("d", {"a": narrow.astype(np.float64)})])}) == 2
    sent = await _send_rows([(f"r{i}", {"a": narrow}) for i in range(10)], pack_bytes=64)  # 16 bytes a row
    assert [len(s["block"].ids) for s in sent] == [4, 4, 2]


async def test_rows_of_other_calls_go_in_other_blocks() -> None:
    x = np.ones((1, 4), np.float32)
    slow, fast = (RowStream("t.requests", 4, SHARED_WIRE, t, None) for t in (30.0, 1.0))
    pinned = RowStream("t.requests", 4, SHARED_WIRE, 30.0, "1234")  # an explicit deadline header
    sent = await _send_rows([(f"r{i}", {"a": x}) for i in range(6)],
                            streams=[slow, fast, slow, fast, pinned, pinned])
    by_ids = {tuple(s["block"].ids): s["deadline"] for s in sent}
    assert set(by_ids) == {("r0", "r2"), ("r1", "r3"), ("r4", "r5")}
    assert by_ids[("r4", "r5")] == "1234"  # kept as it is
    assert int(by_ids[("r1", "r3")]) < int(by_ids[("r0", "r2")])  # 1 s before 30 s: never the other's
