"""Request blocks in the worker (``aiaas.streams.blockwire``): one ``Work`` for a block's requests, taken
apart into per-request ``Work`` when a request has to go its own way, and replies as a reply block.

A block's ``Work`` holds the stacked inputs of all its requests (``rows`` rows, ``len(ids)``
requests of ``rows // len(ids)`` rows each); the batcher runs it like any other. It is taken apart
(``explode``) when the model cannot batch, batching is off, the block fails in onnxruntime (to find
the request that fails), or its answers must go one by one (no ``reply-to``, or a sender that does
not read reply blocks). Each part is then the single binary request it stands for, with a record of
its own (a dead letter holds that request, ready to replay).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from aiaas.agents.inference.batcher import Work
from aiaas.agents.inference.replies import ReplyHeaders, passed_on
from aiaas.agents.inference.sessions import Loaded
from aiaas.schemas.inference import InferenceRequest
from aiaas.streams import blockwire
from aiaas.streams import headers as h
from aiaas.streams import tensorcodec as tc
from aiaas.streams.record import Record
from aiaas.streams.replywire import STATUS

_REQUESTS = tc.BodyTemplates(InferenceRequest.KIND, "inputs")
_BLOCK_OWN = frozenset({h.CONTENT_TYPE, blockwire.LENGTH, blockwire.ACCEPT})


def block_work(rec: Record, ids: list[str], arrays: dict[str, np.ndarray], model: Loaded,
               per: int | None, sig: Any) -> Work:
    """The block's ``Work``. ``arrays``: ``(len(ids), *shape)``; ``per``: rows per request, None when
    the requests cannot be batched (the ``Work`` is then only good for ``explode``)."""
    if per is None:
        return Work(rec, ids[0], rec.headers.get(h.REPLY_TO), True, arrays, model, None, None, None, sig, ids)
    stacked = {n: a.reshape(len(ids) * per, *a.shape[2:]) for n, a in arrays.items()}
    return Work(rec, ids[0], rec.headers.get(h.REPLY_TO), True, stacked, model, per * len(ids), None, None,
                sig, ids)


def explode(w: Work) -> list[Work]:
    """The single requests of a block's ``Work`` (views of its rows)."""
    ids = w.ids or [w.request_id]
    per = w.rows_each
    shared = {k: v for k, v in w.record.headers.items() if k not in _BLOCK_OWN}
    rec = w.record
    out = []
    for k, rid in enumerate(ids):
        inputs = {n: a[k * per:(k + 1) * per] for n, a in w.inputs.items()} if per else \
            {n: a[k] for n, a in w.inputs.items()}
        enc = _REQUESTS.encode(rid, inputs)
        record = Record(rec.topic, rec.partition, rec.offset, rid.encode(), enc.value,
                        {**shared, **enc.headers, h.CORRELATION_ID: rid}, rec.timestamp_ms, rec.first_offset)
        out.append(Work(record, rid, w.reply_to, True, inputs, w.model, per or None, None, rid, w.sig))
    return out


def row_results(w: Work, outputs: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """A block's outputs, per request."""
    per = w.rows_each
    return [{name: o[k * per:(k + 1) * per] for name, o in outputs.items()} for k in range(w.count)]


def reply_block(model: str, version: int, works: Sequence[Work], results: Sequence[dict[str, np.ndarray]],
                ) -> tuple[bytes, list[tuple[str, bytes]]]:
    """One reply block for blocks of the same reply topic and rows per request."""
    ids = [rid for w in works for rid in (w.ids or ())]
    per = works[0].rows_each
    names = list(results[0])
    stacked = {n: np.concatenate([r[n] for r in results]) if len(results) > 1 else results[0][n]
               for n in names}
    stacked = {n: a.reshape(len(ids), per, *a.shape[1:]) for n, a in stacked.items()}
    head = {"model_name": model, "model_version": str(version)}
    value, kind = blockwire.encode(blockwire.REPLIES, head, "outputs", ids, stacked)
    hdrs: ReplyHeaders = {STATUS: "200", h.MODEL_VERSION: str(version)}
    first = works[0].record.headers
    if h.TENANT in first or h.TRACEPARENT in first:
        hdrs.update(passed_on(first))
    return value, [*kind, *((k, v.encode()) for k, v in hdrs.items())]


def reply_key(w: Work, outputs: dict[str, np.ndarray]) -> tuple[Any, ...]:
    """Blocks with equal keys share a reply block: reply topic, rows per request, output layout."""
    return (w.reply_to, w.rows_each, tuple([(n, o.dtype, o.shape[1:]) for n, o in outputs.items()]))


def accepts_blocks(w: Work) -> bool:
    """The block has a reply topic and its sender reads reply blocks (``blockable`` says whether the
    outputs can travel in one)."""
    return w.reply_to is not None and w.record.headers.get(blockwire.ACCEPT) == "1"


def blockable(outputs: dict[str, np.ndarray]) -> bool:
    return all(blockwire.blockable(o) for o in outputs.values())
