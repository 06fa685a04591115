"""Kafka header names and helpers (headers are ``list[tuple[str, bytes]]`` on the wire)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

CORRELATION_ID = "correlation-id"
REPLY_TO = "reply-to"
DEADLINE = "deadline"  # epoch milliseconds
TRACEPARENT = "traceparent"
TENANT = "tenant"
CONTENT_TYPE = "content-type"
MODEL_VERSION = "model-version"
CHUNK_ID = "chunk-id"
CHUNK_INDEX = "chunk-index"
CHUNK_COUNT = "chunk-count"
CHUNK_SHA256 = "chunk-sha256"

Headers = list[tuple[str, bytes]]


def encode(values: Mapping[str, str | int | float | None]) -> Headers:
    """Build record headers from a mapping; None values are left out."""
    return [(k, str(v).encode()) for k, v in values.items() if v is not None]


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
