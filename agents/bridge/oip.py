"""OIP v2 over HTTP at the edge: validate request bodies, choose output encodings, shape replies.

The bridge forwards a validated HTTP body to Kafka unchanged (JSON, or the binary tensor
extension: JSON header of ``Inference-Header-Content-Length`` bytes, then raw tensors; the same
layout ``aiaas.streams.tensorcodec`` uses on records), and passes the worker's reply straight back when
its encoding is the one the caller asked for. Only mismatches (binary in, JSON out; JSON in,
binary out; per-output choices) decode and re-encode tensors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from aiaas.agents.bridge.errors import error_json
from aiaas.agents.bridge.oipcheck import check_request
from aiaas.client.inference import STATUS, Reply
from aiaas.schemas.envelope import json_loads
from aiaas.schemas.errors import AiaasError, ErrorCode, InvalidMessage
from aiaas.schemas.inference import InferenceResponse, Tensor
from aiaas.streams import headers as h
from aiaas.streams import tensorcodec as tc

HTTP_HEADER_LENGTH = h.INFERENCE_HEADER_LENGTH  # the OIP HTTP binary extension uses the same name
CALLBACK_PARAM = "callback_url"
TIMEOUT_PARAM = "timeout"


@dataclass(slots=True)
class ParsedRequest:
    """A checked request: what to forward to Kafka and what the caller wants back.

    The decoded JSON is not kept: it costs several times the body's bytes (a 3.9 MB JSON body
    decodes to ~40 MB of Python objects), and a sync call waits for its reply holding this."""

    value: bytes
    headers: dict[str, str]
    binary_in: bool
    binary_all: bool = False
    binary_outputs: set[str] = field(default_factory=set)
    callback: str | None = None
    timeout_s: float | None = None

    @property
    def wants_binary(self) -> bool:
        return self.binary_all or bool(self.binary_outputs)


def parse_request(body: bytes, header_length: str | None) -> ParsedRequest:
    """Check an HTTP infer body (JSON or binary extension); raises 400-class AiaasErrors."""
    binary_in = header_length is not None
    hdrs = {h.CONTENT_TYPE: tc.BINARY, tc.HEADER_LENGTH: header_length or ""} if binary_in else {}
    head, tail = tc.split_value(body, hdrs)
    try:
        obj = json_loads(head)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidMessage("inference request is not valid JSON", detail=str(exc)[:200]) from exc
    declared = check_request(obj)
    if declared != len(tail):
        raise InvalidMessage("binary tensor bytes do not match binary_data_size", declared=declared,
                             got=len(tail))
    params = dict(obj.get("parameters") or {})
    callback = params.pop(CALLBACK_PARAM, None)
    timeout = params.pop(TIMEOUT_PARAM, None)
    if callback is not None and not isinstance(callback, str):
        raise AiaasError("parameters.callback_url must be a string", code=ErrorCode.BAD_REQUEST)
    parsed = ParsedRequest(body, hdrs, binary_in, callback=callback, timeout_s=_timeout(timeout))
    parsed.binary_all = params.get("binary_data_output") is True
    parsed.binary_outputs = {
        o["name"] for o in obj.get("outputs") or () if (o.get("parameters") or {}).get("binary_data") is True
    }
    if callback is not None or timeout is not None:  # strip our own parameters before forwarding
        obj["parameters"] = params
        if not params:
            del obj["parameters"]
        head = json.dumps(obj, separators=(",", ":")).encode()
        parsed.value = head + bytes(tail)
        if binary_in:
            parsed.headers[tc.HEADER_LENGTH] = str(len(head))
    return parsed


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
        head, _ = tc.split_value(reply.value, reply.headers)
        return HttpBody(head, status, {}, tc.JSON)
    reply_binary = tc.is_binary(reply.headers)
    if not parsed.wants_binary and not reply_binary:
        return HttpBody(reply.value, 200, {}, tc.JSON)
    if parsed.binary_all and reply_binary:
        return _binary_body(reply.value, reply.headers[tc.HEADER_LENGTH])
    resp, arrays = tc.decode(reply.value, reply.headers, InferenceResponse, "outputs")
    return encode_response(resp, arrays, parsed)


def json_result(reply: Reply) -> tuple[int, bytes]:
    """Status and JSON body of a reply (binary replies are converted): what Redis keeps."""
    status = reply_status(reply)
    if status != 200 or not tc.is_binary(reply.headers):
        return status, tc.split_value(reply.value, reply.headers)[0]
    resp, arrays = tc.decode(reply.value, reply.headers, InferenceResponse, "outputs")
    try:
        resp.outputs = [tc.from_numpy(t.name, arrays[t.name]) for t in resp.outputs]
    except AiaasError as exc:  # e.g. NaN, which JSON cannot hold: the stored outcome is that error
        return exc.status_code, error_json(exc)
    return status, resp.to_record()


def stored_to_http(status: int, body: bytes, parsed: ParsedRequest) -> HttpBody:
    """A stored JSON result (idempotent repeat) in the encoding this caller asked for."""
    if status != 200 or not parsed.wants_binary:
        return HttpBody(body, status, {}, tc.JSON)
    resp, arrays = tc.decode(body, {}, InferenceResponse, "outputs")
    return encode_response(resp, arrays, parsed)


def encode_response(resp: InferenceResponse, arrays: dict[str, Any], parsed: ParsedRequest) -> HttpBody:
    """Re-encode outputs: binary where asked (all, or per output), JSON ``data`` elsewhere."""
    tensors: list[Tensor] = []
    binary_tensors: list[Tensor] = []
    binary_arrays: list[Any] = []
    for t in resp.outputs:
        binary = parsed.binary_all or t.name in parsed.binary_outputs
        tensors.append(tc.from_numpy(t.name, arrays[t.name], binary=binary))
        if binary:
            binary_tensors.append(tensors[-1])
            binary_arrays.append(arrays[t.name])
    resp.outputs = tensors
    enc = tc.encode(resp, binary_tensors, binary_arrays, binary=bool(binary_tensors))
    if not binary_tensors:
        return HttpBody(enc.value, 200, {}, tc.JSON)
    return _binary_body(enc.value, enc.headers[tc.HEADER_LENGTH])


def _binary_body(content: bytes, header_length: str) -> HttpBody:
    return HttpBody(content, 200, {"Inference-Header-Content-Length": header_length}, tc.BINARY)
