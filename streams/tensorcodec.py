"""Open Inference Protocol v2 bodies of one request or reply (docs/wire-protocol.md): JSON
(``application/json``, ``data`` in each tensor), what callers in other languages send on Kafka; and,
for the HTTP bridge's edge only, the OIP binary extension (``application/octet-stream``: the JSON
body with ``binary_data_size`` per tensor, then the raw bytes; the JSON part's length in
``Inference-Header-Content-Length``). Every decode error raises ``InvalidMessage``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping
from typing import Any, NamedTuple, TypeVar

import numpy as np

from aiaas.schemas.envelope import Envelope, json_loads
from aiaas.schemas.errors import InvalidMessage
from aiaas.schemas.inference import Datatype, Tensor, flatten
from aiaas.streams import headers as h
from aiaas.streams.frame import FIXED, datatype_of, raw_bytes

JSON = "application/json"
BINARY = "application/octet-stream"
HEADER_LENGTH = h.INFERENCE_HEADER_LENGTH
BINARY_SIZE = "binary_data_size"
_SEP = (",", ":")

E = TypeVar("E", bound=Envelope)


class Encoded(NamedTuple):
    """A record value with the headers that say how to read it."""

    value: bytes
    headers: dict[str, str]


def split_value(body: bytes, header_length: str | None) -> tuple[bytes, memoryview]:
    """The JSON part and the binary tail of an HTTP body (the binary extension's JSON part is
    ``header_length`` bytes long; without it the body is all JSON and the tail is empty)."""
    if header_length is None:
        return body, memoryview(b"")
    n = h.count(header_length) or 0
    if not 0 < n <= len(body):
        raise InvalidMessage(f"binary body needs a valid {HEADER_LENGTH} header", got=header_length[:40])
    return body[:n], memoryview(body)[n:]


def decode(value: bytes | None, cls: type[E], tensors_of: str) -> tuple[E, dict[str, np.ndarray]]:
    """Decode an OIP JSON record into its message and its named arrays (``tensors_of``: the tensor
    list field)."""
    if value is None:
        raise InvalidMessage("record has no value")
    msg = cls.from_record(value)
    tensors: list[Tensor] = getattr(msg, tensors_of)
    return msg, {t.name: to_numpy(t) for t in tensors}


def peek_kind(head: bytes) -> str | None:
    """The ``kind`` of a JSON message without validating it (replies: response or error)."""
    try:
        obj = json_loads(head)
    except ValueError:
        return None
    return obj.get("kind") if isinstance(obj, dict) else None


def encode_body(kind: str, body: dict[str, Any], field: str, tensors: Mapping[str, np.ndarray], *,
                binary: bool | Collection[str]) -> Encoded:
    """Encode ``body`` plus ``tensors`` under ``field``, without pydantic: JSON data, or binary (all
    tensors, or those named in ``binary``). JSON data is written a slice at a time (``json_text``):
    run in a thread, a big reply leaves the event loop the GIL in between."""
    metas: list[bytes] = []
    raws: list[bytes] = []
    for name, arr in tensors.items():
        dt = datatype_of(arr)
        meta: dict[str, Any] = {"name": name, "shape": [int(d) for d in arr.shape], "datatype": dt.value}
        if binary is True or (binary and name in binary):
            raws.append(raw_bytes(arr, dt))
            metas.append(_dumps({**meta, "parameters": {BINARY_SIZE: len(raws[-1])}}))
        else:
            metas.append(b"%s,\"data\":%s}" % (_dumps(meta)[:-1], json_text(arr, dt, name)))
    start = _dumps({"v": 1, **body})[:-1]
    head = b'%s,"%s":[%s],"kind":"%s"}' % (start, field.encode(), b",".join(metas), kind.encode())
    if not raws:
        return Encoded(head, {h.CONTENT_TYPE: JSON})
    return Encoded(b"".join([head, *raws]), {h.CONTENT_TYPE: BINARY, HEADER_LENGTH: str(len(head))})


def to_numpy(t: Tensor) -> np.ndarray:
    """A validated JSON tensor as a numpy array of its shape and datatype."""
    if t.data is None:
        raise InvalidMessage("tensor has no JSON data (binary tensor without its bytes)", tensor=t.name)
    if t.datatype is Datatype.BYTES:  # JSON strings (UTF-8 bytes on the wire); checked here too, as a
        flat = flatten(t.data)  # Tensor may be built unvalidated (model_construct)
        arr = np.empty(len(flat), dtype=object)
        try:
            arr[:] = [x.encode() if isinstance(x, str) else _bytes_element(x) for x in flat]
        except TypeError as exc:
            raise InvalidMessage("BYTES data must be strings", tensor=t.name, detail=str(exc)) from None
        except UnicodeEncodeError as exc:  # JSON's "\ud800": a lone surrogate has no UTF-8
            raise InvalidMessage("BYTES data must be valid Unicode text (a lone surrogate has no UTF-8)",
                                 tensor=t.name, position=exc.start) from None
        return arr.reshape(t.shape)
    try:
        return np.asarray(t.data, dtype=FIXED[t.datatype]).reshape(t.shape)
    except (ValueError, OverflowError) as exc:
        raise InvalidMessage("tensor data does not fit its datatype", tensor=t.name, detail=str(exc)) from exc


def _bytes_element(x: Any) -> bytes:
    if isinstance(x, bytes):
        return x
    raise TypeError(f"{type(x).__name__} is not a string")


def json_text(arr: np.ndarray, dt: Datatype, name: str | None = None, slice_elements: int = 16384) -> bytes:
    """The flat JSON ``data`` list of ``arr``, encoded a slice at a time: run in a thread, a big
    tensor lets the event loop have the GIL between slices (one ``json.dumps`` of millions of floats
    holds it for seconds, longer than a consumer group's session). JSON has no NaN or infinity: a
    float tensor holding them raises InvalidMessage (a worker answers that request with an error
    reply saying so)."""
    flat = arr.reshape(-1)
    if dt is Datatype.BYTES:
        return _dumps([x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x) for x in flat])
    if dt in (Datatype.FP16, Datatype.FP32, Datatype.FP64) and not (finite := np.isfinite(flat)).all():
        raise InvalidMessage("NaN or infinity cannot be sent as JSON; use a frame (the Python "
                             "client) or, over HTTP, the binary extension", tensor=name,
                             non_finite=int(flat.size - np.count_nonzero(finite)))
    parts = [_dumps(flat[i:i + slice_elements].tolist())[1:-1] for i in range(0, flat.size, slice_elements)]
    return b"[" + b",".join(parts) + b"]"


def _encoder() -> Callable[[Any], bytes]:
    """msgspec's JSON writer (the serve extra; 5-10x ``json.dumps`` on replies), else json's (a
    client-only install). Both write compact JSON; non-finite floats never reach it (``json_text``)."""
    try:
        import msgspec
    except ImportError:  # pragma: no cover - the client extra has no msgspec
        return lambda obj: json.dumps(obj, separators=_SEP).encode()
    encode: Callable[[Any], bytes] = msgspec.json.encode
    return encode


_dumps = _encoder()
