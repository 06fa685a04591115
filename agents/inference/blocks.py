"""Rows entries (docs/wire-protocol.md) in the worker: one ``Work`` for a block's requests, taken
apart (``explode``) into per-request ``Work`` when the model cannot batch, batching is off, the
block fails in onnxruntime or its reply is too big for one record. Each part is then a record of
its own whose entry a dead letter keeps (``intake.whole``), ready to replay.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from aiaas.agents.inference.batcher import Work
from aiaas.agents.inference.sessions import Loaded
from aiaas.streams import frame
from aiaas.streams import headers as h
from aiaas.streams.record import Record


def block_work(rec: Record, ids: list[str], arrays: dict[str, np.ndarray], model: Loaded,
               per: int | None, sig: Any) -> Work:
    """The block's ``Work``. ``arrays``: ``(len(ids), *shape)``; ``per``: rows per request, None when
    the requests cannot be batched (the ``Work`` is then only good for ``explode``)."""
    if per is not None:
        arrays = {n: a.reshape(len(ids) * per, *a.shape[2:]) for n, a in arrays.items()}
    return Work(rec, ids[0], rec.headers.get(h.REPLY_TO), arrays, model,
                None if per is None else per * len(ids), None, None, sig, ids)


def explode(w: Work) -> list[Work]:
    """The single requests of a block's ``Work`` (views of its rows)."""
    rec, out = w.record, []
    for rid, inputs in zip(w.ids, rows_of(w, w.inputs), strict=True):
        record = Record(rec.topic, rec.partition, rec.offset, rid.encode(), None,
                        {**rec.headers, h.CORRELATION_ID: rid}, rec.timestamp_ms, rec.first_offset,
                        frame.Entry([rid], inputs))
        out.append(Work(record, rid, w.reply_to, inputs, w.model, w.rows_each or None, None, None, w.sig))
    return out


def rows_of(w: Work, arrays: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """A block's inputs or outputs, per request (views)."""
    per = w.rows_each
    return [{n: a[k * per:(k + 1) * per] if per else a[k] for n, a in arrays.items()} for k in range(w.count)]


def stacked(w: Work, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A block's outputs as rows of its entry: ``(len(ids), per, ...)``."""
    return {n: o.reshape(w.count, w.rows_each, *o.shape[1:]) for n, o in outputs.items()}
