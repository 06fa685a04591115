"""OIP v2 tensors <-> numpy arrays: datatypes, JSON ``data`` lists and raw little-endian bytes.

The array half of ``aiaas.streams.tensorcodec`` (which frames whole messages around these); BYTES
elements travel as a 4-byte little-endian length then the bytes. Every error raises
``InvalidMessage`` (HTTP 400) with the reason.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import numpy as np

from aiaas.schemas.errors import InvalidMessage
from aiaas.schemas.inference import DATATYPES_BY_NUMPY, NUMPY_DTYPES, Datatype, Tensor

BINARY_SIZE = "binary_data_size"

_U32 = struct.Struct("<I")
FIXED: dict[Datatype, np.dtype[Any]] = {
    dt: np.dtype(name).newbyteorder("<") for dt, name in NUMPY_DTYPES.items() if dt is not Datatype.BYTES
}
BY_DTYPE: dict[np.dtype[Any], Datatype] = {np.dtype(NUMPY_DTYPES[dt]): dt for dt in FIXED}
DATATYPE_NAMES = {dt.value: dt for dt in Datatype}


def numpy_dtype(datatype: Datatype) -> np.dtype[Any]:
    """Little-endian numpy dtype of an OIP datatype (object for BYTES)."""
    return FIXED.get(datatype, np.dtype(object))


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


# --------------------------------------------------------------------------- JSON tensors


def to_numpy(t: Tensor) -> np.ndarray:
    """A validated JSON tensor as a numpy array of its shape and datatype."""
    if t.data is None:
        raise InvalidMessage("tensor has no JSON data (binary tensor without its bytes)", tensor=t.name)
    if t.datatype is Datatype.BYTES:
        arr = np.empty(len(t.data), dtype=object)
        arr[:] = [x.encode() if isinstance(x, str) else x for x in t.data]
        return arr.reshape(t.shape)
    try:
        return np.asarray(t.data, dtype=numpy_dtype(t.datatype)).reshape(t.shape)
    except (ValueError, OverflowError) as exc:
        raise InvalidMessage("tensor data does not fit its datatype", tensor=t.name, detail=str(exc)) from exc


def from_numpy(name: str, arr: np.ndarray, *, binary: bool = False) -> Tensor:
    """A Tensor for ``arr``: with JSON ``data``, or only ``binary_data_size`` when ``binary``."""
    dt = datatype_of(arr)
    shape = [int(d) for d in arr.shape]
    if binary:
        size = len(raw_bytes(arr, dt)) if dt is Datatype.BYTES else arr.size * FIXED[dt].itemsize
        return Tensor.model_construct(name=name, shape=shape, datatype=dt,
                                      parameters={BINARY_SIZE: size}, data=None)
    return Tensor.model_construct(name=name, shape=shape, datatype=dt, parameters=None,
                                  data=json_data(arr, dt, name))


def json_data(arr: np.ndarray, dt: Datatype, name: str | None = None) -> list[Any]:
    """The flat JSON ``data`` list of ``arr``. JSON has no NaN or infinity: a float tensor holding
    them raises InvalidMessage (a worker answers that request with an error reply saying so)."""
    flat = arr.reshape(-1)
    if dt is Datatype.BYTES:
        return [x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x) for x in flat]
    _json_safe(flat, dt, name)
    return flat.tolist()


def _json_safe(flat: np.ndarray, dt: Datatype, name: str | None) -> None:
    if dt in (Datatype.FP16, Datatype.FP32, Datatype.FP64) and not (finite := np.isfinite(flat)).all():
        raise InvalidMessage("NaN or infinity cannot be sent as JSON; use the binary encoding "
                             "(content-type application/octet-stream)", tensor=name,
                             non_finite=int(flat.size - np.count_nonzero(finite)))


def json_text(arr: np.ndarray, dt: Datatype, name: str | None = None, slice_elements: int = 16384) -> str:
    """``json_data`` as JSON text, encoded a slice at a time: run in a thread, a big tensor lets
    the event loop have the GIL between slices (one ``json.dumps`` of millions of floats holds it
    for seconds, longer than a consumer group's session)."""
    flat = arr.reshape(-1)
    if dt is Datatype.BYTES or flat.size <= slice_elements:
        return json.dumps(json_data(arr, dt, name), separators=(",", ":"))
    _json_safe(flat, dt, name)
    parts = [json.dumps(flat[i:i + slice_elements].tolist(), separators=(",", ":"))[1:-1]
             for i in range(0, flat.size, slice_elements)]
    return "[" + ",".join(parts) + "]"


# --------------------------------------------------------------------------- raw bytes


def raw_bytes(arr: np.ndarray, dt: Datatype) -> bytes:
    if dt is Datatype.BYTES:
        parts: list[bytes] = []
        for x in arr.reshape(-1):
            b = x if isinstance(x, bytes) else str(x).encode()
            parts += [_U32.pack(len(b)), b]
        return b"".join(parts)
    return np.ascontiguousarray(arr, dtype=FIXED[dt]).tobytes()


def from_raw(t: Tensor, raw: memoryview) -> np.ndarray:
    count = math.prod(t.shape)
    if t.datatype is Datatype.BYTES:
        return _bytesfrom_raw(t, raw, count)
    dtype = FIXED[t.datatype]
    if len(raw) != count * dtype.itemsize:
        raise InvalidMessage(
            "binary tensor size does not match its shape and datatype",
            tensor=t.name, shape=t.shape, datatype=t.datatype.value, size=len(raw),
        )
    arr = np.frombuffer(raw, dtype=dtype).reshape(t.shape)
    if t.datatype is Datatype.BOOL and arr.size and arr.view(np.uint8).max() > 1:
        raise InvalidMessage("BOOL tensor bytes must be 0 or 1", tensor=t.name)
    return arr


def _bytesfrom_raw(t: Tensor, raw: memoryview, count: int) -> np.ndarray:
    out = np.empty(count, dtype=object)
    pos = 0
    for i in range(count):
        if pos + 4 > len(raw):
            raise InvalidMessage("BYTES tensor is truncated", tensor=t.name, element=i)
        (n,) = _U32.unpack_from(raw, pos)
        if pos + 4 + n > len(raw):
            raise InvalidMessage("BYTES tensor is truncated", tensor=t.name, element=i)
        out[i] = bytes(raw[pos + 4 : pos + 4 + n])
        pos += 4 + n
    if pos != len(raw):
        raise InvalidMessage("BYTES tensor has trailing bytes", tensor=t.name)
    return out.reshape(t.shape)
