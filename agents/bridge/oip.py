"""OIP v2 over HTTP at the edge: validate request bodies, choose output encodings, shape replies.

A checked HTTP body (JSON, or the binary tensor extension: JSON header of
``Inference-Header-Content-Length`` bytes, then raw tensors) becomes named arrays once, here: the
bridge sends them as an entry of a frame (``aiaas.streams.frame``), so concurrent calls travel
packed in one record and the worker parses nothing. The reply entry comes back decoded and is
encoded the way the caller asked (JSON ``data``, binary, or per output).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np

from aiaas.agents.bridge.errors import error_json
from aiaas.agents.bridge.oipcheck import check_binary_bytes, check_request
from aiaas.client.inference import STATUS, Reply
from aiaas.schemas.errors import AiaasError, ErrorCode, InvalidMessage
from aiaas.schemas.inference import Datatype, InferenceResponse, Tensor
from aiaas.streams import headers as h
from aiaas.streams import tensorcodec as tc
from aiaas.streams.frame import from_raw

HTTP_HEADER_LENGTH = h.INFERENCE_HEADER_LENGTH  # the OIP HTTP binary extension uses the same name
CALLBACK_PARAM = "callback_url"
TIMEOUT_PARAM = "timeout"


@dataclass(slots=True)
class ParsedRequest:
    """A checked request: its inputs as arrays, what to forward with them (``parameters`` without
    the bridge's own, the ``outputs`` asked for) and what the caller wants back.

    The decoded JSON is not kept: it costs several times the body's bytes (a 3.9 MB JSON body
    decodes to ~40 MB of Python objects), and a sync call waits for its reply holding this."""

    inputs: dict[str, np.ndarray]
    parameters: dict[str, Any]
    outputs: list[str] | None
    binary_in: bool
    binary_all: bool = False
    binary_outputs: set[str] = field(default_factory=set)
    callback: str | None = None
    timeout_s: float | None = None
    request_id: str | None = None  # the body's ``id``: the response echoes it

    @property
    def wants_binary(self) -> bool:
        return self.binary_all or bool(self.binary_outputs)


def parse_request(body: bytes, header_length: str | None) -> ParsedRequest:
    """Check an HTTP infer body (JSON or binary extension); raises 400-class AiaasErrors."""
    binary_in = header_length is not None
    head, tail = tc.split_value(body, header_length)
    try:
        obj = msgspec.json.decode(head)  # 10x json.loads here (64 floats: 7 vs 77 us on a loaded core)
    except (msgspec.DecodeError, ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidMessage("inference request is not valid JSON", detail=str(exc)[:200]) from exc
    declared = check_request(obj)
    if declared != len(tail):
        raise InvalidMessage("binary tensor bytes do not match binary_data_size", declared=declared,
                             got=len(tail))
    if declared:
        check_binary_bytes(obj["inputs"], tail)
    params = dict(obj.get("parameters") or {})
    callback = params.pop(CALLBACK_PARAM, None)
    timeout = params.pop(TIMEOUT_PARAM, None)
    if callback is not None and not isinstance(callback, str):
        raise AiaasError("parameters.callback_url must be a string", code=ErrorCode.BAD_REQUEST)
    outputs = [o["name"] for o in obj.get("outputs") or ()] or None
    parsed = ParsedRequest(_arrays(obj["inputs"], tail), params, outputs, binary_in, callback=callback,
                           timeout_s=_timeout(timeout), request_id=obj.get("id"))
    parsed.binary_all = params.get("binary_data_output") is True
    parsed.binary_outputs = {
        o["name"] for o in obj.get("outputs") or () if (o.get("parameters") or {}).get("binary_data") is True
    }
    return parsed


def _arrays(inputs: list[dict[str, Any]], tail: memoryview) -> dict[str, np.ndarray]:
    """The checked input tensors (``check_request``) as arrays: JSON ``data`` (flat or nested) or
    their slice of the binary tail, in order."""
    out: dict[str, np.ndarray] = {}
    pos = 0
    for t in inputs:
        name, dt, shape, data = t["name"], Datatype(t["datatype"]), t["shape"], t.get("data")
        if data is None:
            size = t["parameters"]["binary_data_size"]
            out[name] = from_raw(tail[pos:pos + size], dt, shape, name)
            pos += size
            continue
        try:
            out[name] = tc.to_numpy(Tensor.model_construct(name=name, shape=shape, datatype=dt, data=data))
        except (TypeError, ValueError) as exc:  # e.g. an object where a number belongs
            raise InvalidMessage("tensor data does not fit its datatype", tensor=name,
                                 detail=str(exc)[:200]) from exc
    return out


def _timeout(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 86_400:
        raise AiaasError("timeout must be a positive number of seconds", code=ErrorCode.BAD_REQUEST)
    return float(value)


def parse_timeout_query(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return _timeout(float(value))
    except ValueError:
        raise AiaasError("timeout must be a number of seconds", code=ErrorCode.BAD_REQUEST) from None


# --------------------------------------------------------------------------- replies


@dataclass(slots=True)
class HttpBody:
    content: bytes
    status: int
    headers: dict[str, str]
    media_type: str


def reply_status(reply: Reply) -> int:
    status = h.count(reply.headers.get(STATUS))
    if status is not None:
        return status
    return 200 if reply.ok else 500


def reply_to_http(reply: Reply, parsed: ParsedRequest) -> HttpBody:
    """The HTTP answer for a worker's reply, in the encoding the caller asked for.

    The reply's ``traceparent`` (the worker's span in the caller's trace) goes back to the caller.
    """
    out = _reply_body(reply, parsed)
    trace = reply.headers.get(h.TRACEPARENT)
    if trace:
        out.headers[h.TRACEPARENT] = trace
    return out


def _reply_body(reply: Reply, parsed: ParsedRequest) -> HttpBody:
    status = reply_status(reply)
    if status != 200:
        return HttpBody(reply.value, status, {}, tc.JSON)
    return encode_result(reply, parsed)


def encode_result(reply: Reply, parsed: ParsedRequest) -> HttpBody:
    """An OK reply's OIP response in the caller's encoding (raises InvalidMessage for outputs JSON
    cannot carry: NaN, infinity)."""
    r = reply.result()
    return encode_response(_head(r.model_name, r.model_version, parsed.request_id or r.id, r.parameters),
                           r.outputs, parsed)


def _head(model: str, version: str | None, rid: str | None, parameters: dict[str, Any] | None,
          ) -> dict[str, Any]:
    """A response's fields besides its outputs (those it has)."""
    head = {"model_name": model, "model_version": version, "id": rid, "parameters": parameters or None}
    return {k: v for k, v in head.items() if v is not None}


def json_result(reply: Reply, request_id: str | None = None) -> tuple[int, bytes]:
    """Status and JSON body of a reply: what Redis keeps."""
    status = reply_status(reply)
    if status != 200:
        return status, reply.value
    try:
        return status, encode_result(reply, ParsedRequest({}, {}, None, False, request_id=request_id)).content
    except AiaasError as exc:  # e.g. NaN, which JSON cannot hold: the stored outcome is that error
        return exc.status_code, error_json(exc)


def stored_to_http(status: int, body: bytes, parsed: ParsedRequest) -> HttpBody:
    """A stored JSON result (idempotent repeat) in the encoding this caller asked for."""
    if status != 200 or not parsed.wants_binary:
        return HttpBody(body, status, {}, tc.JSON)
    r, arrays = tc.decode(body, InferenceResponse, "outputs")
    return encode_response(_head(r.model_name, r.model_version, r.id, r.parameters), arrays, parsed)


def encode_response(head: dict[str, Any], arrays: dict[str, Any], parsed: ParsedRequest) -> HttpBody:
    """A response of ``head`` and the outputs ``arrays``: binary where asked (all, or per output),
    JSON ``data`` elsewhere."""
    binary = True if parsed.binary_all else parsed.binary_outputs
    enc = tc.encode_body(InferenceResponse.KIND, head, "outputs", arrays, binary=binary)
    if tc.HEADER_LENGTH not in enc.headers:
        return HttpBody(enc.value, 200, {}, tc.JSON)
    return _binary_body(enc.value, enc.headers[tc.HEADER_LENGTH])


def _binary_body(content: bytes, header_length: str) -> HttpBody:
    return HttpBody(content, 200, {"Inference-Header-Content-Length": header_length}, tc.BINARY)
