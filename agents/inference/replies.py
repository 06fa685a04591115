"""Reply records: an OIP response or an error, with the headers callers match replies by."""

from __future__ import annotations

from collections.abc import Mapping

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
    names = list(outputs)
    arrays = [outputs[n] for n in names]
    tensors = [tc.from_numpy(n, a, binary=binary) for n, a in zip(names, arrays, strict=True)]
    msg = InferenceResponse.model_construct(
        v=1, model_name=model, model_version=str(version), id=response_id or request_id,
        parameters=None, outputs=tensors,
    )
    enc = tc.encode(msg, tensors, arrays, binary=binary)
    extra = {**enc.headers, STATUS: "200", h.MODEL_VERSION: str(version)}
    return enc.value, _headers(request_id, request_headers, extra)


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
