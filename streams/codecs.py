"""Codecs at the edges: JSON for control messages, safetensors for tensors. No pickle anywhere.

A tensor-carrying record is ``[u32 header length][JSON header][safetensors bytes]`` so that the
header can be validated (and rejected) before any tensor memory is touched.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from typing import Any, TypeVar

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from aiaas.schemas.envelope import Envelope
from aiaas.schemas.errors import InvalidMessage
from aiaas.streams.chunking import Pieces

E = TypeVar("E", bound=Envelope)
_LEN = struct.Struct(">I")
_ST_LEN = struct.Struct("<Q")
MAGIC = b"AIT1"  # aiaas tensor record, version 1
_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
           "I16": np.int16, "I8": np.int8, "U64": np.uint64, "U32": np.uint32, "U16": np.uint16,
           "U8": np.uint8, "BOOL": np.bool_}
_NAMES = {np.dtype(v): k for k, v in _DTYPES.items()}


def encode_tensors(tensors: Mapping[str, np.ndarray]) -> bytes:
    """safetensors bytes of named numpy arrays (made contiguous as needed)."""
    # not np.ascontiguousarray: it turns 0-d arrays into 1-d ones
    return st_save({k: v if v.flags.c_contiguous else v.copy(order="C") for k, v in tensors.items()})


def decode_tensors(data: bytes) -> dict[str, np.ndarray]:
    try:
        return st_load(data)
    except (SafetensorError, ValueError, TypeError) as exc:
        raise _bad(str(exc)) from exc


def pack(header: Envelope, tensors: Mapping[str, np.ndarray]) -> bytes:
    """One record value: a JSON header followed by the tensors as safetensors, written straight
    into the record (one copy of the tensors: no safetensors blob to concatenate afterwards). The
    safetensors header is padded so every tensor starts 8-byte aligned in the record, which lets
    ``unpack`` hand out views."""
    return pack_pieces(header, tensors).join()


def pack_pieces(header: Envelope, tensors: Mapping[str, np.ndarray]) -> Pieces:
    """``pack``'s record as its pieces (the headers, then views of the arrays: no copy of a
    contiguous little-endian array), for a producer that cuts its chunks from them
    (``aiaas.streams.producer.Producer.send``); the arrays must not change until it is sent."""
    head = header.to_record()
    wire = {k: _wire_array(v) for k, v in tensors.items()}
    arrays = dict(sorted(wire.items(), key=lambda kv: -kv[1].dtype.itemsize))  # widest first: all aligned
    meta: dict[str, Any] = {}
    pos = 0
    for name, arr in arrays.items():
        meta[name] = {"dtype": _NAMES[arr.dtype], "shape": list(arr.shape),
                      "data_offsets": [pos, pos + arr.nbytes]}
        pos += arr.nbytes
    st_head = json.dumps(meta, separators=(",", ":")).encode()
    st_head += b" " * (-(len(MAGIC) + _LEN.size + len(head) + _ST_LEN.size + len(st_head)) % 8)
    parts: list[bytes | memoryview] = [MAGIC, _LEN.pack(len(head)), head, _ST_LEN.pack(len(st_head)), st_head]
    parts += [a.reshape(-1).view(np.uint8).data for a in arrays.values() if a.nbytes]
    return Pieces(parts)


def _wire_array(arr: np.ndarray) -> np.ndarray:
    """``arr`` C-contiguous and little-endian (a copy only when it is not already)."""
    if arr.dtype.newbyteorder("=") not in _NAMES:
        raise InvalidMessage("tensor dtype cannot travel as safetensors", dtype=str(arr.dtype))
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    return arr if arr.flags.c_contiguous else arr.copy(order="C")


def unpack(value: bytes | bytearray | None, header_cls: type[E]) -> tuple[E, dict[str, np.ndarray]]:
    """Inverse of ``pack``; raises InvalidMessage (never a bare error) on junk input. The arrays are
    views of ``value`` (no copy; a tensor not aligned in it is copied), read-only for ``bytes``."""
    header, body = split_header(value, header_cls)
    return header, view_tensors(body)


def split_header(value: bytes | bytearray | None, header_cls: type[E]) -> tuple[E, memoryview]:
    """Validate and return the header and the still-encoded tensor bytes (a view of ``value``)."""
    if value is None or len(value) < 8 or value[:4] != MAGIC:
        raise InvalidMessage("not a tensor record (bad magic or too short)", schema=header_cls.KIND)
    (n,) = _LEN.unpack_from(value, 4)
    if 8 + n > len(value):
        raise InvalidMessage("tensor record header is truncated", schema=header_cls.KIND)
    return header_cls.from_record(bytes(value[8 : 8 + n])), memoryview(value)[8 + n :]


def view_tensors(body: memoryview) -> dict[str, np.ndarray]:
    """safetensors bytes as numpy views of ``body``, checked as strictly as safetensors does (known
    dtypes, sizes that fit the shapes, offsets contiguous and covering the data exactly)."""
    if len(body) < _ST_LEN.size:
        raise _bad("shorter than its header length")
    (n,) = _ST_LEN.unpack_from(body, 0)
    start = _ST_LEN.size + n
    if start > len(body):
        raise _bad("header is truncated")
    try:
        meta = json.loads(bytes(body[_ST_LEN.size : start]))
    except ValueError as exc:
        raise _bad(str(exc)) from exc
    if not isinstance(meta, dict):
        raise _bad("header is not an object")
    meta.pop("__metadata__", None)
    out: dict[str, np.ndarray] = {}
    end = 0
    for name, spec in sorted(meta.items(), key=lambda kv: _offsets(kv[0], kv[1])):
        dtype, shape, (lo, hi) = _entry(name, spec)
        if lo != end or hi - lo != math.prod(shape) * dtype.itemsize or start + hi > len(body):
            raise _bad(f"bad offsets of {name}")
        end = hi
        arr = np.frombuffer(body, dtype, math.prod(shape), start + lo).reshape(shape)
        out[name] = arr if arr.flags.aligned else arr.copy()
    if start + end != len(body):
        raise _bad("data does not fill the payload")
    return out


def _bad(detail: str) -> InvalidMessage:
    return InvalidMessage("tensor payload is not valid safetensors", detail=detail)


def _offsets(name: str, spec: Any) -> tuple[int, int]:
    offs = spec.get("data_offsets") if isinstance(spec, dict) else None
    if not (isinstance(offs, list) and len(offs) == 2 and all(type(o) is int and o >= 0 for o in offs)
            and offs[0] <= offs[1]):
        raise _bad(f"bad offsets of {name}")
    return offs[0], offs[1]


def _entry(name: str, spec: dict[str, Any]) -> tuple[np.dtype[Any], tuple[int, ...], tuple[int, int]]:
    dtype = _DTYPES.get(spec.get("dtype"))  # type: ignore[arg-type]
    shape = spec.get("shape")
    if dtype is None or not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise _bad(f"bad dtype or shape of {name}")
    return np.dtype(dtype), tuple(shape), _offsets(name, spec)


def decode_json(value: bytes | None, model: type[E]) -> E:
    """Decode a JSON control message (alias of ``Envelope.from_record`` for symmetry)."""
    return model.from_record(value)
