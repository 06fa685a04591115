"""Replies of a compute group without a broker: the replies to framed requests go as one reply frame
whose entries are what reply by reply would say (tenant passed on, errors dead-lettered)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import numpy as np

from aiaas.agents.inference import replies
from aiaas.agents.inference.batcher import Work
from aiaas.agents.inference.outbox import Outbox
from aiaas.agents.inference.replier import Replier
from aiaas.schemas.errors import AiaasError, ErrorCode
from aiaas.streams import frame
from aiaas.streams import headers as h
from aiaas.streams.record import Record
from aiaas.streams.replywire import replies_of


class Model:
    """The part of a loaded version that replies read."""

    version = 3


def work(rid: str, rows: int, **headers: str) -> Work:
    hd = {h.REPLY_TO: "rep", h.CONTENT_TYPE: frame.CONTENT_TYPE, **headers}
    rec = Record("t", 0, 0, rid.encode(), None, hd, message=frame.Entry([rid], {}))
    return Work(rec, rid, "rep", {}, Model(), rows, None, None)  # type: ignore[arg-type]


class Letters:
    """Dead letters, kept."""

    def __init__(self) -> None:
        self.sent: list[tuple[bytes | None, str]] = []

    async def send(self, record: Record, error: AiaasError) -> None:
        self.sent.append((record.key, error.reason))


class Sends:
    """Outbox's send: keeps the records instead of producing them."""

    def __init__(self) -> None:
        self.records: list[tuple[str, bytes, list[tuple[str, bytes]]]] = []

    async def __call__(self, topic: str, value: bytes, key: bytes | None, headers: list[tuple[str, bytes]],
                       partition: int | None = None) -> asyncio.Future[Any]:
        self.records.append((topic, value, headers))
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


async def test_group_replies_equal_one_by_one_replies() -> None:
    sends = Sends()
    letters = Letters()
    replier = Replier("m", None, "results", letters, Counter())  # type: ignore[arg-type]
    replier._reply_topics["rep"] = 0
    rng = np.random.default_rng(0)
    works = [work("a", 1), work("b", 2), work("c", 1, tenant="acme"), work("d", 1), work("e", 1)]
    results: list[Any] = [{"logits": rng.normal(size=(w.rows or 1, 3)).astype(np.float32)} for w in works]
    results[4] = {"logits": rng.normal(size=(1, 5)).astype(np.float32)}  # run alone: its own shape
    results[3] = AiaasError("boom", code=ErrorCode.BAD_REQUEST)
    sent = Outbox(sends, 1 << 20)
    assert await replier.reply_group(works, results, sent) == 4
    await sent.flush()
    [(topic, value, headers)] = sends.records
    hd = {k: v.decode() for k, v in headers}
    assert hd[h.WIRE_VERSION] == "1" and frame.is_frame(hd)
    entries = {e.id: e for e in frame.decode(value, hd)}
    got = {r.request_id: r for r in replies_of(value, hd)}
    assert topic == "rep" and sorted(got) == ["a", "b", "c", "d", "e"]
    for w, res in [*zip(works[:3], results[:3], strict=True), (works[4], results[4])]:
        want = replies.ok_entry("m", 3, [w.request_id], res, w.record.headers)
        e = entries[w.request_id]
        assert (e.fields, e.headers) == (want.fields, want.headers)
        result = got[w.request_id].result()
        assert (result.id, result.model_name, result.model_version) == (w.request_id, "m", "3")
        np.testing.assert_array_equal(result.outputs["logits"], res["logits"])
        assert got[w.request_id].headers[h.CORRELATION_ID] == w.request_id
    assert got["c"].headers[h.TENANT] == "acme"  # the reply passed the tenant on
    assert got["d"].headers["status-code"] == "400" and letters.sent == [(b"d", "boom")]
    err = got["d"].error()
    assert err.reason == "boom" and err.status_code == 400 and err.details["request_id"] == "d"
