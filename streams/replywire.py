"""Replies as the caller sees them (docs/wire-protocol.md): ``Reply`` and ``InferResult``.

A reply frame's entries become one ``Reply`` per request id (``replies_of``), so dedup by
``correlation-id`` and per-request errors work alike for frames and single OIP reply records.
``encode_request`` builds the OIP form of a request (what callers in other languages send).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aiaas.schemas.errors import ErrorCode, InferenceError, InvalidMessage
from aiaas.schemas.inference import ErrorReply, InferenceRequest, InferenceResponse, Tensor
from aiaas.streams import frame
from aiaas.streams import headers as h
from aiaas.streams import tensorcodec as tc

STATUS = h.STATUS_CODE
Inputs = Mapping[str, np.ndarray] | Sequence[Tensor]


def error_of(reply: ErrorReply) -> InferenceError:
    """The InferenceError an error reply stands for (an unknown code reads as ``internal``)."""
    try:
        code = ErrorCode(reply.code)
    except ValueError:
        code = ErrorCode.INTERNAL
    details = {"request_id": reply.id, "model": reply.model_name, **(reply.details or {})}
    return InferenceError(reply.error, code=code,
                          **{k: v for k, v in details.items() if k not in ("reason", "code")})


@dataclass(slots=True)
class Reply:
    """A reply: an OK entry of a reply frame comes decoded; an error entry, or a single OIP reply
    record (to an OIP request), keeps its JSON value."""

    request_id: str
    value: bytes
    headers: dict[str, str]
    decoded: InferResult | None = None  # an entry of a reply frame comes decoded (``value`` is empty)

    @property
    def ok(self) -> bool:
        status = self.headers.get(STATUS)
        if status is not None:
            return status == "200"
        return tc.peek_kind(self.value) != ErrorReply.KIND

    def error(self) -> InferenceError:
        return error_of(ErrorReply.from_record(self.value))

    def result(self) -> InferResult:
        """Decode an OK reply (raises its InferenceError otherwise)."""
        if self.decoded is not None:
            return self.decoded
        if not self.ok:
            raise self.error()
        resp, arrays = tc.decode(self.value, InferenceResponse, "outputs")
        return InferResult(resp.id or self.request_id, resp.model_name, resp.model_version,
                           arrays, resp.parameters or {}, resp)


@dataclass(slots=True)
class InferResult:
    id: str
    model_name: str
    model_version: str | None
    outputs: dict[str, np.ndarray]
    parameters: dict[str, Any] = field(default_factory=dict)
    response: InferenceResponse | None = None

    def to_response(self) -> InferenceResponse:
        """The OIP JSON response (data inline), e.g. to print: what a worker writes to an OIP request."""
        head = {"model_name": self.model_name, "model_version": self.model_version, "id": self.id,
                "parameters": self.parameters or None}
        enc = tc.encode_body(InferenceResponse.KIND, head, "outputs", self.outputs, binary=False)
        return InferenceResponse.from_record(enc.value)


def replies_of(value: bytes | None, headers: Mapping[str, str]) -> list[Reply]:
    """One Reply per request id of a reply frame; raises InvalidMessage when it is malformed."""
    out: list[Reply] = []
    for e in frame.decode(value, headers):
        f = e.fields
        status, name, version = f.get("status"), f.get("model_name"), f.get("model_version")
        if status != 200:
            out.append(_error_reply(e, headers))
            continue
        if not isinstance(name, str) or not isinstance(version, str | None):
            raise InvalidMessage("reply entry needs a model_name and a model_version", id=e.id)
        hd = {**headers, **e.headers, STATUS: "200"}
        if version is not None:
            hd[h.MODEL_VERSION] = version
        params = f.get("parameters") or {}
        parts = [(rid, {n: a[k] for n, a in e.tensors.items()}) for k, rid in enumerate(e.ids)] \
            if e.rows else [(e.id, e.tensors)]
        out += [Reply(rid, b"", {**hd, h.CORRELATION_ID: rid}, InferResult(rid, name, version, ts, params))
                for rid, ts in parts]
    return out


def _error_reply(e: frame.Entry, headers: Mapping[str, str]) -> Reply:
    """An error entry as the single error reply record it stands for (JSON value)."""
    status, err = e.fields.get("status"), e.fields.get("error")
    if type(status) is not int or not isinstance(err, dict) or e.rows:
        raise InvalidMessage("reply entry needs status 200, or an error status and an error", id=e.id)
    value = json.dumps({**err, "kind": ErrorReply.KIND, "id": e.id, "status_code": status}).encode()
    return Reply(e.id, value, {**headers, **e.headers, h.CORRELATION_ID: e.id, STATUS: str(status),
                               h.CONTENT_TYPE: tc.JSON})


def encode_request(inputs: Inputs, *, request_id: str, parameters: dict[str, Any] | None = None,
                   outputs: Sequence[str] | None = None) -> tc.Encoded:
    """The record value + content headers of an OIP JSON request for ``inputs``."""
    body = {"id": request_id, **request_fields(parameters, outputs)}
    return tc.encode_body(InferenceRequest.KIND, body, "inputs", arrays_of(inputs), binary=False)


def arrays_of(inputs: Inputs) -> dict[str, np.ndarray]:
    """A request's inputs as named arrays."""
    if isinstance(inputs, dict | Mapping):
        return {n: a if type(a) is np.ndarray else np.asarray(a) for n, a in inputs.items()}
    return {t.name: tc.to_numpy(t) for t in inputs}


def request_fields(parameters: dict[str, Any] | None, outputs: Sequence[str] | None) -> dict[str, Any]:
    """The fields of a request's frame entry besides its tensors."""
    fields: dict[str, Any] = {}
    if parameters:
        fields["parameters"] = parameters
    if outputs:
        fields["outputs"] = [{"name": o} for o in outputs]
    return fields
