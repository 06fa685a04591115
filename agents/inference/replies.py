"""Reply records: an OIP response or an error, with the headers callers match replies by."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from schemas.errors import AiaasError
from schemas.inference import ErrorReply, InferenceResponse
from streams import headers as h
from streams import tensorcodec as tc
from streams.client import STATUS

PASS_THROUGH = (h.TRACEPARENT, h.TENANT)


def _headers(
    request_id: str, request_headers: Mapping[str, str], extra: Mapping[str, str]
) -> list[tuple[str, bytes]]:
    values = {h.CORRELATION_ID: request_id, **extra}
    for name in PASS_THROUGH:
        if name in request_headers:
            values[name] = request_headers[name]
    return [(k, v.encode()) for k, v in values.items()]


def response(
    model: str, version: int, request_id: str, response_id: str | None, outputs: Mapping[str, np.ndarray],
    *, binary: bool, request_headers: Mapping[str, str],
) -> tuple[bytes, list[tuple[str, bytes]]]:
    """Value and headers of a successful reply, in the request's encoding."""
    body = {"model_name": model, "model_version": str(version), "id": response_id or request_id}
    enc = tc.encode_body(InferenceResponse.KIND, body, "outputs", outputs, binary=binary)
    extra = {**enc.headers, STATUS: "200", h.MODEL_VERSION: str(version)}
    return enc.value, _headers(request_id, request_headers, extra)


_Layout = tuple[bytes, bytes, list[tuple[str, bytes]]]  # JSON before the id, after it, fixed headers


class BinaryResponses:
    """Binary replies of one model, fast: the JSON around each reply is cached per output layout.

    Produces the same bytes as ``response(..., binary=True)`` (a test checks it); only the id and
    the tensor bytes change from one reply to the next.
    """

    def __init__(self, model: str, max_layouts: int = 256) -> None:
        self.model = model
        self.max_layouts = max_layouts
        self._layouts: dict[tuple[Any, ...], _Layout] = {}

    def encode(
        self, version: int, request_id: str, response_id: str | None, outputs: Mapping[str, np.ndarray],
        request_headers: Mapping[str, str],
    ) -> tuple[bytes, list[tuple[str, bytes]]]:
        key = (version, tuple((n, a.dtype, a.shape) for n, a in outputs.items()))
        layout = self._layouts.get(key)
        if layout is None:
            layout = self._layout(version, outputs)
        prefix, suffix, fixed = layout
        head = prefix + _json_str(response_id or request_id) + suffix
        raws = [np.ascontiguousarray(a).tobytes() for a in outputs.values()]
        hdrs = [(h.CORRELATION_ID, request_id.encode()), (tc.HEADER_LENGTH, str(len(head)).encode()), *fixed]
        for name in PASS_THROUGH:
            if name in request_headers:
                hdrs.append((name, request_headers[name].encode()))
        return b"".join([head, *raws]), hdrs

    def _layout(self, version: int, outputs: Mapping[str, np.ndarray]) -> _Layout:
        marker = "\x00id\x00"
        body = {"model_name": self.model, "model_version": str(version), "id": marker}
        sample = tc.encode_body(InferenceResponse.KIND, body, "outputs", outputs, binary=True)
        head = sample.value[: int(sample.headers[tc.HEADER_LENGTH])]
        prefix, _, suffix = head.partition(_json_str(marker))
        fixed = [("content-type", tc.BINARY.encode()), (STATUS, b"200"),
                 (h.MODEL_VERSION, str(version).encode())]
        if len(self._layouts) >= self.max_layouts:
            self._layouts.clear()
        layout = self._layouts[(version, tuple((n, a.dtype, a.shape) for n, a in outputs.items()))] = (
            prefix, suffix, fixed)
        return layout


def _json_str(value: str) -> bytes:
    return json.dumps(value).encode()  # ASCII-escaped, like the JSON encoder of tensorcodec


def error(
    model: str, request_id: str, exc: AiaasError, *, request_headers: Mapping[str, str],
) -> tuple[bytes, list[tuple[str, bytes]]]:
    """Value and headers of an error reply (always JSON)."""
    details = {k: v for k, v in exc.details.items() if isinstance(v, str | int | float | bool | list | dict)}
    msg = ErrorReply(
        id=request_id, model_name=model, error=exc.reason, code=exc.code.value,
        status_code=exc.status_code, retriable=exc.retriable, details=details or None,
    )
    extra = {"content-type": tc.JSON, STATUS: str(exc.status_code)}
    return msg.to_record(), _headers(request_id, request_headers, extra)
