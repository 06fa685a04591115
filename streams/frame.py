"""The one binary frame every aiaas inference record travels in (docs/wire-protocol.md, "The frame"):
a JSON head ``{"entries": [...]}`` then raw little-endian tensor buffers. An entry is one request or
reply (``"id"``) or the stacked rows of many of one layout (``"ids"``). Decoding trusts nothing:
a malformed frame raises ``InvalidMessage`` with the reason; decoded tensors are read-only views of
the record's bytes (no copy).
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aiaas.schemas.envelope import json_loads
from aiaas.schemas.errors import InvalidMessage
from aiaas.schemas.inference import DATATYPES_BY_NUMPY, NUMPY_DTYPES, Datatype
from aiaas.streams import headers as h

CONTENT_TYPE = "application/vnd.aiaas.frame"
VERSION = 1  # the wire-version this code writes and reads; a newer one is refused with the reason
LENGTH = h.INFERENCE_HEADER_LENGTH
MAX_ID = 128
MAX_DIM = 1 << 31  # a dimension beyond this cannot be real (and 0 x 10**30 would pass the size check)
_TENSOR_KEYS = frozenset({"name", "datatype", "shape", "offset", "length"})
_U32 = struct.Struct("<I")
FIXED: dict[Datatype, np.dtype[Any]] = {
    dt: np.dtype(name).newbyteorder("<") for dt, name in NUMPY_DTYPES.items() if dt is not Datatype.BYTES
}
BY_DTYPE: dict[np.dtype[Any], Datatype] = {np.dtype(NUMPY_DTYPES[dt]): dt for dt in FIXED}
DATATYPE_NAMES = {dt.value: dt for dt in Datatype}
Headers = list[tuple[str, bytes]]


@dataclass(slots=True)
class Entry:
    """One request or reply (``rows`` False: ``ids`` has one id), or stacked rows of many."""

    ids: list[str]
    tensors: dict[str, np.ndarray] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    fields: dict[str, Any] = field(default_factory=dict)
    rows: bool = False

    @property
    def id(self) -> str:
        return self.ids[0]

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.tensors.values())

    def take(self, picked: np.ndarray | slice) -> Entry:
        """The rows entry of some of its ids (a canary's share, or a slice of a big block)."""
        ids = self.ids[picked] if isinstance(picked, slice) else [self.ids[i] for i in picked]
        return Entry(ids, {n: a[picked] for n, a in self.tensors.items()}, self.headers, self.fields, True)


def datatype_of(arr: np.ndarray) -> Datatype:
    """OIP datatype of a numpy array (str/bytes/object arrays are BYTES)."""
    known = BY_DTYPE.get(arr.dtype)
    if known is not None:
        return known
    if arr.dtype.kind in "OSU":
        return Datatype.BYTES
    found = DATATYPES_BY_NUMPY.get(arr.dtype.name)
    if found is None:
        raise InvalidMessage("numpy dtype has no OIP datatype", dtype=str(arr.dtype))
    return found


def raw_bytes(arr: np.ndarray, dt: Datatype) -> bytes:
    """A tensor's wire bytes; BYTES elements are each a 4-byte little-endian length, then the bytes."""
    if dt is not Datatype.BYTES:
        return np.ascontiguousarray(arr, dtype=FIXED[dt]).tobytes()
    parts: list[bytes] = []
    for x in arr.reshape(-1):
        b = x if isinstance(x, bytes) else str(x).encode()
        parts += [_U32.pack(len(b)), b]
    return b"".join(parts)


def from_raw(raw: memoryview | bytes, dt: Datatype, shape: list[int], name: str) -> np.ndarray:
    """The array of ``shape`` in ``raw`` (a read-only view for fixed-size datatypes)."""
    count = math.prod(shape)
    if dt is Datatype.BYTES:
        return _bytes_from_raw(memoryview(raw), count, name).reshape(shape)
    dtype = FIXED[dt]
    if len(raw) != count * dtype.itemsize:
        raise InvalidMessage("tensor size does not match its shape and datatype", tensor=name, shape=shape,
                             datatype=dt.value, size=len(raw))
    arr = np.frombuffer(raw, dtype=dtype).reshape(shape)
    if dt is Datatype.BOOL and arr.size and arr.view(np.uint8).max() > 1:
        raise InvalidMessage("BOOL tensor bytes must be 0 or 1", tensor=name)
    return arr


def _bytes_from_raw(raw: memoryview, count: int, name: str) -> np.ndarray:
    out = np.empty(count, dtype=object)
    pos = 0
    for i in range(count):
        n = _U32.unpack_from(raw, pos)[0] if pos + 4 <= len(raw) else -1
        if n < 0 or pos + 4 + n > len(raw):
            raise InvalidMessage("BYTES tensor is truncated", tensor=name, element=i)
        out[i] = bytes(raw[pos + 4 : pos + 4 + n])
        pos += 4 + n
    if pos != len(raw):
        raise InvalidMessage("BYTES tensor has trailing bytes", tensor=name)
    return out


def encode(entries: Sequence[Entry]) -> tuple[bytes, Headers]:
    """Value and record headers of one frame holding ``entries``."""
    metas: list[dict[str, Any]] = []
    raws: list[bytes | memoryview] = []
    pos = 0
    for e in entries:
        tensors = []
        for name, arr in e.tensors.items():
            dt = BY_DTYPE.get(arr.dtype)
            raw: bytes | memoryview
            if dt is not None and arr.dtype.byteorder in "=<|" and arr.flags.c_contiguous:
                raw = arr.data.cast("B") if arr.size else b""
            else:
                dt = datatype_of(arr)
                raw = raw_bytes(arr, dt)
            tensors.append({"name": name, "datatype": dt.value, "shape": list(arr.shape), "offset": pos,
                            "length": len(raw)})
            raws.append(raw)
            pos += len(raw)
        meta: dict[str, Any] = {**e.fields, "ids": e.ids} if e.rows else {**e.fields, "id": e.ids[0]}
        if e.headers:
            meta["headers"] = e.headers
        meta["tensors"] = tensors
        metas.append(meta)
    head = json.dumps({"entries": metas}, separators=(",", ":")).encode()
    return b"".join([head, *raws]), [(h.CONTENT_TYPE, CONTENT_TYPE.encode()),
                                     (h.WIRE_VERSION, str(VERSION).encode()),
                                     (LENGTH, str(len(head)).encode())]


def is_frame(headers: Mapping[str, str]) -> bool:
    return headers.get(h.CONTENT_TYPE) == CONTENT_TYPE


def check_version(headers: Mapping[str, str]) -> None:
    """Refuse a record of a wire-version this code does not speak (absent: version 1)."""
    raw = headers.get(h.WIRE_VERSION)
    if raw is not None and raw != str(VERSION):
        raise InvalidMessage(f"unsupported wire-version (this worker speaks {VERSION})", got=raw[:40])


def decode(value: bytes | None, headers: Mapping[str, str]) -> list[Entry]:
    """The entries of a frame record; raises InvalidMessage (with the reason) when it is malformed."""
    check_version(headers)
    head, n_head = read_head(value, headers)
    assert value is not None
    metas = head.get("entries") if isinstance(head, dict) else None
    if not isinstance(metas, list) or not metas or len(head) != 1:
        raise InvalidMessage("frame head must be an object with a non-empty entries list")
    buffers = memoryview(value)[n_head:]
    entries, used = [], 0
    for i, meta in enumerate(metas):
        entry, n = _entry(meta, buffers, i)
        entries.append(entry)
        used += n
    if used != len(buffers):
        raise InvalidMessage("frame buffers do not add up to its tensors", used=used, size=len(buffers))
    return entries


def read_head(value: bytes | None, headers: Mapping[str, str]) -> tuple[Any, int]:
    """The JSON head of a frame and its length in bytes."""
    if value is None:
        raise InvalidMessage("frame has no value")
    raw = headers.get(LENGTH, "")
    n = h.count(raw)
    if n is None or not 0 < n <= len(value):
        raise InvalidMessage(f"frame needs a valid {LENGTH} header", got=raw[:40])
    try:
        return json_loads(value[:n]), n
    except ValueError as exc:
        raise InvalidMessage("frame head is not JSON", detail=str(exc)[:200]) from exc


def ids_of(value: bytes | None, headers: Mapping[str, str]) -> list[str]:
    """The ids of a frame that failed to decode, when its head can still tell them (best effort:
    those requests get an error reply), else an empty list."""
    try:
        metas = read_head(value, headers)[0]["entries"]
        return [i for m in metas for i in _ids(m)]
    except (InvalidMessage, TypeError, KeyError, AttributeError):
        return []


def _ids(meta: Any) -> list[str]:
    if not isinstance(meta, dict) or ("id" in meta) == ("ids" in meta):
        raise InvalidMessage("frame entry needs either an id or ids")
    ids = meta["ids"] if "ids" in meta else [meta["id"]]
    if not (isinstance(ids, list) and ids and all(type(i) is str and 0 < len(i) <= MAX_ID for i in ids)):
        raise InvalidMessage(f"frame ids must be strings of 1 to {MAX_ID} characters")
    if len(ids) > 1 and len(set(ids)) != len(ids):
        raise InvalidMessage("frame entry has duplicate ids")
    return ids


def _entry(meta: Any, buffers: memoryview, i: int) -> tuple[Entry, int]:
    ids = _ids(meta)
    rows = "ids" in meta
    fields = {k: v for k, v in meta.items() if k not in ("id", "ids", "headers", "tensors")}
    hd = meta.get("headers", {})
    if not isinstance(hd, dict) or not all(type(v) is str for v in hd.values()):
        raise InvalidMessage("frame entry headers must be an object of strings", entry=i)
    metas = meta.get("tensors")
    if not isinstance(metas, list):
        raise InvalidMessage("frame entry needs a tensors list", entry=i)
    tensors: dict[str, np.ndarray] = {}
    used = 0
    for t in metas:
        name, dt, shape, off, n = _tensor(t, len(buffers), i)
        if name in tensors:
            raise InvalidMessage("frame entry names a tensor twice", tensor=name, entry=i)
        if rows and (not shape or shape[0] != len(ids)):
            raise InvalidMessage("a rows entry's tensors need one row per id", tensor=name, entry=i)
        try:
            tensors[name] = from_raw(buffers[off : off + n], dt, shape, name)
        except ValueError as exc:  # e.g. zero elements in dimensions whose product overflows
            raise InvalidMessage("tensor shape is not possible", tensor=name, detail=str(exc)) from exc
        used += n
    return Entry(ids, tensors, hd, fields, rows), used


def _tensor(t: Any, size: int, i: int) -> tuple[str, Datatype, list[int], int, int]:
    if not (isinstance(t, dict) and t.keys() == _TENSOR_KEYS and type(t["name"]) is str):
        raise InvalidMessage("frame tensors need exactly name, datatype, shape, offset and length", entry=i)
    dt = DATATYPE_NAMES.get(t["datatype"]) if isinstance(t["datatype"], str) else None
    if dt is None:
        raise InvalidMessage("unknown tensor datatype", tensor=t["name"], got=str(t["datatype"])[:40])
    shape, off, n = t["shape"], t["offset"], t["length"]
    if not (isinstance(shape, list) and all(type(d) is int and 0 <= d < MAX_DIM for d in shape)):
        raise InvalidMessage("tensor shape must be a list of non-negative integers", tensor=t["name"])
    if not (type(off) is int and type(n) is int and off >= 0 and n >= 0 and off + n <= size):
        raise InvalidMessage("tensor bytes lie outside the frame", tensor=t["name"], offset=off, length=n)
    return t["name"], dt, shape, off, n
