"""Replies that cannot be made or delivered, without a broker: each fails its own request (error
reply + dead letter) and the rest of the poll goes on; chunked replies are put back together by
the client's reply reader, and a broken one fails its request; a big JSON reply is encoded by
slices (in a thread, off the event loop) into the same reply."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from aiokafka.errors import MessageSizeTooLargeError

from aiaas.agents.inference import replies
from aiaas.agents.inference.batcher import Work
from aiaas.agents.inference.committer import Committer
from aiaas.agents.inference.outbox import Outbox, Owners
from aiaas.agents.inference.replier import Replier
from aiaas.client.waiting import Waiting
from aiaas.schemas.errors import AiaasError, InvalidMessage
from aiaas.streams import chunking, frame
from aiaas.streams import headers as h
from aiaas.streams.record import Record
from aiaas.streams.replywire import Reply, replies_of


class Model:
    version = 1


def work(rid: str, *, framed: bool = False, **headers: str) -> Work:
    """A request: an OIP JSON one, or an entry of a frame."""
    hd = {h.REPLY_TO: "rep", **headers}
    if framed:
        hd[h.CONTENT_TYPE] = frame.CONTENT_TYPE
    rec = Record("t", 0, 7, rid.encode(), None if framed else b"", hd,
                 message=frame.Entry([rid], {}) if framed else None)
    return Work(rec, rid, "rep", {}, Model(), 1, None, rid)  # type: ignore[arg-type]


def answers(records: list[tuple[str, bytes, Any]]) -> dict[str, Reply]:
    """The replies in produced records (reply frames split; chunks left out)."""
    out: dict[str, Reply] = {}
    for _, value, headers in records:
        hd = {k: v.decode() for k, v in headers}
        if h.CHUNK_ID in hd:
            continue
        found = replies_of(value, hd) if frame.is_frame(hd) else [Reply(hd[h.CORRELATION_ID], value, hd)]
        out |= {r.request_id: r for r in found}
    return out


def done(value: Any = None, exc: BaseException | None = None) -> asyncio.Future[Any]:
    fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    if exc is None:
        fut.set_result(value)
    else:
        fut.set_exception(exc)
    return fut


class Letters:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    async def send(self, record: Record, error: AiaasError) -> None:
        self.sent.append(((record.key or b"").decode(), error.code.value))


class Producer:
    """Both sends of ``aiaas.streams.producer.Producer`` (``raw.send`` and the chunking ``send``), kept."""

    def __init__(self) -> None:
        self.raw = self
        self.records: list[tuple[str, bytes, Any]] = []

    async def send(self, topic: str, value: bytes, key: bytes | None = None, headers: Any = None,
                   partition: int | None = None) -> asyncio.Future[Any]:
        self.records.append((topic, value, headers))
        return done()


def replier(**kw: int) -> tuple[Replier, Producer, Letters]:
    producer, letters = Producer(), Letters()
    r = Replier("m", producer, "results", letters, Counter(), **kw)  # type: ignore[arg-type]
    r._reply_topics["rep"] = 0
    return r, producer, letters


async def test_nan_in_a_json_reply_and_an_oversized_reply_fail_alone() -> None:
    r, producer, letters = replier(chunk_bytes=2048, max_reply_bytes=64 * 1024)
    works = [work("fine"), work("nan"), work("inf", framed=True),
             work("big", framed=True), work("huge", framed=True)]
    results: list[Any] = [{"y": np.ones((1, 2), np.float32)}, {"y": np.array([[np.nan, 1]], np.float32)},
                          {"y": np.array([[np.inf]], np.float32)},  # a frame carries it
                          {"y": np.ones((1, 4096), np.float32)},  # 16 KB: chunked
                          {"y": np.ones((1, 32768), np.float32)}]  # 128 KB: over the limit
    sent = Outbox(r.send_raw, 8192)  # replies over 4 KB go alone (the worker's send: chunks)
    assert await r.reply_group(works, results, sent) == 3
    await sent.flush()
    assert letters.sent == [("nan", "invalid_message"), ("huge", "too_large")]
    assert r.stats["chunked_replies"] == 1
    got = answers(producer.records)
    assert sorted(got) == ["big", "fine", "huge", "inf", "nan"]
    assert got["big"].result().outputs["y"].shape == (1, 4096)  # alone in its frame, chunked
    assert got["fine"].result().outputs["y"].shape == (1, 2)
    assert got["nan"].headers["content-type"] == "application/json"
    nan, huge = got["nan"].error(), got["huge"].error()
    assert nan.status_code == 400 and "NaN or infinity" in nan.reason and nan.details["tensor"] == "y"
    assert huge.status_code == 413 and huge.details["limit"] == 64 * 1024
    assert np.isinf(got["inf"].result().outputs["y"]).all()


async def test_a_refused_batch_fails_its_requests_and_the_poll_commits() -> None:
    r, producer, letters = replier()
    failed: list[tuple[Owners, Exception]] = []

    async def unsent(owners: Owners, exc: Exception) -> None:
        failed.append((owners, exc))
        await r.undelivered(owners, exc)

    async def refuse(*args: Any) -> asyncio.Future[Any]:
        raise MessageSizeTooLargeError("too big for the topic")

    sent = Outbox(refuse, 1 << 20, unsent)
    a, b = work("a", framed=True), work("b", framed=True)
    await sent.add("rep", 0, frame.Entry(["a"], {"x": np.ones(2)}), (a.record, ("a",)))
    await sent.add("rep", 0, frame.Entry(["b"], {"y": np.ones(2)}), (b.record, ("b",)))
    await sent.flush()
    assert [ids for own, _ in failed for _, ids in own] == [("a",), ("b",)]
    assert letters.sent == [("a", "too_large"), ("b", "too_large")] and r.stats["undelivered"] == 2
    assert sent.sent == []  # nothing to wait for: the poll may commit
    [(topic, value, hd)] = producer.records  # the error replies: one frame, as the requests came
    errors = replies_of(value, {k: v.decode() for k, v in hd})
    assert topic == "rep" and [e.error().status_code for e in errors] == [413, 413]


@dataclass
class Consumer:
    marked: list[int]

    def mark_done(self, records: list[Record]) -> None:
        self.marked += [r.offset for r in records]

    async def commit_quietly(self) -> bool:
        return True


async def test_the_committer_answers_a_refused_reply_and_marks_the_poll_done() -> None:
    undelivered: list[tuple[Owners, Exception]] = []

    async def record(owners: Owners, exc: Exception) -> None:
        undelivered.append((owners, exc))

    consumer = Consumer([])
    committer = Committer(consumer, 0.01, record)  # type: ignore[arg-type]
    task = asyncio.create_task(committer.run())
    out = Outbox(Producer().send, 1 << 20)
    w = work("a")
    out.track(done(), ((w.record, ("ok",)),))
    out.track(done(exc=MessageSizeTooLargeError("refused")), ((w.record, ("a",)),))
    committer.add([w.record], out)
    await committer.join()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert consumer.marked == [7]
    [(owners, exc)] = undelivered
    assert owners == ((w.record, ("a",)),) and isinstance(exc, MessageSizeTooLargeError)


class Chunks:
    """A reply topic's records for ``Waiting.read_forever``: handed out once, then nothing."""

    @dataclass
    class Rec:
        value: bytes
        headers: list[tuple[str, bytes]]
        key: bytes | None = None
        partition: int = 0
        offset: int = 0

    def __init__(self, recs: list[Rec]) -> None:
        self.recs = recs

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[int, list[Rec]]:
        if not self.recs:
            await asyncio.sleep(timeout_ms / 1000)
            return {}
        out, self.recs = self.recs, []
        return {0: out}


async def test_the_client_puts_a_chunked_reply_back_together_and_fails_a_broken_one() -> None:
    payload = bytes(range(256)) * 40
    good = chunking.split(payload, 1000)
    bad = chunking.split(payload, 1000)
    bad[1].data = b"corrupt" + bad[1].data[7:]
    recs = [Chunks.Rec(c.data, [(h.CORRELATION_ID, rid.encode()), ("status-code", b"200"), *c.headers],
                       offset=i)
            for rid, parts in (("good", good), ("bad", bad)) for i, c in enumerate(parts)]
    waiting = Waiting(16)
    got, broken = await waiting.add("good", 10), await waiting.add("bad", 10)
    reader = asyncio.create_task(waiting.read_forever(Chunks(recs), "rep"))  # type: ignore[arg-type]
    try:
        reply: Reply = await asyncio.wait_for(got, 5)
        assert reply.value == payload and h.CHUNK_ID not in reply.headers
        try:
            await asyncio.wait_for(broken, 5)
            raise AssertionError("a corrupt chunked reply must fail its request")
        except AiaasError as exc:
            assert exc.code.value == "chunk_error" and "sha256" in exc.reason
    finally:
        reader.cancel()
    assert waiting.malformed == 1


def test_a_large_json_reply_encoded_by_slices_is_the_same_reply() -> None:
    """JSON data over a slice (``json_text``) reads back as the arrays, NaN refused by name."""
    rng = np.random.default_rng(5)
    outputs = {"y": rng.normal(size=(3, 40_000)).astype(np.float32), "ids": np.arange(70_000).reshape(7, -1),
               "mask": rng.random((2, 3)) > 0.5}
    value, hd = replies.single(replies.ok_entry("m", 2, ["r1"], outputs, {h.TENANT: "acme"}), "body-id")
    body = json.loads(value)
    assert body["id"] == "body-id" and body["model_version"] == "2" and hd[h.TENANT] == "acme"
    for t in body["outputs"]:
        np.testing.assert_array_equal(np.asarray(t["data"]).reshape(t["shape"]), outputs[t["name"]])
    outputs["y"][1, 7] = np.nan
    outputs["y"][2, 9] = -np.inf
    with pytest.raises(InvalidMessage) as bad:
        replies.single(replies.ok_entry("m", 2, ["r1"], outputs, {}))
    assert bad.value.details == {"tensor": "y", "non_finite": 2}
