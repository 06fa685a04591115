"""Request intake: one record in, one checked ``Work`` out (or the AiaasError to reply with).

A frame (docs/wire-protocol.md) is split into one ``Record`` per entry (``message``: the entry); a
rows entry stays whole and ``Intake.block`` checks it once for all its requests. A plain OIP record
is one request. Checks: size, deadline, decoding, element count, version, signature, outputs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from aiaas.agents.inference import batcher, blocks, text
from aiaas.agents.inference.batcher import Work
from aiaas.agents.inference.sessions import Loaded, Sessions
from aiaas.agents.inference.settings import WorkerSettings
from aiaas.schemas.errors import AiaasError, BadInput, DeadlineExceeded, ErrorCode, InvalidMessage, TooLarge
from aiaas.schemas.inference import InferenceRequest
from aiaas.streams import frame
from aiaas.streams import headers as h
from aiaas.streams import tensorcodec as tc
from aiaas.streams.record import Record

_FRAME_OWN = frozenset({h.INFERENCE_HEADER_LENGTH, h.WIRE_VERSION})
UNSUPPORTED = (f"unsupported content-type: send one OIP v2 JSON request ({tc.JSON}) or a frame "
               f"({frame.CONTENT_TYPE}); the OIP binary extension is served over HTTP (the bridge)")
log = logging.getLogger(__name__)


def request_id(rec: Record) -> str:
    """The id replies are matched by: the correlation-id header, else the key, else the offset."""
    return rec.headers.get(h.CORRELATION_ID) or (rec.key or b"").decode("utf-8", "replace") or \
        f"{rec.topic}:{rec.partition}:{rec.offset}"


def unpack(rec: Record) -> list[Record]:
    """The requests of a frame (raises InvalidMessage when it is malformed)."""
    shared = {k: v for k, v in rec.headers.items() if k not in _FRAME_OWN}
    return [Record(rec.topic, rec.partition, rec.offset, rec.key if e.rows else e.id.encode(), None,
                   {**shared, **e.headers, h.CORRELATION_ID: e.id}, rec.timestamp_ms, rec.first_offset, e)
            for e in frame.decode(rec.value, rec.headers)]


def whole(rec: Record) -> Record:
    """A request split from a frame with its value: the frame of its entry alone (what a dead
    letter keeps, ready to replay)."""
    if rec.value is not None or not isinstance(rec.message, frame.Entry):
        return rec
    value, headers = frame.encode([rec.message])
    return Record(rec.topic, rec.partition, rec.offset, rec.key, value,
                  {**rec.headers, **h.decode(headers)}, rec.timestamp_ms, rec.first_offset, rec.message)


def unreadable(exc: Exception) -> AiaasError:
    """The error reply of a request that failed its checks (or, unforeseen, broke them: that too is
    the request's failure, never the worker's)."""
    if isinstance(exc, AiaasError):
        return exc
    log.exception("request check failed unexpectedly")
    return AiaasError("request could not be read", code=ErrorCode.BAD_REQUEST,
                      detail=f"{type(exc).__name__}: {exc}"[:300])


def split(records: list[Record]) -> tuple[list[Record], list[tuple[Record, AiaasError]]]:
    """The requests of a poll (frames split up), and the frames that were malformed."""
    out: list[Record] = []
    rejected: list[tuple[Record, AiaasError]] = []
    for rec in records:
        if not frame.is_frame(rec.headers):
            out.append(rec)
            continue
        try:
            out += unpack(rec)
        except Exception as exc:  # a frame that cannot be read is its own failure, never the worker's
            rejected.append((rec, unreadable(exc)))
    return out, rejected


def plain(body: dict[str, Any]) -> bool:
    """A frame entry's fields have the types the validating OIP decoder would insist on."""
    params, outs = body.get("parameters"), body.get("outputs")
    return ((params is None or isinstance(params, dict))
            and (outs is None or (isinstance(outs, list)
                                  and all(isinstance(o, dict) and o.keys() <= {"name", "parameters"}
                                          and isinstance(o.get("name"), str) for o in outs))))


def _layout(model: Loaded, arrays: dict[str, np.ndarray]) -> tuple[int | None, Any]:
    """Rows and batch signature of a checked request (a text request: its texts, decoded in place)."""
    if text.wants(model.text, arrays):
        return text.checked(arrays), text.SIG
    return batcher.check_layout(model.mv.inputs, arrays, model.checked)


def _limits(cfg: WorkerSettings, hd: Mapping[str, str], size: int, arrays: Mapping[str, np.ndarray]) -> None:
    """The request's size, element count and deadline (in that order)."""
    if size > cfg.max_request_bytes:
        raise TooLarge("request over the size limit", size=size, limit=cfg.max_request_bytes)
    elements = sum(a.size for a in arrays.values())
    if elements > cfg.max_request_elements:
        raise TooLarge("request has too many elements", elements=elements, limit=cfg.max_request_elements)
    if h.DEADLINE in hd and h.expired(hd):
        raise DeadlineExceeded("deadline passed before compute", deadline=hd.get(h.DEADLINE))


class Intake:
    """Decodes and checks requests for one worker."""

    def __init__(self, cfg: WorkerSettings, sessions: Sessions) -> None:
        self.cfg = cfg
        self.sessions = sessions

    async def work(self, rec: Record, rid: str) -> Work:
        """The checked request; raises the AiaasError its error reply should carry."""
        hd = rec.headers
        entry = rec.message if isinstance(rec.message, frame.Entry) else None
        _limits(self.cfg, hd, entry.nbytes if entry is not None else len(rec.value or b""), {})
        if entry is not None and not plain(entry.fields):
            raise InvalidMessage("frame entry fields: parameters must be an object and outputs a list of "
                                 "objects with a name")
        body, arrays = (entry.fields, entry.tensors) if entry is not None else self._decode(rec)
        _limits(self.cfg, {}, 0, arrays)
        pin = hd.get(h.MODEL_VERSION)
        model = self.sessions.route(rid) if not pin else await self._pinned(pin)
        rows, sig = _layout(model, arrays)
        # a stage that forwards computes all it has; the last one picks the outputs asked for
        wanted = self._wanted(body.get("outputs"), model) if self.cfg.forward_to is None else None
        return Work(rec, rid, hd.get(h.REPLY_TO), arrays, model,
                    rows if self.cfg.batching else None, wanted, body.get("id"), sig)

    @staticmethod
    def _wanted(outputs: list[dict[str, Any]] | None, model: Loaded) -> list[str] | None:
        """The requested output names (None: all), each one the model has."""
        if not outputs:
            return None
        wanted = [o["name"] for o in outputs]
        unknown = sorted(set(wanted) - set(model.output_names))
        if unknown:
            raise BadInput("unknown output name", unknown=unknown, expected=model.output_names)
        return wanted

    @staticmethod
    def _decode(rec: Record) -> tuple[dict[str, Any], dict[str, Any]]:
        """An OIP JSON record, through the validating decoder (and its field-level messages)."""
        frame.check_version(rec.headers)
        kind = (rec.headers.get(h.CONTENT_TYPE) or tc.JSON).split(";")[0].strip()
        if kind != tc.JSON:
            raise InvalidMessage(UNSUPPORTED, content_type=kind[:80])
        req, arrays = tc.decode(rec.value, InferenceRequest, "inputs")
        return req.model_dump(exclude={"inputs"}, exclude_none=True), arrays

    async def block(self, rec: Record, block: frame.Entry) -> list[Work]:
        """The checked works of a request block (one per version and ``max_batch`` requests; one per
        request when they cannot be batched); raises the AiaasError every request of it gets."""
        hd = rec.headers
        if block.fields:
            raise BadInput("an entry of rows takes no parameters or outputs", fields=sorted(block.fields))
        first = {n: a[0] for n, a in block.tensors.items()}
        _limits(self.cfg, hd, sum(a.nbytes for a in first.values()), first)
        pin = hd.get(h.MODEL_VERSION)
        out: list[Work] = []
        for model, part in await self._routed(block, pin):
            texts = text.wants(model.text, first)  # texts: one work per request (its own reply parameters)
            rows, sig = (None, text.SIG) if texts else \
                batcher.check_layout(model.mv.inputs, first, model.checked)
            if rows is None or not self.cfg.batching:
                parts = blocks.explode(blocks.block_work(rec, part.ids, part.tensors, model, None, sig))
                for w in parts if texts else []:  # a text request is rows of its texts, batching or not
                    w.rows = text.checked(w.inputs)
                out += parts
                continue
            step = self.cfg.max_batch
            for i in range(0, len(part.ids), step):
                chunk = part if len(part.ids) <= step else part.take(slice(i, i + step))
                out.append(blocks.block_work(rec, chunk.ids, chunk.tensors, model, rows, sig))
        return out

    async def _routed(self, block: frame.Entry, pin: str | None) -> list[tuple[Loaded, frame.Entry]]:
        """The version(s) a block's requests go to: the pinned one, else the default and the canary
        for its share of the ids."""
        if pin:
            return [(await self._pinned(pin), block)]
        if self.sessions.canary is None:
            return [(self.sessions.route(block.ids[0]), block)]
        picked: dict[int, tuple[Loaded, list[int]]] = {}
        for k, rid in enumerate(block.ids):
            model = self.sessions.route(rid)
            picked.setdefault(id(model), (model, []))[1].append(k)
        if len(picked) == 1:
            return [(next(iter(picked.values()))[0], block)]
        return [(model, block.take(np.asarray(rows))) for model, rows in picked.values()]

    async def _pinned(self, pin: str) -> Loaded:
        try:
            version = int(pin)
        except ValueError:
            raise BadInput("model-version header is not a version number", got=pin) from None
        return await self.sessions.pinned(version)
