"""Structural checks of an OIP request body at the edge, cheaper than the full schema.

The bridge checks what it must understand (object shape, names, datatypes, shapes, element
counts, binary sizes, the length prefixes of binary BYTES, its own parameters) and leaves each
element's value to numpy: ``oip.parse_request`` converts the data to arrays once (a value that does
not fit its datatype is a 400 there). Validating every float in Python here cost more than the rest
of the route.
"""

from __future__ import annotations

import math
import struct
from itertools import chain
from typing import Any

from aiaas.schemas.errors import InvalidMessage
from aiaas.schemas.inference import Datatype

DATATYPES = frozenset(d.value for d in Datatype)
REQUEST_KEYS = frozenset({"id", "parameters", "inputs", "outputs", "kind", "v"})
TENSOR_KEYS = frozenset({"name", "shape", "datatype", "parameters", "data"})
_U32 = struct.Struct("<I")


def _bad(reason: str, **details: Any) -> InvalidMessage:
    return InvalidMessage(reason, **details)


def check_request(obj: Any) -> int:
    """Raise InvalidMessage (400) naming the field; returns the binary bytes the inputs declare."""
    if not isinstance(obj, dict):
        raise _bad("inference request must be a JSON object")
    extra = obj.keys() - REQUEST_KEYS
    if extra:
        raise _bad("unknown fields in inference request", fields=sorted(map(str, extra))[:10])
    if "id" in obj and not (isinstance(obj["id"], str) and len(obj["id"]) <= 128):
        raise _bad("id must be a string of at most 128 characters", field="id")
    if obj.get("parameters") is not None and not isinstance(obj["parameters"], dict):
        raise _bad("parameters must be an object", field="parameters")
    inputs = obj.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise _bad("inputs must be a non-empty list", field="inputs")
    names: set[str] = set()
    binary = 0
    for i, t in enumerate(inputs):
        binary += _check_tensor(t, f"inputs.{i}")
        if t["name"] in names:
            raise _bad("duplicate input name", field=f"inputs.{i}.name", name=t["name"])
        names.add(t["name"])
    _check_outputs(obj.get("outputs"))
    return binary


def _check_tensor(t: Any, where: str) -> int:
    if not isinstance(t, dict):
        raise _bad("tensor must be an object", field=where)
    extra = t.keys() - TENSOR_KEYS
    if extra:
        raise _bad("unknown fields in tensor", field=where, fields=sorted(map(str, extra))[:10])
    name, shape, datatype = t.get("name"), t.get("shape"), t.get("datatype")
    if not isinstance(name, str) or not 1 <= len(name) <= 256:
        raise _bad("tensor name must be a string of 1-256 characters", field=f"{where}.name")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape) or len(shape) > 32:
        raise _bad("shape must be a list of non-negative integers", field=f"{where}.shape")
    if datatype not in DATATYPES:
        raise _bad("unknown datatype", field=f"{where}.datatype", got=str(datatype)[:32])
    params = t.get("parameters")
    if params is not None and not isinstance(params, dict):
        raise _bad("parameters must be an object", field=f"{where}.parameters")
    data = t.get("data")
    if data is None:
        size = (params or {}).get("binary_data_size")
        if type(size) is not int or size < 0:
            raise _bad("tensor needs data or a non-negative binary_data_size", field=where)
        return size
    if not isinstance(data, list):
        raise _bad("data must be a list", field=f"{where}.data")
    count = math.prod(nested_shape(data, f"{where}.data"))
    if count != math.prod(shape):
        raise _bad(f"shape {shape} needs {math.prod(shape)} elements, got {count}", field=f"{where}.data")
    return 0


def nested_shape(data: list[Any], where: str) -> list[int]:
    """The dimensions of ``data``, flat or nested; InvalidMessage when nested lists are ragged (rows
    of unequal length, or lists mixed with values at one depth): row-major order is undefined then.
    Checked level by level with C-speed set/len/chain calls (bodies carry up to millions of values)."""
    dims = [len(data)]
    level: list[Any] = data
    depth = 0
    while True:
        kinds = set(map(type, level))
        if list not in kinds:
            return dims
        if kinds != {list}:
            raise _bad("ragged data: lists and values mixed at one depth", field=where, depth=depth)
        lengths = set(map(len, level))
        if len(lengths) != 1:
            raise _bad("ragged data: nested lists of unequal length at one depth", field=where, depth=depth,
                       lengths=sorted(lengths)[:5])
        if len(dims) >= 32:
            raise _bad("data nested deeper than 32 levels", field=where)
        dims.append(lengths.pop())
        level = list(chain.from_iterable(level))
        depth += 1


def check_binary_bytes(inputs: list[dict[str, Any]], tail: memoryview) -> None:
    """BYTES inputs sent in the binary extension: each element a 4-byte little-endian length, then
    that many bytes, exactly filling the tensor's ``binary_data_size`` (InvalidMessage naming the
    input and element otherwise). Call after ``check_request``: the sizes add up to ``tail``."""
    pos = 0
    for i, t in enumerate(inputs):
        if t.get("data") is not None:
            continue
        size = t["parameters"]["binary_data_size"]
        if t["datatype"] == "BYTES":
            _prefixes(tail[pos:pos + size], math.prod(t["shape"]), f"inputs.{i}")
        pos += size


def _prefixes(raw: memoryview, count: int, where: str) -> None:
    pos = 0
    for k in range(count):
        n = _U32.unpack_from(raw, pos)[0] if pos + 4 <= len(raw) else -1
        if n < 0 or pos + 4 + n > len(raw):
            raise _bad("BYTES element truncated: each is a 4-byte little-endian length, then the bytes",
                       field=where, element=k)
        pos += 4 + n
    if pos != len(raw):
        raise _bad("BYTES tensor has bytes beyond its elements (binary_data_size or shape is wrong)",
                   field=where, elements=count, extra=len(raw) - pos)


def _check_outputs(outputs: Any) -> None:
    if outputs is None:
        return
    if not isinstance(outputs, list):
        raise _bad("outputs must be a list", field="outputs")
    for i, o in enumerate(outputs):
        ok = isinstance(o, dict) and isinstance(o.get("name"), str) and o.keys() <= {"name", "parameters"}
        if not ok or (o.get("parameters") is not None and not isinstance(o["parameters"], dict)):
            raise _bad("output must be {name, parameters?}", field=f"outputs.{i}")
