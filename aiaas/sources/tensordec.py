"""Our own tensor records (``aiaas.streams.codecs.pack``: what ``aiaas data push`` writes).

A record is ``AIT1`` + a JSON header + safetensors; it may hold many rows (a push batch holds
``x`` float32 [rows, features] and ``y`` [rows]). A feature path names a tensor: ``x[]`` with
``width`` w reads a [rows, w] tensor (or one row [w]); a scalar path reads a [rows] tensor. The
label names a tensor too; passthrough paths name fields of the JSON header. A record of several
rows decodes to several rows: ``Decoded.ok`` then repeats that record's index once per row.
See docs/sources.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
import numpy as np

from aiaas.schemas.errors import AiaasError, ErrorCode, InvalidMessage
from aiaas.schemas.sources import Source
from aiaas.sources.decoded import Decoded, Rejection
from aiaas.sources.plan import Part, Plan, merge
from aiaas.streams.codecs import MAGIC, decode_tensors

_HEAD = len(MAGIC) + 4


def _bad(field: str, reason: str) -> InvalidMessage:
    """A tensor record this Source cannot read (caught here: it becomes a Rejection)."""
    return InvalidMessage(reason, field=field)


def _split(value: Any) -> tuple[dict[str, Any], bytes]:
    if not isinstance(value, bytes) or len(value) < _HEAD or value[: len(MAGIC)] != MAGIC:
        raise _bad("", "not a tensor record (bad magic or too short)")
    n = int.from_bytes(value[len(MAGIC) : _HEAD], "big")
    if _HEAD + n > len(value):
        raise _bad("", "tensor record header is truncated")
    try:
        head = msgspec.json.decode(value[_HEAD : _HEAD + n])
    except msgspec.DecodeError as exc:
        raise _bad("", f"tensor record header is not JSON: {exc}") from exc
    return head if isinstance(head, dict) else {}, value[_HEAD + n :]


class TensorDecoder:
    """``decode(values) -> Decoded`` for tensor records (see the module docstring)."""

    def __init__(self, source: Source, plan: Plan) -> None:
        if any(c.vocab is not None for c in plan.columns):
            raise AiaasError("tensor records hold numbers: a feature cannot have a vocabulary",
                             code=ErrorCode.BAD_REQUEST)
        self.classes = len(source.label_vocabulary or [])  # a label tensor then holds class indices
        self.plan = plan
        self.reads = [(c.field.path, c.field.path.removesuffix("[]"), c.raw_width) for c in plan.columns]
        if plan.label:
            self.reads.append((plan.label, plan.label, 1))

    def _rows(self, tensors: dict[str, np.ndarray]) -> np.ndarray:
        cols, rows = [], None
        for path, name, width in self.reads:
            t = tensors.get(name)
            if t is None:
                raise _bad(path, "missing")
            if not np.issubdtype(t.dtype, np.number) and t.dtype != np.bool_:
                raise _bad(path, f"not numbers ({t.dtype})")
            t = t.reshape(-1, width) if t.ndim <= 1 or (t.ndim == 2 and t.shape[1] == width) else None
            if t is None or (rows is not None and len(t) != rows):
                raise _bad(path, f"expected [rows, {width}] matching the other tensors")
            rows = len(t)
            cols.append(t.astype(np.float32))
        out = np.concatenate(cols, axis=1)
        if self.classes and self.plan.label:
            lab = out[:, -1]
            lab[(lab < 0) | (lab >= self.classes) | (lab != np.floor(lab))] = -1  # refused by Plan.finish
        return out

    def _one(self, value: bytes) -> tuple[np.ndarray, dict[str, Any]]:
        head, body = _split(value)
        return self._rows(decode_tensors(body)), head  # decode_tensors raises InvalidMessage

    def decode(self, values: Sequence[bytes]) -> Decoded:
        rejected: list[Rejection] = []
        parts: list[tuple[np.ndarray, Part]] = []
        pt_paths, key = self.plan.source.passthrough, self.plan.source.key
        for i, v in enumerate(values):
            try:
                raw, head = self._one(v)
            except InvalidMessage as exc:
                rejected.append(Rejection(i, exc.details.get("field", ""), exc.reason))
                continue
            n = len(raw)
            pt = [{p: head.get(p) for p in pt_paths}] * n if pt_paths else None
            parts.append((np.full(n, i, np.int64), Part(raw, pt, [head.get(key)] * n if key else None)))
        parts = [p for p in parts if len(p[0])]
        if not parts:
            return self.plan.empty(rejected)
        ok, part = merge(parts)
        return self.plan.finish(part.raw, ok, rejected, part.passthrough, part.keys)
