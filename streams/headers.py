"""Every Kafka header name aiaas reads or writes, and helpers (headers are ``list[tuple[str, bytes]]``
on the wire).

This module owns the names: other modules import them from here, never spell them. The table in
docs/wire-protocol.md lists each with its meaning; tests/unit/test_header_names.py keeps the two in
step.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence

# Request-reply inference (docs/wire-protocol.md).
CORRELATION_ID = "correlation-id"  # the request id; a reply carries its request's
REPLY_TO = "reply-to"  # the topic to answer on; absent: answers go to infer.<model>.results
DEADLINE = "deadline"  # epoch milliseconds; past it a request is answered 504, not computed
TRACEPARENT = "traceparent"  # W3C trace context
TENANT = "tenant"  # the tenant a bridge request (or a job it submitted) belongs to
CONTENT_TYPE = "content-type"  # the record's kind: a frame, or an OIP JSON or binary request
MODEL_VERSION = "model-version"  # a request's pinned version; the version that answered a reply
INFERENCE_HEADER_LENGTH = "inference-header-content-length"  # bytes of the JSON part before raw data
STATUS_CODE = "status-code"  # a reply's HTTP-like status (200, or the error's)
WIRE_VERSION = "wire-version"  # the frame layout's version (aiaas.streams.frame); a newer one is refused

# Chunking of payloads over the chunk size (aiaas.streams.chunking).
CHUNK_ID = "chunk-id"
CHUNK_INDEX = "chunk-index"
CHUNK_COUNT = "chunk-count"
CHUNK_SHA256 = "chunk-sha256"

# Payload encryption (aiaas.streams.envelope, docs/security.md).
DATA_KEY = "data-key"  # id of the tenant data key that sealed the value (AES-GCM); absent: clear
SEALED_IDS = "sealed-ids"  # a sealed frame's request ids (JSON list): answerable without the key

# Stream scoring (agents/inference/scoring.py): where a prediction record's input record was.
SOURCE_TOPIC = "source-topic"
SOURCE_PARTITION = "source-partition"
SOURCE_OFFSET = "source-offset"

# Training topics.
SENT_AT = "t-sent"  # sender's wall clock (epoch seconds, float) when a gradient/params record was produced

Headers = list[tuple[str, bytes]]


def encode(values: Mapping[str, str | int | float | None]) -> Headers:
    """Build record headers from a mapping; None values are left out."""
    return [(k, str(v).encode()) for k, v in values.items() if v is not None]


def sealed(key_id: str, ids: Sequence[str] = ()) -> Headers:
    """The headers of a value sealed under ``key_id``; ``ids`` (a frame's request ids) stay readable,
    so a worker without the key still answers each one (docs/security.md)."""
    return [(DATA_KEY, key_id.encode())] + ([(SEALED_IDS, json.dumps(list(ids)).encode())] if ids else [])


def decode(headers: Sequence[tuple[str, bytes]] | None) -> dict[str, str]:
    """Headers as a dict of strings (last value wins; undecodable bytes are replaced)."""
    return {k: v.decode("utf-8", "replace") for k, v in (headers or ())}


def count(raw: str | None) -> int | None:
    """A header holding a non-negative count (a length, a status code), or None when it does not:
    ASCII digits only (``str.isdigit`` accepts ``"²"``) and at most 18 of them (``int()`` refuses
    over 4300)."""
    if raw is None or not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        return None
    return int(raw)


def deadline_ms(timeout_s: float) -> int:
    return int((time.time() + timeout_s) * 1000)


def expired(values: Mapping[str, str], now_ms: float | None = None) -> bool:
    """True when a ``deadline`` header is present and past. A malformed deadline is not expired."""
    raw = values.get(DEADLINE)
    if raw is None:
        return False
    try:
        deadline = float(raw)
    except ValueError:
        return False
    return (time.time() * 1000 if now_ms is None else now_ms) > deadline
