"""One Kafka record carrying many: the layout of batched request and batched reply records.

Kafka's cost is per record (a broker validates, indexes and serves each one; a client builds,
sends, fetches and parses each one), so a burst of small inference requests or replies travels
cheaper as one record. A batched record has the headers ``content-type`` (its kind, below) and
``inference-header-content-length: N``; its value is a JSON index of N bytes,
``[[{headers of entry 1}, length 1], [{...}, length 2], ...]``, followed by the entries' values back
to back. Each entry is exactly the record it stands for: its headers (a JSON object of strings) and
its value bytes. Every entry carries its own ``correlation-id``.

- ``application/vnd.aiaas.reply-batch``: replies, written by workers for senders that opted in.
- ``application/vnd.aiaas.request-batch``: requests, written by the pipelined client. The record's
  other headers (``reply-to``, ``reply-batch``, ...) are shared by its entries; an entry's own
  headers override them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from aiaas.schemas.envelope import json_loads
from aiaas.schemas.errors import InvalidMessage
from aiaas.streams import headers as h

LENGTH = h.INFERENCE_HEADER_LENGTH  # as in the binary tensor encoding (aiaas.streams.tensorcodec)
REPLIES = "application/vnd.aiaas.reply-batch"
REQUESTS = "application/vnd.aiaas.request-batch"
Entry = tuple[dict[str, str], bytes]
Headers = list[tuple[str, bytes]]
_KINDS = {REPLIES: "reply batch", REQUESTS: "request batch"}


def pack(entries: Iterable[tuple[Mapping[str, str], bytes]], kind: str) -> tuple[bytes, Headers]:
    """Value and headers of one batched record of ``kind`` holding ``(headers, value)`` entries."""
    index, values = [], []
    for headers, value in entries:
        index.append((headers, len(value)))
        values.append(value)
    head = json.dumps(index, separators=(",", ":")).encode()
    return b"".join([head, *values]), [(h.CONTENT_TYPE, kind.encode()), (LENGTH, str(len(head)).encode())]


def kind_of(headers: Mapping[str, str]) -> str | None:
    """``REPLIES`` or ``REQUESTS`` for a batched record, None for a single one."""
    kind = headers.get(h.CONTENT_TYPE)
    return kind if kind in _KINDS else None


def read_head(value: bytes | None, headers: Mapping[str, str], what: str, part: str) -> tuple[Any, int]:
    """The JSON part of a record laid out as ``LENGTH`` bytes of JSON then bytes (a batched record's
    index, a block's head), and its length; raises InvalidMessage naming ``what`` and ``part``."""
    if value is None:
        raise InvalidMessage(f"{what} has no value")
    raw_len = headers.get(LENGTH, "")
    n_head = h.count(raw_len)
    if n_head is None or not 0 < n_head <= len(value):
        raise InvalidMessage(f"{what} needs a valid {LENGTH} header", got=raw_len[:40])
    try:
        return json_loads(value[:n_head]), n_head
    except ValueError as exc:
        raise InvalidMessage(f"{what} {part} is not JSON", detail=str(exc)) from exc


def unpack(value: bytes | None, headers: Mapping[str, str]) -> list[Entry]:
    """The entries of a batched record; raises InvalidMessage (with the reason) when malformed."""
    what = _KINDS.get(headers.get(h.CONTENT_TYPE, ""), "batch")
    index, n_head = read_head(value, headers, what, "index")
    assert value is not None
    if not isinstance(index, list):
        raise InvalidMessage(f"{what} index is not a list")
    out: list[Entry] = []
    pos = n_head
    for entry in index:
        if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[0], dict)
                and type(entry[1]) is int and 0 <= entry[1] <= len(value) - pos):
            raise InvalidMessage(f"{what} entry is malformed", entry=len(out))
        hd, n = entry
        if not isinstance(hd.get(h.CORRELATION_ID), str) or not all(isinstance(v, str) for v in hd.values()):
            raise InvalidMessage(f"{what} entry needs string headers with a correlation-id", entry=len(out))
        out.append((hd, value[pos : pos + n]))
        pos += n
    if pos != len(value):
        raise InvalidMessage(f"{what} has trailing bytes", extra=len(value) - pos)
    return out
