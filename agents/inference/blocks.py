"""Entries of stacked rows in the worker (``aiaas.streams.frame``): one ``Work`` for the requests of a
rows entry, taken apart into per-request ``Work`` when a request has to go its own way.

A block's ``Work`` holds the stacked inputs of all its requests (``rows`` rows, ``len(ids)``
requests of ``rows // len(ids)`` rows each); the batcher runs it like any other and its answer is
one rows entry of the reply frame. It is taken apart (``explode``) when the model cannot batch,
batching is off, the block fails in onnxruntime (to find the request that fails) or its reply would
be too big for one record. Each part is then the single request it stands for, a record of its own
whose entry a dead letter keeps (``intake.whole``), ready to replay.
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
    if per is None:
        return Work(rec, ids[0], rec.headers.get(h.REPLY_TO), True, arrays, model, None, None, None, sig, ids)
    stacked = {n: a.reshape(len(ids) * per, *a.shape[2:]) for n, a in arrays.items()}
    return Work(rec, ids[0], rec.headers.get(h.REPLY_TO), True, stacked, model, per * len(ids), None, None,
                sig, ids)


def explode(w: Work) -> list[Work]:
    """The single requests of a block's ``Work`` (views of its rows)."""
    ids = w.ids
    per = w.rows_each
    rec = w.record
    out = []
    for k, rid in enumerate(ids):
        inputs = {n: a[k * per:(k + 1) * per] for n, a in w.inputs.items()} if per else \
            {n: a[k] for n, a in w.inputs.items()}
        record = Record(rec.topic, rec.partition, rec.offset, rid.encode(), None,
                        {**rec.headers, h.CORRELATION_ID: rid}, rec.timestamp_ms, rec.first_offset,
                        frame.Entry([rid], inputs))
        out.append(Work(record, rid, w.reply_to, True, inputs, w.model, per or None, None, None, w.sig))
    return out


def row_results(w: Work, outputs: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """A block's outputs, per request."""
    per = w.rows_each
    return [{name: o[k * per:(k + 1) * per] for name, o in outputs.items()} for k in range(w.count)]


def stacked(w: Work, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A block's outputs as rows of its entry: ``(len(ids), per, ...)``."""
    return {n: o.reshape(w.count, w.rows_each, *o.shape[1:]) for n, o in outputs.items()}
