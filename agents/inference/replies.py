"""Replies (docs/wire-protocol.md): every answer or error is made as an entry of a reply frame; a
framed request gets that entry, an OIP request the single OIP JSON record it stands for (``single``).
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


def ok_entry(model: str, version: int, ids: list[str], outputs: dict[str, np.ndarray],
             request_headers: Mapping[str, str], *, rows: bool = False,
             parameters: Mapping[str, Any] | None = None) -> Entry:
    """The answer to a request (or, ``rows``, to the requests of a block)."""
    fields: dict[str, Any] = {"status": 200, "model_name": model, "model_version": str(version)}
    if parameters:
        fields["parameters"] = dict(parameters)
    return Entry(ids, outputs, passed_on(request_headers), fields, rows)


def error_entry(model: str, request_id: str, exc: AiaasError, request_headers: Mapping[str, str]) -> Entry:
    """The answer to a request that failed: its error, as an error reply says it."""
    err: dict[str, Any] = {"model_name": model, "error": exc.reason, "code": exc.code.value,
                           "retriable": exc.retriable}
    details = {k: v for k, v in exc.details.items() if isinstance(v, str | int | float | bool | list | dict)}
    if details:
        err["details"] = details
    return Entry([request_id], {}, passed_on(request_headers), {"status": exc.status_code, "error": err})


def single(e: Entry, response_id: str | None = None) -> tuple[bytes, ReplyHeaders]:
    """Value and headers of the single OIP JSON record an answer of one request stands for: what an
    OIP request gets (``response_id``: the id its body named)."""
    f = e.fields
    hd = {h.CORRELATION_ID: e.id, h.WIRE_VERSION: _VERSION, h.CONTENT_TYPE: tc.JSON, STATUS: str(f["status"])}
    if f["status"] != 200:
        return ErrorReply(id=e.id, status_code=f["status"], **f["error"]).to_record(), {**hd, **e.headers}
    body = {"model_name": f["model_name"], "model_version": f["model_version"], "id": response_id or e.id}
    if "parameters" in f:
        body["parameters"] = f["parameters"]
    enc = tc.encode_body(InferenceResponse.KIND, body, "outputs", e.tensors, binary=False)
    return enc.value, {**hd, h.MODEL_VERSION: f["model_version"], **e.headers}
