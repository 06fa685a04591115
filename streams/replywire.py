"""The records of request-reply inference: encoding a request, reading a reply, batched replies.

``aiaas.client.inference`` sends and awaits these; the inference workers write the replies. Single replies
are one record each (key = request id). A client that sends the request header ``reply-batch: 1``
also accepts *batched reply records*: one record per (reply topic, worker batch), in the layout
``aiaas.streams.batchwire`` describes (content-type ``application/vnd.aiaas.reply-batch``). Each entry is
exactly the record a single reply would have been, so splitting a batch gives the same ``Reply``
objects, and dedup by ``correlation-id`` and per-request errors work as before.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aiaas.schemas.errors import ErrorCode, InferenceError, InvalidMessage
from aiaas.schemas.inference import ErrorReply, InferenceRequest, InferenceResponse, RequestOutput, Tensor
from aiaas.streams import batchwire, blockwire
from aiaas.streams import headers as h
from aiaas.streams import tensorcodec as tc
from aiaas.streams.layoutcache import LayoutCache

STATUS = h.STATUS_CODE
REPLY_BATCH = h.REPLY_BATCH  # request header: "1" = the sender accepts batched reply records
BATCH = batchwire.REPLIES  # content-type of a batched reply record
BLOCK = blockwire.REPLIES  # content-type of a reply block
RESPONSE_KEYS = frozenset({"v", "model_name", "model_version", "id", "parameters", "outputs"})
_REPLY_LAYOUTS = LayoutCache(InferenceResponse.KIND, "outputs", RESPONSE_KEYS)
_REQUESTS = tc.BodyTemplates(InferenceRequest.KIND, "inputs")
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
    """A raw reply record: what the bridge forwards without decoding the tensors."""

    request_id: str
    value: bytes
    headers: dict[str, str]
    decoded: InferResult | None = None  # a row of a reply block comes decoded (``value`` is empty)

    @property
    def ok(self) -> bool:
        status = self.headers.get(STATUS)
        if status is not None:
            return status == "200"
        head, _ = tc.split_value(self.value, self.headers)
        return tc.peek_kind(head) != ErrorReply.KIND

    def error(self) -> InferenceError:
        head, _ = tc.split_value(self.value, self.headers)
        return error_of(ErrorReply.from_record(head))

    def result(self) -> InferResult:
        """Decode an OK reply (raises its InferenceError otherwise)."""
        if self.decoded is not None:
            return self.decoded
        if not self.ok:
            raise self.error()
        fast = _REPLY_LAYOUTS.decode(self.value, self.headers)
        if fast is not None and isinstance(fast.body.get("model_name"), str):
            b = fast.body
            return InferResult(str(b.get("id") or self.request_id), b["model_name"],
                               _opt_str(b.get("model_version")), fast.arrays, b.get("parameters") or {})
        resp, arrays = tc.decode(self.value, self.headers, InferenceResponse, "outputs")
        return InferResult(resp.id or self.request_id, resp.model_name, resp.model_version,
                           arrays, resp.parameters or {}, resp)


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


@dataclass(slots=True)
class InferResult:
    id: str
    model_name: str
    model_version: str | None
    outputs: dict[str, np.ndarray]
    parameters: dict[str, Any] = field(default_factory=dict)
    response: InferenceResponse | None = None

    def to_response(self) -> InferenceResponse:
        """The OIP JSON response (data inline), e.g. for an HTTP reply."""
        tensors = [tc.from_numpy(n, a) for n, a in self.outputs.items()]
        return InferenceResponse(model_name=self.model_name, model_version=self.model_version,
                                 id=self.id, parameters=self.parameters or None, outputs=tensors)


def encode_request(
    inputs: Inputs, *, request_id: str, binary: bool, parameters: dict[str, Any] | None = None,
    outputs: Sequence[str] | None = None,
) -> tc.Encoded:
    """The record value + content headers of an OIP request for ``inputs``."""
    if isinstance(inputs, Mapping) and binary and not parameters and not outputs:
        return _REQUESTS.encode(request_id, {n: np.asarray(a) for n, a in inputs.items()})
    if isinstance(inputs, Mapping):
        body: dict[str, Any] = {"id": request_id}
        if parameters:
            body["parameters"] = parameters
        if outputs:
            body["outputs"] = [{"name": o} for o in outputs]
        arrays = {n: np.asarray(a) for n, a in inputs.items()}
        return tc.encode_body(InferenceRequest.KIND, body, "inputs", arrays, binary=binary)
    tensors, raw = list(inputs), []
    if binary:
        raw = [tc.to_numpy(t) for t in tensors]
        tensors = [tc.from_numpy(t.name, a, binary=True) for t, a in zip(tensors, raw, strict=True)]
    req = InferenceRequest.model_construct(
        id=request_id, parameters=parameters, inputs=tensors,
        outputs=[RequestOutput(name=o) for o in outputs] if outputs else None, v=1,
    )
    return tc.encode(req, tensors, raw, binary=binary)


# --------------------------------------------------------------------------- batched replies


def pack_batch(replies: Iterable[tuple[Mapping[str, str], bytes]]) -> tuple[bytes, list[tuple[str, bytes]]]:
    """Value and headers of one batched reply record holding ``(headers, value)`` replies."""
    return batchwire.pack(replies, BATCH)


def is_batch(headers: Mapping[str, str]) -> bool:
    return headers.get(h.CONTENT_TYPE) == BATCH


def unpack_batch(value: bytes | None, headers: Mapping[str, str]) -> list[Reply]:
    """The replies of a batched reply record; raises InvalidMessage when it is malformed."""
    return [Reply(hd[h.CORRELATION_ID], v, hd) for hd, v in batchwire.unpack(value, headers)]


_BLOCK_HEAD = frozenset({"model_name", "model_version"})


def unpack_block(value: bytes | None, headers: Mapping[str, str]) -> list[Reply]:
    """The replies of a reply block (``aiaas.streams.blockwire``), decoded; raises InvalidMessage when it
    is malformed."""
    block = blockwire.decode(value, headers, "outputs", _BLOCK_HEAD)
    name, version = block.head.get("model_name"), block.head.get("model_version")
    if headers.get(STATUS) != "200" or not isinstance(name, str) or not isinstance(version, str | None):
        raise InvalidMessage("reply block needs status-code 200, a model_name and a model_version")
    hd = dict(headers)
    arrays = block.arrays.items()
    return [Reply(rid, b"", hd, InferResult(rid, name, version, {n: a[k] for n, a in arrays}))
            for k, rid in enumerate(block.ids)]
