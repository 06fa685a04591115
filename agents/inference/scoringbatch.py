"""One poll of stream scoring, from record values to what each input partition writes.

``compute`` runs in the worker's thread: the source decoder (``aiaas.sources``), one onnxruntime
call for the rows that decoded (a batch the model refuses is run row by row, so only the rows at
fault fail), and the prediction values (``predictions``). ``outgoing`` puts each partition's
predictions (with the ``source-*`` headers) and dead letters (the reason naming the field) in
offset order. See agents/inference/scoring.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np
from aiokafka.structs import ConsumerRecord, TopicPartition

from aiaas.agents.inference import predictions
from aiaas.agents.inference.sessions import Loaded
from aiaas.agents.inference.transactions import Outgoing
from aiaas.schemas.errors import AiaasError, BadInput
from aiaas.sources.decoded import Decoded, Decoder, Rejection
from aiaas.streams import headers as h
from aiaas.streams.dlq import refused_field
from aiaas.streams.record import plain_record

log = logging.getLogger(__name__)
Raw: TypeAlias = ConsumerRecord[bytes, bytes]
Encode: TypeAlias = Callable[[dict[str, np.ndarray], Sequence[str], int, Sequence[dict[str, Any]] | None],
                             list[bytes]]


@dataclass(slots=True)
class Scored:
    """A poll after decoding and onnxruntime: what each partition writes."""

    outs: list[Outgoing]
    scored: int
    rejected: int


def compute(decoder: Decoder, flat: list[Raw], loaded: Loaded,
            encode: Encode = predictions.encode) -> tuple[Decoded, list[bytes], dict[int, str]]:
    """Decode, run and encode one poll (in the worker thread); ``encode`` writes the values (JSON,
    or ``predictions_avro``). Rows onnxruntime refuses are found one by one and returned as
    ``failed`` (batch index -> reason)."""
    decoded = decode_contained(decoder, [r.value or b"" for r in flat])
    if not len(decoded.ok):
        return decoded, [], {}
    name = loaded.session.get_inputs()[0].name
    try:
        outs = loaded.run({name: decoded.x})
    except Exception:  # a row the model refuses must not fail the rest
        return _row_by_row(decoded, loaded, name, encode)
    return decoded, encode(outs, loaded.output_names, loaded.version, decoded.passthrough), {}


def _row_by_row(decoded: Decoded, loaded: Loaded, name: str,
                encode: Encode) -> tuple[Decoded, list[bytes], dict[int, str]]:
    keep, values, failed = [], [], {}
    for i, idx in enumerate(decoded.ok.tolist()):
        try:
            outs = loaded.run({name: decoded.x[i:i + 1]})
        except Exception as exc:
            failed[idx] = " ".join(str(exc).split())[:300]
            continue
        keep.append(i)
        extra = [decoded.passthrough[i]] if decoded.passthrough else None
        values += encode(outs, loaded.output_names, loaded.version, extra)
    decoded.ok = decoded.ok[keep]
    decoded.passthrough = [decoded.passthrough[i] for i in keep] if decoded.passthrough else []
    return decoded, values, failed


def outgoing(batches: dict[TopicPartition, list[Raw]], flat: list[Raw], decoded: Decoded,
         values: list[bytes], failed: dict[int, str]) -> Scored:
    """Each partition's predictions (in offset order) and dead letters."""
    per: list[bytes | None]
    if len(values) == len(flat):  # every record scored: the common case
        per = list(values)
    else:
        per = [None] * len(flat)
        for idx, v in zip(decoded.ok.tolist(), values, strict=True):
            per[idx] = v
    why = {r.index: r for r in decoded.rejected}
    outs, i = [], 0
    for tp, recs in batches.items():
        out = Outgoing(tp, recs[-1].offset + 1)
        topic, part = (h.SOURCE_TOPIC, tp.topic.encode()), (h.SOURCE_PARTITION, b"%d" % tp.partition)
        for r, value in zip(recs, per[i:i + len(recs)], strict=True):
            if value is not None:
                out.predictions.append((r.key, value, [topic, part, (h.SOURCE_OFFSET, b"%d" % r.offset)]))
            else:
                j = i + len(out.predictions) + len(out.rejects)
                out.rejects.append((plain_record(r), _error(why.get(j), failed.get(j))))
        i += len(recs)
        outs.append(out)
    return Scored(outs, len(values), len(flat) - len(values))


def decode_contained(decoder: Decoder, values: Sequence[bytes]) -> Decoded:
    """``decoder.decode(values)``; a decoder that raises instead of rejecting fails only the
    records it raises on (decoded one by one to find them)."""
    try:
        return decoder.decode(values)
    except Exception:
        log.exception("the source decoder raised on a batch of %d; decoding record by record", len(values))
    rows, ok, passthrough, rejected = [], [], [], []
    for i, v in enumerate(values):
        try:
            one = decoder.decode([v])
        except Exception as exc:
            rejected.append(Rejection(i, "", f"decoder failed: {' '.join(str(exc).split())[:200]}"))
            continue
        if len(one.ok):
            rows.append(one.x)
            ok.append(i)
            passthrough += one.passthrough
        rejected += [Rejection(i, r.field, r.reason) for r in one.rejected]
    width = rows[0].shape[1] if rows else 0
    x = np.concatenate(rows) if rows else np.zeros((0, width), np.float32)
    return Decoded(x=x, ok=np.asarray(ok, dtype=np.int64), passthrough=passthrough, rejected=rejected)


def _error(rejection: Rejection | None, failure: str | None) -> AiaasError:
    """The dead letter's error: the decoder's reason naming the field, or the model's refusal."""
    if rejection is not None:
        return refused_field(rejection.field, rejection.reason)
    return BadInput("the model refused the record's features", detail=failure or "no result")
