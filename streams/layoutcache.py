"""Fast decoding of binary OIP records whose JSON part repeats: the layout cache.

A stream of requests (or replies) of one layout repeats the same JSON but for the id. ``LayoutCache``
parses the first one (``decode_fast``), remembers the layout (names, shapes, datatypes, sizes) under
the JSON with the id cut out, and serves the rest with a ``frombuffer`` per tensor and no JSON
parsing. Anything it cannot vouch for returns None: the caller then uses the validating
``aiaas.streams.tensorcodec.decode`` (and its error messages).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from aiaas.schemas.envelope import json_loads
from aiaas.schemas.errors import InvalidMessage
from aiaas.schemas.inference import Datatype
from aiaas.streams import headers as h
from aiaas.streams.tensorarrays import BINARY_SIZE, DATATYPE_NAMES, FIXED
from aiaas.streams.tensorcodec import HEADER_LENGTH, Decoded, is_binary, split_value

__all__ = ["LayoutCache", "decode_fast"]


def decode_fast(value: bytes | None, headers: Mapping[str, str], kind: str, field: str,
                allowed: frozenset[str]) -> Decoded | None:
    """Binary records from well-behaved producers, fast; None means: use ``decode`` instead."""
    if value is None or not is_binary(headers):
        return None
    try:
        head, tail = split_value(value, headers)
        body = json_loads(head)
        if not isinstance(body, dict) or body.pop("kind", kind) != kind or body.get("v", 1) != 1 \
                or not body.keys() <= allowed:
            return None
        arrays: dict[str, np.ndarray] = {}
        pos = 0
        for t in body[field]:
            name, shape, dt = t["name"], t["shape"], DATATYPE_NAMES[t["datatype"]]
            size = t["parameters"][BINARY_SIZE]
            dtype = FIXED[dt]
            count = math.prod(shape)
            if (type(name) is not str or name in arrays or "data" in t or type(count) is not int
                    or count < 0 or dt is Datatype.BOOL or type(size) is not int
                    or size != count * dtype.itemsize or pos + size > len(tail)):
                return None
            arr = np.frombuffer(tail[pos : pos + size], dtype=dtype).reshape(shape)
            if list(arr.shape) != shape:  # e.g. a -1 that reshape would have inferred
                return None
            arrays[name] = arr
            pos += size
        if pos != len(tail) or not arrays:
            return None
        return Decoded(body, arrays)
    except (InvalidMessage, ValueError, KeyError, TypeError, AttributeError):
        return None


_ID = b'"id":"'
_TensorLayout = tuple[str, np.dtype[Any], list[int], int, int]  # name, dtype, shape, bytes, elements
_Layout = tuple[dict[str, Any], list[_TensorLayout], int]  # body but id and tensors, tensors, their bytes


class LayoutCache:
    """Decode binary records whose JSON part differs from one seen before only in its top-level id.

    After one full ``decode_fast`` the layout (names, shapes, datatypes, sizes) is remembered under
    the JSON with the id cut out, and later records need no JSON parsing. Anything else falls back
    to ``decode_fast`` (which returns None for what only the validating ``decode`` may judge).
    Decoded bodies share their nested values with the cache: read them, do not mutate them.
    """

    def __init__(self, kind: str, field: str, allowed: frozenset[str], max_layouts: int = 256) -> None:
        self.kind, self.field, self.allowed, self.max_layouts = kind, field, allowed, max_layouts
        self._layouts: dict[bytes, _Layout] = {}

    def decode(self, value: bytes | None, headers: Mapping[str, str]) -> Decoded | None:
        if value is None or not is_binary(headers):
            return None
        n = h.count(headers.get(HEADER_LENGTH)) or 0
        if not 0 < n <= len(value):
            return None
        cut = _cut_id(value[:n])
        if cut is not None:
            known = self._layouts.get(cut[0])
            if known is not None and known[2] == len(value) - n:
                body, tensors, _ = known
                arrays, pos = {}, n
                for name, dtype, shape, size, count in tensors:
                    arrays[name] = np.frombuffer(value, dtype, count, pos).reshape(shape)
                    pos += size
                return Decoded({**body, "id": cut[1]}, arrays, known)
        found = decode_fast(value, headers, self.kind, self.field, self.allowed)
        if found is not None and cut is not None and found.body.get("id") == cut[1]:
            self._remember(cut[0], found)
        return found

    def _remember(self, key: bytes, found: Decoded) -> None:
        if len(self._layouts) >= self.max_layouts:
            self._layouts.clear()
        body = {k: v for k, v in found.body.items() if k not in ("id", self.field)}
        tensors = [(n, a.dtype, list(a.shape), a.nbytes, a.size) for n, a in found.arrays.items()]
        self._layouts[key] = (body, tensors, sum(t[3] for t in tensors))


def _cut_id(head: bytes) -> tuple[bytes, str] | None:
    """(JSON without the top-level id string, the id), when the id is a plain top-level string."""
    start = head.find(_ID)
    if start < 0 or head.find(b"{", 1, start) >= 0 or head.find(b"[", 0, start) >= 0:
        return None
    begin = start + len(_ID)
    end = head.find(b'"', begin)
    if end < 0 or head.find(b"\\", begin, end) >= 0:
        return None
    try:
        rid = head[begin:end].decode()
    except UnicodeDecodeError:
        return None
    return head[:begin] + head[end:], rid
