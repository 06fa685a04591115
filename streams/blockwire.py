"""Request and reply blocks: many same-layout binary requests (or replies) as one record, row-stacked.

A request batch record (``aiaas.streams.batchwire``) keeps each request whole: its own JSON header and
tensor bytes, so a worker still decodes, checks and answers every request on its own. When the
requests of a burst share one tensor layout (the usual case for ``infer_many``), a *block* carries
them as what the worker will compute anyway: one stacked tensor per input. The worker decodes and
checks the block once, runs it as rows of a batch and answers with one reply block.

Layout (both directions): headers ``content-type`` (below) and ``inference-header-content-length: N``;
the value is a JSON head of N bytes, then for each tensor of the head in order, the tensors of all
``ids`` back to back (request k's tensor is the k-th slice). Little-endian, like OIP binary data.

- ``application/vnd.aiaas.request-block``: head ``{"ids": [...], "inputs": [{"name", "datatype",
  "shape"}]}``, ``shape`` being one request's shape. The record's other headers (``reply-to``,
  ``deadline``, ``model-version``, ...) hold for every request in it. A sender that reads reply
  blocks says so with the header ``reply-block: 1``; otherwise each request gets its own reply.
- ``application/vnd.aiaas.reply-block``: head ``{"ids": [...], "model_name", "model_version",
  "outputs": [...]}``, header ``status-code: 200``. Errors are never blocked: each failed request
  gets its own error reply.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from aiaas.schemas.errors import InvalidMessage
from aiaas.schemas.inference import Datatype
from aiaas.streams import batchwire
from aiaas.streams import headers as h
from aiaas.streams.tensorarrays import BY_DTYPE, DATATYPE_NAMES, FIXED

LENGTH = batchwire.LENGTH
REQUESTS = "application/vnd.aiaas.request-block"
REPLIES = "application/vnd.aiaas.reply-block"
ACCEPT = h.REPLY_BLOCK  # request header: "1" = the sender reads reply blocks
MAX_ID = 128
MAX_DIM = 1 << 31  # a dimension beyond this cannot be real (and 0 x 10**30 would pass the size check)
_WHAT = {REQUESTS: "request block", REPLIES: "reply block"}


@dataclass(slots=True)
class Block:
    """A decoded block: its head's other fields, the request ids and one stacked array per tensor,
    shaped ``(len(ids), *shape)``. The arrays are read-only views of the record's bytes."""

    head: dict[str, Any]
    ids: list[str]
    arrays: dict[str, np.ndarray]

    def rows(self, picked: np.ndarray | slice) -> Block:
        """The block of some of its requests (a canary's share, or a slice of a big block)."""
        ids = self.ids[picked] if isinstance(picked, slice) else [self.ids[i] for i in picked]
        return Block(self.head, ids, {n: a[picked] for n, a in self.arrays.items()})


def blockable(arr: np.ndarray) -> bool:
    """Arrays a block carries as they are: fixed-size numeric, native little-endian."""
    return arr.dtype in BY_DTYPE and arr.dtype.kind != "b" and arr.dtype.byteorder in "=<|"


def encode(kind: str, head: Mapping[str, Any], field: str, ids: list[str],
           stacked: Mapping[str, np.ndarray]) -> tuple[bytes, list[tuple[str, bytes]]]:
    """Value and headers of a block of ``kind``; ``stacked``: ``(len(ids), *shape)`` per tensor."""
    metas = [{"name": n, "datatype": BY_DTYPE[a.dtype].value, "shape": list(a.shape[1:])}
             for n, a in stacked.items()]
    body = json.dumps({**head, "ids": ids, field: metas}, separators=(",", ":")).encode()
    raws = [np.ascontiguousarray(a).data for a in stacked.values()]
    return b"".join([body, *raws]), [(h.CONTENT_TYPE, kind.encode()), (LENGTH, str(len(body)).encode())]


def kind_of(headers: Mapping[str, str]) -> str | None:
    kind = headers.get(h.CONTENT_TYPE)
    return kind if kind in _WHAT else None


def decode(value: bytes | None, headers: Mapping[str, str], field: str,
           allowed: frozenset[str]) -> Block:
    """The block of a record; raises InvalidMessage (with the reason) when it is malformed.
    ``allowed``: the head's keys besides ``ids`` and ``field``."""
    what = _WHAT.get(headers.get(h.CONTENT_TYPE, ""), "block")
    head, n_head = batchwire.read_head(value, headers, what, "head")
    assert value is not None
    if not isinstance(head, dict) or not head.keys() <= allowed | {"ids", field}:
        raise InvalidMessage(f"{what} head must be an object with ids and {field}",
                             allowed=sorted(allowed | {"ids", field}))
    ids = _ids(head.pop("ids", None), what)
    arrays = _arrays(head.pop(field, None), value, n_head, len(ids), what, field)
    return Block(head, ids, arrays)


def ids_of(value: bytes | None, headers: Mapping[str, str]) -> list[str]:
    """The ids of a block that failed to decode, when its head can still tell them (best effort:
    those requests get an error reply), else an empty list."""
    try:
        head, _ = batchwire.read_head(value, headers, "block", "head")
        return _ids(head.get("ids"), "") if isinstance(head, dict) else []
    except InvalidMessage:
        return []


def _ids(ids: Any, what: str) -> list[str]:
    if not (isinstance(ids, list) and ids and all(type(i) is str and 0 < len(i) <= MAX_ID for i in ids)):
        raise InvalidMessage(f"{what} needs ids: a non-empty list of strings of 1 to {MAX_ID} characters")
    if len(set(ids)) != len(ids):
        raise InvalidMessage(f"{what} has duplicate ids")
    return ids


def _arrays(metas: Any, value: bytes, pos: int, n: int, what: str, field: str) -> dict[str, np.ndarray]:
    if not isinstance(metas, list) or not metas:
        raise InvalidMessage(f"{what} needs a non-empty {field} list")
    arrays: dict[str, np.ndarray] = {}
    for t in metas:
        name, dtype, shape = _tensor(t, what)
        if name in arrays:
            raise InvalidMessage(f"{what} names a tensor twice", tensor=name)
        count = n * math.prod(shape)
        size = count * dtype.itemsize
        if pos + size > len(value):
            raise InvalidMessage(f"{what} is shorter than its tensors", tensor=name)
        try:
            arr = np.frombuffer(value, dtype, count, pos).reshape([n, *shape])
        except ValueError as exc:  # e.g. zero elements in dimensions whose product overflows
            raise InvalidMessage(f"{what} tensor shape is not possible", tensor=name,
                                 detail=str(exc)) from exc
        if dtype.kind == "b" and arr.view(np.uint8).max(initial=0) > 1:
            raise InvalidMessage(f"{what} has BOOL bytes other than 0 and 1", tensor=name)
        arrays[name] = arr
        pos += size
    if pos != len(value):
        raise InvalidMessage(f"{what} has trailing bytes", extra=len(value) - pos)
    return arrays


def _tensor(t: Any, what: str) -> tuple[str, np.dtype[Any], list[int]]:
    if not (isinstance(t, dict) and t.keys() == {"name", "datatype", "shape"} and type(t["name"]) is str):
        raise InvalidMessage(f"{what} tensors need exactly name, datatype and shape")
    dt = DATATYPE_NAMES.get(t["datatype"]) if isinstance(t["datatype"], str) else None
    if dt is None or dt is Datatype.BYTES:
        raise InvalidMessage(f"{what} tensors need a fixed-size datatype", tensor=t["name"],
                             got=t["datatype"])
    shape = t["shape"]
    if not (isinstance(shape, list) and all(type(d) is int and 0 <= d < MAX_DIM for d in shape)):
        raise InvalidMessage(f"{what} tensor shape must be a list of non-negative integers", tensor=t["name"])
    return t["name"], FIXED[dt], shape
