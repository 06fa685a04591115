"""Open Inference Protocol v2 tensors <-> numpy, in JSON form and in binary form.

JSON (the default, ``content-type: application/json``) is the OIP v2 body with ``data`` in each
tensor. The binary form follows the OIP/Triton binary-data extension: the record value is the same
JSON body with ``"parameters": {"binary_data_size": N}`` instead of ``data`` for each tensor,
followed directly by the raw tensor bytes (little-endian, row-major, in the order of the tensors in
the JSON). The JSON part's length travels in the ``inference-header-content-length`` header and the
content type is ``application/octet-stream`` — the same names the HTTP extension uses, so the bridge
can pass bodies through. BYTES elements are each a 4-byte little-endian length then the bytes.

Decoding thousands of floats from JSON costs more than a small model; the binary form costs a
``frombuffer``. Every decode error raises ``InvalidMessage`` (HTTP 400) with the reason. The arrays
themselves (datatypes, JSON data, raw bytes) are converted in ``aiaas.streams.tensorarrays``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from aiaas.schemas.envelope import Envelope, json_loads
from aiaas.schemas.errors import InvalidMessage
from aiaas.schemas.inference import Tensor
from aiaas.streams import headers as h
from aiaas.streams.tensorarrays import (
    BINARY_SIZE,
    BY_DTYPE,
    datatype_of,
    from_numpy,
    from_raw,
    json_data,
    numpy_dtype,
    raw_bytes,
    to_numpy,
)

__all__ = [  # the array half lives in aiaas.streams.tensorarrays; these names stay importable from here
    "BINARY", "BINARY_SIZE", "HEADER_LENGTH", "JSON", "BodyTemplates", "Decoded", "Encoded",
    "datatype_of", "decode", "encode", "encode_body", "from_numpy", "is_binary",
    "json_string", "numpy_dtype", "peek_kind", "split_value", "to_numpy",
]

JSON = "application/json"
BINARY = "application/octet-stream"
HEADER_LENGTH = h.INFERENCE_HEADER_LENGTH

E = TypeVar("E", bound=Envelope)


@dataclass(slots=True)
class Encoded:
    """A record value with the headers that say how to read it."""

    value: bytes
    headers: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------- messages


def encode(message: Envelope, tensors: Sequence[Tensor], arrays: Sequence[np.ndarray], *,
           binary: bool) -> Encoded:
    """Encode a request or response whose tensor list is ``tensors`` (built by ``from_numpy``).

    In binary form the raw bytes of ``arrays`` (same order as ``tensors``) follow the JSON part.
    """
    head = message.to_record()
    if not binary:
        return Encoded(head, {h.CONTENT_TYPE: JSON})
    raws = [raw_bytes(a, t.datatype) for t, a in zip(tensors, arrays, strict=True)]
    return Encoded(b"".join([head, *raws]), {h.CONTENT_TYPE: BINARY, HEADER_LENGTH: str(len(head))})


def is_binary(headers: Mapping[str, str]) -> bool:
    ct = headers.get(h.CONTENT_TYPE)
    return ct == BINARY or (ct is not None and ct.split(";")[0].strip() == BINARY)


def split_value(value: bytes | None, headers: Mapping[str, str]) -> tuple[bytes, memoryview]:
    """The JSON part and the binary tail of a record value (the tail is empty for JSON)."""
    if value is None:
        raise InvalidMessage("record has no value")
    if not is_binary(headers):
        return value, memoryview(b"")
    raw_len = headers.get(HEADER_LENGTH)
    try:
        n = int(raw_len) if raw_len is not None else -1
    except ValueError:
        n = -1
    if not 0 < n <= len(value):
        raise InvalidMessage(f"binary record needs a valid {HEADER_LENGTH} header", got=raw_len)
    return value[:n], memoryview(value)[n:]


def decode(value: bytes | None, headers: Mapping[str, str], cls: type[E],
           tensors_of: str) -> tuple[E, dict[str, np.ndarray]]:
    """Decode a record into its message and its named arrays (``tensors_of``: the tensor list field)."""
    head, tail = split_value(value, headers)
    msg = cls.from_record(head)
    tensors: list[Tensor] = getattr(msg, tensors_of)
    arrays: dict[str, np.ndarray] = {}
    pos = 0
    for t in tensors:
        size = (t.parameters or {}).get(BINARY_SIZE)
        if t.data is not None:
            arrays[t.name] = to_numpy(t)
            continue
        if not isinstance(size, int) or size < 0 or pos + size > len(tail):
            raise InvalidMessage("binary tensor data missing or truncated", tensor=t.name, size=size)
        arrays[t.name] = from_raw(t, tail[pos : pos + size])
        pos += size
    if pos != len(tail):
        raise InvalidMessage("binary record has trailing bytes", extra=len(tail) - pos)
    return msg, arrays


def peek_kind(head: bytes) -> str | None:
    """The ``kind`` of a JSON message without validating it (replies: response or error)."""
    try:
        obj = json_loads(head)
    except ValueError:
        return None
    return obj.get("kind") if isinstance(obj, dict) else None


# --------------------------------------------------------------------------- fast paths
# The hot path (our client and workers, thousands of records/s) skips pydantic: a body is built
# or read as a plain dict. ``aiaas.streams.layoutcache.decode_fast`` only accepts binary tensors with
# well-formed metadata and returns None for anything else, so the validated ``decode`` still
# explains every error.


@dataclass(slots=True)
class Decoded:
    body: dict[str, Any]  # the JSON part (without tensor bytes)
    arrays: dict[str, np.ndarray]
    layout: Any = None  # LayoutCache: the cached layout it came from (one object per layout)


def encode_body(kind: str, body: dict[str, Any], field: str, tensors: Mapping[str, np.ndarray], *,
                binary: bool) -> Encoded:
    """Encode ``body`` plus ``tensors`` under ``field`` (JSON data, or binary), without pydantic."""
    metas: list[dict[str, Any]] = []
    raws: list[bytes] = []
    for name, arr in tensors.items():
        dt = datatype_of(arr)
        meta: dict[str, Any] = {"name": name, "shape": list(arr.shape), "datatype": dt.value}
        if binary:
            raw = raw_bytes(arr, dt)
            meta["parameters"] = {BINARY_SIZE: len(raw)}
            raws.append(raw)
        else:
            meta["data"] = json_data(arr, dt, name)
        metas.append(meta)
    head = json.dumps({"v": 1, **body, field: metas, "kind": kind}, separators=(",", ":")).encode()
    if not binary:
        return Encoded(head, {h.CONTENT_TYPE: JSON})
    return Encoded(b"".join([head, *raws]), {h.CONTENT_TYPE: BINARY, HEADER_LENGTH: str(len(head))})


def json_string(value: str) -> bytes:
    """``value`` as a JSON string (ASCII-escaped like ``json.dumps``), quickly for plain ids."""
    if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return b'"' + value.encode() + b'"'
    return json.dumps(value).encode()


_LITTLE = sys.byteorder == "little"


class BodyTemplates:
    """Encode binary bodies that differ only in their id, without building JSON each time.

    The JSON for one tensor layout is built once by ``encode_body`` (with a marker id) and cut
    around the id; the output is byte-for-byte what ``encode_body`` gives (a test checks it).
    """

    _MARK = "\x00id\x00"

    def __init__(self, kind: str, field: str, max_layouts: int = 256) -> None:
        self.kind, self.field, self.max_layouts = kind, field, max_layouts
        self._cuts: dict[tuple[Any, ...], tuple[bytes, bytes]] = {}

    def encode(self, request_id: str, tensors: Mapping[str, np.ndarray],
               extra: Mapping[str, Any] | None = None) -> Encoded:
        """Binary body ``{"v":1, **extra, "id": request_id, field: tensors}`` (``extra``: hashable values)."""
        return self.fill(self.cut(tensors, extra), request_id, tensors)

    @staticmethod
    def fill(cut: tuple[bytes, bytes], request_id: str, tensors: Mapping[str, np.ndarray]) -> Encoded:
        """The body for ``cut`` (``cut()`` of this layout) with ``request_id`` and the tensors' bytes."""
        head = cut[0] + json_string(request_id) + cut[1]
        # native little-endian fixed-size arrays are already in wire form: tobytes() is the copy
        raws = [a.tobytes() if a.dtype in BY_DTYPE and _LITTLE else raw_bytes(a, datatype_of(a))
                for a in tensors.values()]
        return Encoded(b"".join([head, *raws]), {h.CONTENT_TYPE: BINARY, HEADER_LENGTH: str(len(head))})

    def cut(self, tensors: Mapping[str, np.ndarray],
            extra: Mapping[str, Any] | None = None) -> tuple[bytes, bytes]:
        """The JSON part of a body for this layout, before and after its id (a JSON string)."""
        key = (tuple([(n, a.dtype, a.shape) for n, a in tensors.items()]),
               tuple(extra.items()) if extra else ())
        cut = self._cuts.get(key)
        if cut is None:
            sample = encode_body(self.kind, {**(extra or {}), "id": self._MARK}, self.field, tensors,
                                 binary=True)
            head = sample.value[: int(sample.headers[HEADER_LENGTH])]
            before, _, after = head.partition(json.dumps(self._MARK).encode())
            if len(self._cuts) >= self.max_layouts:
                self._cuts.clear()
            cut = self._cuts[key] = (before, after)
        return cut


