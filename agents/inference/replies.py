"""Replies (docs/wire-protocol.md): an entry of a reply frame for a framed request, or a single OIP
JSON record for an OIP request; an answer or an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from opentelemetry.trace import SpanKind

from aiaas.schemas.errors import AiaasError
from aiaas.schemas.inference import ErrorReply, InferenceResponse
from aiaas.streams import headers as h
from aiaas.streams import tensorcodec as tc
from aiaas.streams import tracing
from aiaas.streams.frame import VERSION, Entry

STATUS = h.STATUS_CODE
_VERSION = str(VERSION)

ReplyHeaders = dict[str, str]
LARGE_JSON = 65_536  # output elements from which a JSON reply is encoded in a thread (4M floats took
# 6.5 s in one json.dumps, past the worker's session timeout; tensorcodec.json_text writes slices)


def passed_on(request_headers: Mapping[str, str]) -> dict[str, str]:
    """Headers a reply carries from its request: the tenant, and the worker's span in the caller's
    trace (only when the request came with one: tracing costs nothing for requests without it)."""
    out = {h.TENANT: request_headers[h.TENANT]} if h.TENANT in request_headers else {}
    incoming = request_headers.get(h.TRACEPARENT)
    if incoming is not None:
        out[h.TRACEPARENT] = tracing.hop(incoming, "inference.request", SpanKind.CONSUMER)
    return out


def _headers(request_id: str, request_headers: Mapping[str, str], extra: Mapping[str, str]) -> ReplyHeaders:
    return {h.CORRELATION_ID: request_id, h.WIRE_VERSION: _VERSION, **extra, **passed_on(request_headers)}


def response(
    model: str, version: int, request_id: str, response_id: str | None, outputs: Mapping[str, np.ndarray],
    *, request_headers: Mapping[str, str], parameters: Mapping[str, Any] | None = None,
) -> tuple[bytes, ReplyHeaders]:
    """Value and headers of a successful single reply (OIP JSON)."""
    body: dict[str, Any] = {"model_name": model, "model_version": str(version),
                            "id": response_id or request_id}
    if parameters:
        body["parameters"] = dict(parameters)
    enc = tc.encode_body(InferenceResponse.KIND, body, "outputs", outputs, binary=False)
    extra = {**enc.headers, STATUS: "200", h.MODEL_VERSION: str(version)}
    return enc.value, _headers(request_id, request_headers, extra)


def ok_entry(model: str, version: int, ids: list[str], outputs: dict[str, np.ndarray],
             request_headers: Mapping[str, str], *, rows: bool = False,
             parameters: Mapping[str, Any] | None = None) -> Entry:
    """The reply frame's entry answering a framed request (or, ``rows``, the requests of a block)."""
    fields: dict[str, Any] = {"status": 200, "model_name": model, "model_version": str(version)}
    if parameters:
        fields["parameters"] = dict(parameters)
    return Entry(ids, outputs, passed_on(request_headers), fields, rows)


def _error_body(model: str, exc: AiaasError) -> dict[str, Any]:
    details = {k: v for k, v in exc.details.items() if isinstance(v, str | int | float | bool | list | dict)}
    return {"model_name": model, "error": exc.reason, "code": exc.code.value, "retriable": exc.retriable,
            "details": details or None}


def error_entry(model: str, request_id: str, exc: AiaasError, request_headers: Mapping[str, str]) -> Entry:
    """The reply frame's entry for a framed request that failed: its error, as an error reply says it."""
    err = {k: v for k, v in _error_body(model, exc).items() if v is not None}
    return Entry([request_id], {}, passed_on(request_headers), {"status": exc.status_code, "error": err})


def error(
    model: str, request_id: str, exc: AiaasError, *, request_headers: Mapping[str, str],
) -> tuple[bytes, ReplyHeaders]:
    """Value and headers of an error reply (always JSON)."""
    msg = ErrorReply(id=request_id, status_code=exc.status_code, **_error_body(model, exc))
    extra = {h.CONTENT_TYPE: tc.JSON, STATUS: str(exc.status_code)}
    return msg.to_record(), _headers(request_id, request_headers, extra)
