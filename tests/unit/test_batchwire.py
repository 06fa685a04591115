"""Request batch records (aiaas.streams.batchwire) without a broker: round trip, the worker's split into
requests (aiaas.agents.inference.intake.unpack), and malformed records refused with a reason."""

from __future__ import annotations

import json

import numpy as np
import pytest

from aiaas.agents.inference.intake import unpack as split_record
from aiaas.schemas.errors import InvalidMessage
from aiaas.streams import batchwire
from aiaas.streams import headers as h
from aiaas.streams.record import Record
from aiaas.streams.replywire import encode_request


def _decoded(headers: list[tuple[str, bytes]]) -> dict[str, str]:
    return {k: v.decode() for k, v in headers}


def _entries() -> list[tuple[dict[str, str], bytes]]:
    out = []
    for i, rows in enumerate([1, 3, 2]):
        enc = encode_request({"input": np.full((rows, 4), i, np.float32)}, request_id=f"r{i}", binary=True)
        out.append(({**enc.headers, h.CORRELATION_ID: f"r{i}", h.DEADLINE: str(1000 + i)}, enc.value))
    return out


def test_pack_and_unpack_agree() -> None:
    entries = [*_entries(), ({h.CORRELATION_ID: "\u00e9mpty"}, b"")]
    value, headers = batchwire.pack(entries, batchwire.REQUESTS)
    hd = _decoded(headers)
    assert set(hd) == {"content-type", batchwire.LENGTH}
    assert batchwire.kind_of(hd) == batchwire.REQUESTS
    assert batchwire.unpack(value, hd) == entries
    index = json.loads(value[: int(hd[batchwire.LENGTH])])
    assert [n for _, n in index] == [len(v) for _, v in entries]


def test_kind_of() -> None:
    assert batchwire.kind_of({"content-type": batchwire.REQUESTS}) == batchwire.REQUESTS
    assert batchwire.kind_of({"content-type": batchwire.REPLIES}) == batchwire.REPLIES
    assert batchwire.kind_of({"content-type": "application/octet-stream"}) is None
    assert batchwire.kind_of({}) is None


def test_intake_splits_a_request_batch_record_into_requests() -> None:
    entries = _entries()
    entries[1][0][h.REPLY_TO] = "own-topic"  # an entry's header overrides the shared one
    value, kind = batchwire.pack(entries, batchwire.REQUESTS)
    shared = {h.REPLY_TO: "shared-topic", "reply-batch": "1", h.MODEL_VERSION: "2"}
    rec = Record("t.infer.m.requests", 5, 42, b"r0", value, {**shared, **_decoded(kind)}, 1234, 41)
    requests = split_record(rec)
    assert [r.key for r in requests] == [b"r0", b"r1", b"r2"]
    assert [r.value for r in requests] == [v for _, v in entries]
    for r, (own, _) in zip(requests, entries, strict=True):
        assert (r.topic, r.partition, r.offset, r.timestamp_ms, r.first_offset) == (
            "t.infer.m.requests", 5, 42, 1234, 41)
        assert r.headers.get("content-type") == own.get("content-type")  # the entry's, not the batch's
        assert r.headers == {**shared, **own}
    assert requests[0].headers[h.REPLY_TO] == "shared-topic"
    assert requests[1].headers[h.REPLY_TO] == "own-topic"
    assert requests[2].headers[h.CORRELATION_ID] == "r2" and requests[2].headers[h.MODEL_VERSION] == "2"


def test_an_entry_without_its_own_content_type_does_not_inherit_the_batch_kind() -> None:
    value, kind = batchwire.pack([({h.CORRELATION_ID: "j"}, b'{"inputs": []}')], batchwire.REQUESTS)
    (req,) = split_record(Record("t", 0, 7, None, value, _decoded(kind)))
    assert req.headers == {h.CORRELATION_ID: "j"} and req.key == b"j"


def _index(*entries: object) -> bytes:
    return json.dumps(list(entries)).encode()


GOOD = _index([{h.CORRELATION_ID: "a"}, 2])
AUTO = "auto"  # the length header says exactly how long the index is
BAD_LENGTH = "valid inference-header-content-length"


@pytest.mark.parametrize(("head", "tail", "length", "reason"), [
    (GOOD, b"xy", None, BAD_LENGTH),  # no length header
    (GOOD, b"xy", "", BAD_LENGTH),
    (GOOD, b"xy", "-3", BAD_LENGTH),
    (GOOD, b"xy", "0", BAD_LENGTH),
    (GOOD, b"xy", "abc", BAD_LENGTH),
    (GOOD, b"xy", "\u00b2", BAD_LENGTH),  # str.isdigit() is true for it, int() refuses it
    (GOOD, b"xy", str(len(GOOD) + 3), BAD_LENGTH),  # past the end of the value
    (b"not json at all", b"", AUTO, "index is not JSON"),
    (b"\xff\xfe[]", b"", AUTO, "index is not JSON"),
    (GOOD, b"xy", str(len(GOOD) - 1), "index is not JSON"),  # cuts the index short
    (b'{"a": 1}', b"", AUTO, "index is not a list"),
    (_index([{h.CORRELATION_ID: "a"}, 5]), b"xy", AUTO, "entry is malformed"),  # length past the end
    (_index([{h.CORRELATION_ID: "a"}, -1]), b"", AUTO, "entry is malformed"),
    (_index([{h.CORRELATION_ID: "a"}, 1.0]), b"x", AUTO, "entry is malformed"),
    (_index([{h.CORRELATION_ID: "a"}, True]), b"x", AUTO, "entry is malformed"),
    (_index(["a", 0]), b"", AUTO, "entry is malformed"),
    (_index([{h.CORRELATION_ID: "a"}]), b"", AUTO, "entry is malformed"),
    (_index([{h.CORRELATION_ID: "a"}, 0, 0]), b"", AUTO, "entry is malformed"),
    (_index([{"status-code": "200"}, 0]), b"", AUTO, "string headers with a correlation-id"),
    (_index([{h.CORRELATION_ID: 7}, 0]), b"", AUTO, "string headers with a correlation-id"),
    (_index([{h.CORRELATION_ID: "a", h.DEADLINE: 123}, 0]), b"", AUTO, "string headers"),
    (_index([{h.CORRELATION_ID: "a", "x": None}, 0]), b"", AUTO, "string headers"),
    (GOOD, b"xyz", AUTO, "trailing bytes"),
])
def test_malformed_request_batches_raise_invalid_message(head: bytes, tail: bytes, length: str | None,
                                                         reason: str) -> None:
    headers = {"content-type": batchwire.REQUESTS}
    if length is not None:
        headers[batchwire.LENGTH] = str(len(head)) if length == AUTO else length
    with pytest.raises(InvalidMessage) as info:
        batchwire.unpack(head + tail, headers)
    assert reason in info.value.reason and info.value.reason.startswith("request batch ")
    with pytest.raises(InvalidMessage):  # the worker's split refuses it the same way
        split_record(Record("t", 0, 0, None, head + tail, headers))


def test_missing_value_and_details_name_the_problem() -> None:
    with pytest.raises(InvalidMessage, match="has no value"):
        batchwire.unpack(None, {"content-type": batchwire.REQUESTS, batchwire.LENGTH: "2"})
    value = _index([{h.CORRELATION_ID: "a"}, 0], [{h.CORRELATION_ID: "b"}, 9])
    with pytest.raises(InvalidMessage) as info:
        batchwire.unpack(value, {"content-type": batchwire.REQUESTS, batchwire.LENGTH: str(len(value))})
    assert info.value.details == {"entry": 1}  # which entry
    with pytest.raises(InvalidMessage) as info:
        batchwire.unpack(GOOD + b"xyz", {"content-type": batchwire.REPLIES, batchwire.LENGTH: str(len(GOOD))})
    assert info.value.reason == "reply batch has trailing bytes" and info.value.details == {"extra": 1}
