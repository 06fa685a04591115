"""Reply records: an OIP response or an error, with the headers callers match replies by.

Headers are built as ``{name: str}``: a single reply record encodes them (``wire``); a batched
reply record (``aiaas.streams.replywire``) carries them as they are, one object per reply.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np
from opentelemetry.trace import SpanKind

from aiaas.schemas.errors import AiaasError
from aiaas.schemas.inference import ErrorReply, InferenceResponse
from aiaas.streams import headers as h
from aiaas.streams import tensorcodec as tc
from aiaas.streams import tracing
from aiaas.streams.replywire import STATUS
from aiaas.streams.tensorarrays import json_text

PASS_THROUGH = (h.TENANT,)
ReplyHeaders = dict[str, str]
LARGE_JSON = 65_536  # output elements from which a JSON reply is encoded in a thread (``large_json``)


def passed_on(request_headers: Mapping[str, str]) -> list[tuple[str, str]]:
    """Headers a reply carries from its request: the tenant, and the worker's span in the caller's
    trace (only when the request came with one: tracing costs nothing for requests without it)."""
    out = [(name, request_headers[name]) for name in PASS_THROUGH if name in request_headers]
    incoming = request_headers.get(h.TRACEPARENT)
    if incoming is not None:
        out.append((h.TRACEPARENT, tracing.hop(incoming, "inference.request", SpanKind.CONSUMER)))
    return out


def wire(headers: Mapping[str, str]) -> list[tuple[str, bytes]]:
    """Record headers of a single reply record."""
    return [(k, v.encode()) for k, v in headers.items()]


def _headers(request_id: str, request_headers: Mapping[str, str], extra: Mapping[str, str]) -> ReplyHeaders:
    out = {h.CORRELATION_ID: request_id, **extra}
    if h.TENANT in request_headers or h.TRACEPARENT in request_headers:
        out.update(passed_on(request_headers))
    return out


def response(
    model: str, version: int, request_id: str, response_id: str | None, outputs: Mapping[str, np.ndarray],
    *, binary: bool, request_headers: Mapping[str, str],
) -> tuple[bytes, ReplyHeaders]:
    """Value and headers of a successful reply, in the request's encoding."""
    body = {"model_name": model, "model_version": str(version), "id": response_id or request_id}
    enc = tc.encode_body(InferenceResponse.KIND, body, "outputs", outputs, binary=binary)
    extra = {**enc.headers, STATUS: "200", h.MODEL_VERSION: str(version)}
    return enc.value, _headers(request_id, request_headers, extra)


def large_json(
    model: str, version: int, request_id: str, response_id: str | None, outputs: Mapping[str, np.ndarray],
    *, request_headers: Mapping[str, str],
) -> tuple[bytes, ReplyHeaders]:
    """``response(..., binary=False)`` for big outputs, to run in a thread: the data is encoded a
    slice at a time (``json_text``), so the event loop, and the group heartbeats on it, get the GIL
    in between (4M floats took 6.5 s in one ``json.dumps``: past the worker's session timeout)."""
    compact = (",", ":")
    body = {"v": 1, "model_name": model, "model_version": str(version), "id": response_id or request_id}
    tensors = []
    for name, arr in outputs.items():
        dt = tc.datatype_of(arr)
        meta = json.dumps({"name": name, "shape": [int(d) for d in arr.shape], "datatype": dt.value},
                          separators=compact)
        tensors.append(f'{meta[:-1]},"data":{json_text(arr, dt, name)}}}')
    head = json.dumps(body, separators=compact)
    value = f'{head[:-1]},"outputs":[{",".join(tensors)}],"kind":"{InferenceResponse.KIND}"}}'.encode()
    extra = {h.CONTENT_TYPE: tc.JSON, STATUS: "200", h.MODEL_VERSION: str(version)}
    return value, _headers(request_id, request_headers, extra)


class BinaryResponses:
    """Binary replies of one model, fast: the JSON around the id is cached per output layout.

    Produces the same bytes as ``response(..., binary=True)`` (a test checks it).
    """

    def __init__(self, model: str) -> None:
        self.model = model
        self._templates = tc.BodyTemplates(InferenceResponse.KIND, "outputs")
        self._extra: dict[int, dict[str, str]] = {}  # version -> body fields around the outputs

    def encode(
        self, version: int, request_id: str, response_id: str | None, outputs: Mapping[str, np.ndarray],
        request_headers: Mapping[str, str], cut: tuple[bytes, bytes] | None = None,
    ) -> tuple[bytes, ReplyHeaders]:
        """``cut``: this layout's ``cut()``, when the caller already has it (a batch of replies)."""
        extra = self._extra_of(version)
        mv = extra["model_version"]
        cut = cut or self._templates.cut(outputs, extra)
        enc = self._templates.fill(cut, response_id or request_id, outputs)
        hdrs = {h.CORRELATION_ID: request_id, h.CONTENT_TYPE: tc.BINARY,
                tc.HEADER_LENGTH: enc.headers[tc.HEADER_LENGTH], STATUS: "200", h.MODEL_VERSION: mv}
        if h.TENANT in request_headers or h.TRACEPARENT in request_headers:
            hdrs.update(passed_on(request_headers))
        return enc.value, hdrs

    def cut(self, version: int, outputs: Mapping[str, np.ndarray]) -> tuple[bytes, bytes]:
        """The reply JSON around the id for outputs of this layout."""
        return self._templates.cut(outputs, self._extra_of(version))

    def _extra_of(self, version: int) -> dict[str, str]:
        extra = self._extra.get(version)
        if extra is None:
            extra = self._extra[version] = {"model_name": self.model, "model_version": str(version)}
        return extra


def error(
    model: str, request_id: str, exc: AiaasError, *, request_headers: Mapping[str, str],
) -> tuple[bytes, ReplyHeaders]:
    """Value and headers of an error reply (always JSON)."""
    details = {k: v for k, v in exc.details.items() if isinstance(v, str | int | float | bool | list | dict)}
    msg = ErrorReply(
        id=request_id, model_name=model, error=exc.reason, code=exc.code.value,
        status_code=exc.status_code, retriable=exc.retriable, details=details or None,
    )
    extra = {h.CONTENT_TYPE: tc.JSON, STATUS: str(exc.status_code)}
    return msg.to_record(), _headers(request_id, request_headers, extra)
