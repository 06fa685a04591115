"""Request intake: one record in, one checked ``Work`` out (or the AiaasError to reply with).

A request batch record (``aiaas.streams.batchwire``) is first split into the requests it carries, each a
``Record`` of its own (the batch's topic, partition and offset; its own key, headers and value).
A request block (``aiaas.streams.blockwire``) stays whole: ``Intake.block`` checks it once for all its
requests (size, deadline, version, signature) and gives one ``Work`` per version it goes to.

Order of checks: size, deadline, decoding (the layout cache, else the validating decoder with its
field-level messages), element count, version (pin header or canary routing), signature, outputs.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from aiaas.agents.inference import batcher, blocks
from aiaas.agents.inference.batcher import Work
from aiaas.agents.inference.sessions import Loaded, Sessions
from aiaas.agents.inference.settings import WorkerSettings
from aiaas.schemas.errors import AiaasError, BadInput, DeadlineExceeded, ErrorCode, TooLarge
from aiaas.schemas.inference import InferenceRequest
from aiaas.streams import batchwire, blockwire
from aiaas.streams import headers as h
from aiaas.streams import tensorcodec as tc
from aiaas.streams.layoutcache import LayoutCache
from aiaas.streams.record import Record

REQUEST_KEYS = frozenset({"v", "id", "parameters", "inputs", "outputs"})
log = logging.getLogger(__name__)


def request_id(rec: Record) -> str:
    """The id replies are matched by: the correlation-id header, else the key, else the offset."""
    return rec.headers.get(h.CORRELATION_ID) or (rec.key or b"").decode("utf-8", "replace") or \
        f"{rec.topic}:{rec.partition}:{rec.offset}"


def unpack(rec: Record) -> list[Record]:
    """The requests of a request batch record (raises InvalidMessage when it is malformed)."""
    shared = {k: v for k, v in rec.headers.items() if k != h.CONTENT_TYPE and k != batchwire.LENGTH}
    return [Record(rec.topic, rec.partition, rec.offset, hd[h.CORRELATION_ID].encode(), value,
                   {**shared, **hd}, rec.timestamp_ms, rec.first_offset)
            for hd, value in batchwire.unpack(rec.value, rec.headers)]


def unreadable(exc: Exception) -> AiaasError:
    """The error reply of a request that failed its checks (or, unforeseen, broke them: that too is
    the request's failure, never the worker's)."""
    if isinstance(exc, AiaasError):
        return exc
    log.exception("request check failed unexpectedly")
    return AiaasError("request could not be read", code=ErrorCode.BAD_REQUEST,
                      detail=f"{type(exc).__name__}: {exc}"[:300])


def split(records: list[Record]) -> tuple[list[Record], list[tuple[Record, AiaasError]]]:
    """The requests of a poll (request batch records split up), and the batches that were malformed."""
    if not any(r.headers.get(h.CONTENT_TYPE) == batchwire.REQUESTS for r in records):
        return records, []
    out: list[Record] = []
    rejected: list[tuple[Record, AiaasError]] = []
    for rec in records:
        if rec.headers.get(h.CONTENT_TYPE) != batchwire.REQUESTS:
            out.append(rec)
            continue
        try:
            out += unpack(rec)
        except AiaasError as exc:
            rejected.append((rec, exc))
    return out, rejected


def plain(body: dict[str, Any]) -> bool:
    """The fast-decoded fields have the types the validating decoder would insist on."""
    rid, params, outs = body.get("id"), body.get("parameters"), body.get("outputs")
    return ((rid is None or (isinstance(rid, str) and len(rid) <= 128))
            and (params is None or isinstance(params, dict))
            and (outs is None or (isinstance(outs, list)
                                  and all(isinstance(o, dict) and o.keys() <= {"name", "parameters"}
                                          and isinstance(o.get("name"), str) for o in outs))))


class Intake:
    """Decodes and checks requests for one worker (keeps the per-layout decode cache)."""

    def __init__(self, cfg: WorkerSettings, sessions: Sessions) -> None:
        self.cfg = cfg
        self.sessions = sessions
        self.layouts = LayoutCache(InferenceRequest.KIND, "inputs", REQUEST_KEYS)

    async def work(self, rec: Record, rid: str) -> Work:
        """The checked request; raises the AiaasError its error reply should carry."""
        hd = rec.headers
        size = len(rec.value) if rec.value is not None else 0
        if size > self.cfg.max_request_bytes:
            raise TooLarge("request over the size limit", size=size, limit=self.cfg.max_request_bytes)
        if h.DEADLINE in hd and h.expired(hd):
            raise DeadlineExceeded("deadline passed before compute", deadline=hd.get(h.DEADLINE))
        fast = self.layouts.decode(rec.value, hd)
        pin = hd.get(h.MODEL_VERSION)
        if fast is not None and fast.layout is not None and not pin:
            known = self._known_work(rec, rid, fast)
            if known is not None:
                return known
        body, arrays = self._decode(rec, fast)
        elements = 0
        for a in arrays.values():
            elements += a.size
        if elements > self.cfg.max_request_elements:
            raise TooLarge("request has too many elements", elements=elements,
                           limit=self.cfg.max_request_elements)
        model = self.sessions.route(rid) if not pin else await self._pinned(pin)
        rows, sig = batcher.check_layout(model.mv.inputs, arrays, model.checked)
        wanted = self._wanted(body.get("outputs"), model)
        binary = tc.is_binary(hd) or (body.get("parameters") or {}).get("binary_data_output") is True
        work = Work(rec, rid, hd.get(h.REPLY_TO), binary, arrays, model,
                    rows if self.cfg.batching else None, wanted, body.get("id"), sig)
        if fast is not None and fast.layout is not None and body is fast.body and not pin:  # per version
            if len(model.known) >= 1024:
                model.known.clear()
            model.known[id(fast.layout)] = (fast.layout, work.rows, wanted, sig)
        return work

    def _known_work(self, rec: Record, rid: str, fast: tc.Decoded) -> Work | None:
        """A binary request of a layout this version has checked before: no checks to repeat
        (the layout fixes names, dtypes, shapes, element count, parameters and outputs)."""
        model = self.sessions.route(rid)
        known = model.known.get(id(fast.layout))
        body_id = fast.body.get("id")
        if known is None or known[0] is not fast.layout or not (type(body_id) is str and len(body_id) <= 128):
            return None
        return Work(rec, rid, rec.headers.get(h.REPLY_TO), True, fast.arrays, model, known[1], known[2],
                    body_id, known[3])

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

    def _decode(self, rec: Record, fast: tc.Decoded | None) -> tuple[dict[str, Any], dict[str, Any]]:
        if fast is not None and plain(fast.body):
            return fast.body, fast.arrays
        # JSON tensors, or anything unusual: the validating decoder (and its error messages)
        req, arrays = tc.decode(rec.value, rec.headers, InferenceRequest, "inputs")
        return req.model_dump(exclude={"inputs"}, exclude_none=True), arrays

    async def block(self, rec: Record, block: blockwire.Block) -> list[Work]:
        """The checked works of a request block (one per version and ``max_batch`` requests; one per
        request when they cannot be batched); raises the AiaasError every request of it gets."""
        hd = rec.headers
        first = {n: a[0] for n, a in block.arrays.items()}
        size = sum(a.nbytes for a in first.values())
        if size > self.cfg.max_request_bytes:
            raise TooLarge("request over the size limit", size=size, limit=self.cfg.max_request_bytes)
        elements = sum(a.size for a in first.values())
        if elements > self.cfg.max_request_elements:
            raise TooLarge("request has too many elements", elements=elements,
                           limit=self.cfg.max_request_elements)
        if h.DEADLINE in hd and h.expired(hd):
            raise DeadlineExceeded("deadline passed before compute", deadline=hd.get(h.DEADLINE))
        pin = hd.get(h.MODEL_VERSION)
        out: list[Work] = []
        for model, part in await self._routed(block, pin):
            rows, sig = batcher.check_layout(model.mv.inputs, first, model.checked)
            if rows is None or not self.cfg.batching:
                out += blocks.explode(blocks.block_work(rec, part.ids, part.arrays, model, None, sig))
                continue
            step = self.cfg.max_batch
            for i in range(0, len(part.ids), step):
                chunk = part if len(part.ids) <= step else part.rows(slice(i, i + step))
                out.append(blocks.block_work(rec, chunk.ids, chunk.arrays, model, rows, sig))
        return out

    async def _routed(self, block: blockwire.Block, pin: str | None) -> list[tuple[Loaded, blockwire.Block]]:
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
        return [(model, block.rows(np.asarray(rows))) for model, rows in picked.values()]

    async def _pinned(self, pin: str) -> Loaded:
        try:
            version = int(pin)
        except ValueError:
            raise BadInput("model-version header is not a version number", got=pin) from None
        return await self.sessions.pinned(version)
