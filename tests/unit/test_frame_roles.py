"""Frames in the client and the worker, without a broker: the worker's split of a frame into requests
(aiaas.agents.inference.intake.unpack), entries of stacked rows in the worker (aiaas.agents.inference.
blocks, the batcher's grouping), reply frames read by the client (aiaas.streams.replywire), and the
client's packing of requests and rows into frames (aiaas.client.tickbatches)."""

from __future__ import annotations

import asyncio
import json
import time
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from aiaas.agents.inference import blocks, replies
from aiaas.agents.inference.batcher import Work, batch_signature, group
from aiaas.agents.inference.intake import unpack, whole
from aiaas.client.tickbatches import Stream, TickBatches, layout_of
from aiaas.schemas.errors import AiaasError, ErrorCode, InvalidMessage
from aiaas.streams import frame
from aiaas.streams import headers as h
from aiaas.streams.record import Record
from aiaas.streams.replywire import replies_of


def _hd(headers: list[tuple[str, bytes]]) -> dict[str, str]:
    return {k: v.decode() for k, v in headers}


def _requests(n: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"a": rng.normal(size=(1, 4)).astype(np.float32), "b": rng.integers(-9, 9, 2),
             "c": rng.integers(-100, 100, (1, 4)).astype(np.int8), "d": rng.normal(size=2).astype(np.float16)}
            for _ in range(n)]


# --------------------------------------------------------------------------- the worker's split


def test_intake_splits_a_frame_into_requests() -> None:
    entries = [frame.Entry([f"r{i}"], {"input": np.full((rows, 4), i, np.float32)},
                           {h.DEADLINE: str(1000 + i)}) for i, rows in enumerate([1, 3, 2])]
    entries[1].headers[h.REPLY_TO] = "own-topic"  # an entry's header overrides the shared one
    entries.append(frame.Entry(["s0", "s1"], {"input": np.zeros((2, 1, 4), np.float32)}, rows=True))
    value, kind = frame.encode(entries)
    shared = {h.REPLY_TO: "shared-topic", h.MODEL_VERSION: "2"}
    rec = Record("t.infer.m.requests", 5, 42, b"r0", value, {**shared, **_hd(kind)}, 1234, 41)
    requests = unpack(rec)
    assert [r.key for r in requests] == [b"r0", b"r1", b"r2", b"r0"]  # rows keep the record's key
    for r, e in zip(requests, entries, strict=True):
        assert (r.topic, r.partition, r.offset, r.timestamp_ms, r.first_offset) == (
            "t.infer.m.requests", 5, 42, 1234, 41)
        assert r.value is None and isinstance(r.message, frame.Entry) and r.message.ids == e.ids
        assert r.headers == {**shared, h.CONTENT_TYPE: frame.CONTENT_TYPE, **e.headers,
                             h.CORRELATION_ID: e.ids[0]}
        np.testing.assert_array_equal(r.message.tensors["input"], e.tensors["input"])
    assert requests[0].headers[h.REPLY_TO] == "shared-topic"
    assert requests[1].headers[h.REPLY_TO] == "own-topic"
    assert requests[3].message.rows and requests[3].message.ids == ["s0", "s1"]
    kept = whole(requests[1])  # what a dead letter holds: that entry alone, as a frame
    [back] = frame.decode(kept.value, kept.headers)
    assert back.ids == ["r1"] and back.headers == entries[1].headers
    assert kept.headers[h.REPLY_TO] == "own-topic"
    np.testing.assert_array_equal(back.tensors["input"], entries[1].tensors["input"])
    with pytest.raises(InvalidMessage, match="wire-version"):
        unpack(Record("t", 0, 0, None, value, {**_hd(kind), h.WIRE_VERSION: "9"}))


# --------------------------------------------------------------------------- the worker's blocks

MODEL: Any = SimpleNamespace(version=3)
SHARED = {h.REPLY_TO: "replies", h.DEADLINE: "99", h.MODEL_VERSION: "3"}


def _block_work(ids: list[str], per: int | None, headers: dict[str, str] | None = None, seed: int = 0,
                width: int = 4) -> Work:
    """A block's Work as the intake builds it (signature of one request's inputs)."""
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {"x": rng.normal(size=(len(ids), per or 1, width)).astype(np.float32),
                                     "k": rng.integers(0, 9, (len(ids), per or 1, 3))}
    hd = {**SHARED, "content-type": frame.CONTENT_TYPE, **(headers or {})}
    rec = Record("t.requests", 2, 40, ids[0].encode(), None, hd, 1234, 40,
                 frame.Entry(ids, arrays, rows=True))
    sig = batch_signature({n: a[0] for n, a in arrays.items()})
    return blocks.block_work(rec, ids, arrays, MODEL, per, sig)


def _outputs(w: Work, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    rows = w.rows or 0
    return {"y": rng.normal(size=(rows, 5)).astype(np.float32), "z": rng.integers(0, 9, rows)}


@pytest.mark.parametrize("tenant", [None, "acme"])
def test_a_blocks_reply_entry_round_trips_to_replies(tenant: str | None) -> None:
    extra = {h.TENANT: tenant} if tenant else {}
    works = [_block_work(["a0", "a1"], 2, extra, 1), _block_work(["b0", "b1", "b2"], 2, extra, 2)]
    results = [_outputs(w, i) for i, w in enumerate(works)]
    entries = [replies.ok_entry("m", 3, w.ids or [], blocks.stacked(w, r), w.record.headers, rows=True)
               for w, r in zip(works, results, strict=True)]
    value, headers = frame.encode(entries)
    got = replies_of(value, _hd(headers))
    assert [r.request_id for r in got] == ["a0", "a1", "b0", "b1", "b2"]
    per_request = [row for w, r in zip(works, results, strict=True) for row in blocks.rows_of(w, r)]
    for reply, want in zip(got, per_request, strict=True):
        res = reply.result()
        assert reply.ok and reply.value == b"" and (res.id, res.model_name, res.model_version) == (
            reply.request_id, "m", "3")
        assert reply.headers[h.STATUS_CODE] == "200" and reply.headers.get(h.TENANT) == tenant
        assert set(res.outputs) == {"y", "z"}
        for name in want:
            assert res.outputs[name].shape == (2, *want[name].shape[1:])
            np.testing.assert_array_equal(res.outputs[name], want[name])


def test_reply_entries_without_status_model_name_or_error_are_refused() -> None:
    rows = {"y": np.zeros((2, 1, 3), np.float32)}
    ok = {"status": 200, "model_name": "m", "model_version": "1"}
    value, kind = frame.encode([frame.Entry(["a", "b"], rows, fields=ok, rows=True)])
    assert len(replies_of(value, _hd(kind))) == 2
    for fields in ({"model_version": "1", "status": 200}, {**ok, "model_name": 7},
                   {**ok, "model_version": 1}):
        value, kind = frame.encode([frame.Entry(["a", "b"], rows, fields=fields, rows=True)])
        with pytest.raises(InvalidMessage, match="model_name"):
            replies_of(value, _hd(kind))
    for fields in ({}, {"status": 500}, {"status": "400", "error": {}}, {**ok, "status": 404}):
        value, kind = frame.encode([frame.Entry(["a"], {}, fields=fields)])
        with pytest.raises(InvalidMessage, match="an error status and an error"):
            replies_of(value, _hd(kind))
    failure = AiaasError("no such", code=ErrorCode.NOT_FOUND, x=1)
    err = replies.error_entry("m", "e1", failure, {h.TENANT: "t"})
    value, kind = frame.encode([err])
    [reply] = replies_of(value, _hd(kind))
    assert not reply.ok and reply.headers[h.TENANT] == "t" and reply.headers[h.STATUS_CODE] == "404"
    exc = reply.error()
    assert exc.status_code == 404 and exc.reason == "no such" and exc.details["x"] == 1
    assert exc.details["request_id"] == "e1" and exc.details["model"] == "m"


@pytest.mark.parametrize("per", [2, None])
def test_explode_gives_the_single_requests(per: int | None) -> None:
    ids = ["r0", "r1", "r2"]
    w = _block_work(ids, per, {h.TENANT: "acme"})
    assert w.count == 3 and w.rows == (None if per is None else 6)
    parts = blocks.explode(w)
    assert [p.request_id for p in parts] == ids
    for k, (rid, p) in enumerate(zip(ids, parts, strict=True)):
        rows = w.inputs["x"].shape[0] // 3 if per else None
        assert p.rows == rows and p.ids == [rid] and p.count == 1
        assert (p.reply_to, p.model, p.sig) == ("replies", MODEL, w.sig)
        want = {n: a[k * per:(k + 1) * per] for n, a in w.inputs.items()} if per else \
            {n: a[k] for n, a in w.inputs.items()}
        r = p.record
        assert (r.topic, r.partition, r.offset, r.timestamp_ms, r.first_offset, r.key) == (
            "t.requests", 2, 40, 1234, 40, rid.encode())
        assert r.headers[h.CORRELATION_ID] == rid and frame.is_frame(r.headers)
        assert r.headers[h.TENANT] == "acme"
        assert {k: r.headers[k] for k in (h.REPLY_TO, h.DEADLINE, h.MODEL_VERSION)} == {
            k: SHARED[k] for k in (h.REPLY_TO, h.DEADLINE, h.MODEL_VERSION)}
        kept = whole(r)  # a dead letter of this part holds this request alone
        [entry] = frame.decode(kept.value, kept.headers)
        assert entry.ids == [rid] and not entry.rows and list(entry.tensors) == list(want)
        for name in want:
            assert entry.tensors[name].dtype == want[name].dtype
            np.testing.assert_array_equal(entry.tensors[name], want[name])
            np.testing.assert_array_equal(p.inputs[name], want[name])


def test_rows_of_split_outputs_per_request() -> None:
    w = _block_work(["r0", "r1", "r2"], 2)
    out = _outputs(w, 5)
    parts = blocks.rows_of(w, out)
    assert len(parts) == 3
    for k, part in enumerate(parts):
        np.testing.assert_array_equal(part["y"], out["y"][2 * k:2 * k + 2])
        np.testing.assert_array_equal(part["z"], out["z"][2 * k:2 * k + 2])
    stacked = blocks.stacked(w, out)
    assert stacked["y"].shape == (3, 2, 5)
    np.testing.assert_array_equal(stacked["y"][1], parts[1]["y"])


def test_group_counts_a_blocks_requests() -> None:
    bl = [_block_work([f"b{i}-{j}" for j in range(32)], 1, seed=i) for i in range(4)]
    assert [len(g) for g in group(bl, 64)] == [2, 2]
    big = _block_work([f"big{j}" for j in range(100)], 1)
    assert [[len(g), g[0] is big] for g in group([big, *bl[:2]], 64)] == [[1, True], [2, False]]
    assert [[w.count for w in g] for g in group([bl[0], big, bl[1]], 64)] == [[32], [100], [32]]
    single = Work(bl[0].record, "s", None, {"x": np.zeros((1, 4), np.float32)}, MODEL, 1)
    other = _block_work(["o1", "o2"], 3, width=8)  # another signature
    assert other.sig != bl[0].sig and single.group_key() != bl[0].group_key()
    groups = group([bl[0], single, other, bl[1], single, bl[2]], 64)
    assert [[w.count for w in g] for g in groups] == [[32, 32], [1, 1], [2], [32]]
    alike = Work(bl[0].record, "s", None, {"x": np.zeros((2, 4), np.float32),
                                                   "k": np.zeros((2, 3), np.int64)}, MODEL, 2)
    assert alike.group_key() == bl[0].group_key()  # a single request of the same layout joins a block
    assert [[w.count for w in g] for g in group([bl[0], alike, bl[1]], 64)] == [[32, 1], [32]]


# --------------------------------------------------------------------------- the client's frames


@pytest.mark.parametrize(("dtype", "ok"), [
    (np.float32, True), (np.int64, True), (np.uint8, True), (np.float16, True),
    (np.bool_, False), (object, False), (">f4", False), (">i8", False), ("<f4", True),
])
def test_rowable(dtype: Any, ok: bool) -> None:
    assert (layout_of({"x": np.zeros((2, 3), dtype)}) is not None) is ok
    assert layout_of({}) is None and layout_of({"x": np.zeros(2, np.float32)}, rows=False) is None


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


SHARED_WIRE = ((h.REPLY_TO, b"replies"),)
Call = tuple[str, dict[str, np.ndarray], float]  # request id, arrays, timeout


async def _send(reqs: list[Call], streams: list[Stream] | None = None, rows: bool = True,
                **limits: int) -> list[dict[str, Any]]:
    producer, failed = _Producer(), list[list[str]]()
    tb = TickBatches(producer, lambda rids, exc: failed.append(rids), **limits)
    default = Stream("t.requests", 4, SHARED_WIRE)
    for i, (rid, arrays, timeout_s) in enumerate(reqs):
        tb.add_request(streams[i] if streams else default, rid, arrays, timeout_s,
                       layout=layout_of(arrays, rows))
    await tb.drain()
    assert not failed and all(len(b.records) == 1 for _, _, b in producer.sent)
    out = []
    for topic, partition, b in producer.sent:
        key, value, hd = b.records[0]
        entries = frame.decode(value, hd)
        assert topic == "t.requests" and key == entries[0].id.encode() and frame.is_frame(hd)
        assert hd[h.WIRE_VERSION] == "1"
        out.append({"partition": partition, "headers": hd, "entries": entries})
    return out


def _deadline(s: float = 30.0) -> float:
    return s


async def test_rows_become_entries_of_stacked_rows() -> None:
    reqs = _requests(40, 7)
    calls = [(f"r{i}", {n: r[n] for n in ("a", "b")}, _deadline()) for i, r in enumerate(reqs)]
    sent = await _send(calls, pack_max=32)
    assert [[len(e.ids) for e in s["entries"]] for s in sent] == [[32], [8]]
    now_ms = time.time() * 1000
    deadlines = [int(s["entries"][0].headers[h.DEADLINE]) for s in sent]  # the first row's
    assert deadlines == sorted(deadlines) and all(now_ms + 29_000 < d <= now_ms + 30_000 for d in deadlines)
    assert sent[0]["partition"] != sent[1]["partition"]
    for s, part in zip(sent, (calls[:32], calls[32:]), strict=True):
        [e] = s["entries"]
        assert e.rows and e.ids == [rid for rid, _, _ in part] and s["headers"][h.REPLY_TO] == "replies"
        for name in ("a", "b"):
            np.testing.assert_array_equal(e.tensors[name], np.stack([a[name] for _, a, _ in part]))


async def test_rows_of_other_layouts_singles_and_the_byte_limit() -> None:
    narrow, wide = np.ones((1, 4), np.float32), np.ones((1, 8), np.float32)
    sent = await _send([(f"r{i}", {"a": narrow if i % 2 else wide}, _deadline()) for i in range(6)])
    [s] = sent  # one frame: an entry of rows per layout
    assert sorted(e.ids for e in s["entries"]) == [["r0", "r2", "r4"], ["r1", "r3", "r5"]]
    assert {e.tensors["a"].shape for e in s["entries"]} == {(3, 1, 4), (3, 1, 8)}
    [s] = await _send([("f", {"a": narrow}, _deadline()),
                       ("d", {"a": narrow.astype(np.float64)}, _deadline())])
    assert {e.tensors["a"].dtype for e in s["entries"]} == {np.dtype(np.float32), np.dtype(np.float64)}
    assert all(not e.rows for e in s["entries"])  # a row alone travels as a single request
    sent = await _send([(f"r{i}", {"a": narrow}, _deadline()) for i in range(10)], pack_bytes=256)
    assert [len(s["entries"][0].ids) for s in sent] == [4, 4, 2]  # 16 + 64 bytes counted a row
    text = np.array([b"x", b"yz"], dtype=object)
    [s] = await _send([("t", {"s": text}, _deadline()), ("u", {"a": narrow}, _deadline())], rows=False)
    assert [e.ids for e in s["entries"]] == [["t"], ["u"]] and not any(e.rows for e in s["entries"])
    assert list(s["entries"][0].tensors["s"]) == [b"x", b"yz"] and s["entries"][0].headers[h.DEADLINE]


async def test_requests_of_other_streams_or_timeouts_go_apart() -> None:
    x = np.ones((1, 4), np.float32)
    plain = Stream("t.requests", 4, SHARED_WIRE)
    tenant = Stream("t.requests", 4, (*SHARED_WIRE, (h.TENANT, b"acme")))
    sent = await _send([(f"r{i}", {"a": x}, 30.0) for i in range(4)], streams=[plain, tenant, plain, tenant])
    by_ids = {tuple(s["entries"][0].ids): s["headers"] for s in sent}
    assert set(by_ids) == {("r0", "r2"), ("r1", "r3")}
    assert by_ids[("r1", "r3")][h.TENANT] == "acme" and h.TENANT not in by_ids[("r0", "r2")]
    [s] = await _send([(f"r{i}", {"a": x}, 1.0 if i % 2 else 30.0) for i in range(4)])
    deadlines = {tuple(e.ids): int(e.headers[h.DEADLINE]) for e in s["entries"]}
    assert set(deadlines) == {("r0", "r2"), ("r1", "r3")}  # rows of one deadline each
    assert deadlines[("r1", "r3")] < deadlines[("r0", "r2")]  # 1 s before 30 s: never the other's
    with pytest.raises(InvalidMessage, match="no OIP datatype"):  # refused before it is queued
        layout_of({"c": np.zeros(2, np.complex64)})


def test_the_frame_head_is_documented_json() -> None:
    value, headers = frame.encode([frame.Entry(["a", "b"], {"x": np.zeros((2, 1), np.int32)}, rows=True)])
    head = json.loads(value[: int(_hd(headers)[h.INFERENCE_HEADER_LENGTH])])
    assert head == {"entries": [{"ids": ["a", "b"], "tensors": [
        {"name": "x", "datatype": "INT32", "shape": [2, 1], "offset": 0, "length": 8}]}]}
