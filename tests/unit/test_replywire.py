"""Batched reply records (aiaas.streams.replywire) without a broker: round trip and malformed input."""

from __future__ import annotations

import pytest

from aiaas.schemas.errors import InvalidMessage
from aiaas.streams import headers as h
from aiaas.streams.replywire import BATCH, STATUS, is_batch, pack_batch, unpack_batch
from aiaas.streams.tensorcodec import HEADER_LENGTH


def _decoded(headers: list[tuple[str, bytes]]) -> dict[str, str]:
    return {k: v.decode() for k, v in headers}


def test_pack_and_unpack_agree() -> None:
    value, headers = pack_batch([({h.CORRELATION_ID: "a", STATUS: "200"}, b"xy"),
                                 ({h.CORRELATION_ID: "b\u00e9", STATUS: "400"}, b"")])
    hd = _decoded(headers)
    assert is_batch(hd) and hd["content-type"] == BATCH
    replies = unpack_batch(value, hd)
    assert [(r.request_id, r.value, r.headers[STATUS]) for r in replies] == [
        ("a", b"xy", "200"), ("b\u00e9", b"", "400")]
    assert replies[0].headers == {h.CORRELATION_ID: "a", STATUS: "200"}


@pytest.mark.parametrize(("value", "length"), [
    (b"[[{}, 0]]", None),  # no index length
    (b"not json at all", "8"),
    (b'{"a": 1}', "8"),  # not a list
    (b'[[{"correlation-id": "a"}, 5]]xy', "30"),  # says 5 bytes, has 2
    (b'[[{"correlation-id": "a"}, 1]]xy', "30"),  # trailing byte
    (b'[[{"status-code": "200"}, 0]]', "29"),  # no correlation id
    (b'[["a", 0]]', "10"),
])
def test_malformed_batches_raise_invalid_message(value: bytes, length: str | None) -> None:
    headers = {"content-type": BATCH} | ({HEADER_LENGTH: length} if length else {})
    with pytest.raises(InvalidMessage):
        unpack_batch(value, headers)
