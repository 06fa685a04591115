"""Micro-batching: check requests against the model signature, group compatible ones, run, split.

Requests are compatible when they go to the same loaded version and their inputs agree on names,
dtypes and every dimension but the first (the batch axis). A group is concatenated along axis 0,
run in one onnxruntime call and its outputs are split back by each request's row count. A model
without a dynamic batch axis, or whose outputs do not keep the batch axis, runs one request per
call; a failing batch is retried one request at a time so one bad request cannot fail the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aiaas.agents.inference import text
from aiaas.agents.inference.sessions import Loaded
from aiaas.schemas.errors import AiaasError, BadInput
from aiaas.schemas.registry import TensorSignature
from aiaas.streams.frame import datatype_of
from aiaas.streams.record import Record


@dataclass(slots=True, eq=False)  # identity equality: comparing the arrays would cost O(size)
class Work:
    """Decoded, validated requests waiting for compute: one request, or the stacked rows of a block
    (``ids``; ``inputs`` hold ``rows_each`` rows per id). One request is a block of one."""

    record: Record
    request_id: str
    reply_to: str | None
    inputs: dict[str, np.ndarray]
    model: Loaded
    rows: int | None  # rows on the batch axis; None when it cannot be batched
    outputs: list[str] | None = None  # requested outputs (None: all)
    response_id: str | None = None
    sig: Any = None  # the inputs' names, dtypes and shapes but the batch axis (check_layout's)
    ids: list[str] = field(default_factory=list)  # the requests' ids; left out: [request_id]
    parameters: dict[str, Any] | None = None  # the reply's parameters (a text request's truncation)

    def __post_init__(self) -> None:
        if not self.ids:
            self.ids = [self.request_id]

    @property
    def count(self) -> int:
        """Requests in this work."""
        return len(self.ids)

    @property
    def rows_each(self) -> int:
        """Rows per request on the batch axis (0 when it cannot be batched)."""
        return (self.rows or 0) // self.count

    def group_key(self) -> tuple[Any, ...]:
        if self.rows is None:
            return ("solo", id(self))
        sig = self.sig if self.sig is not None else batch_signature(self.inputs)
        return (self.model.version, id(self.model), sig)


def batch_signature(arrays: dict[str, np.ndarray]) -> tuple[Any, ...]:
    """What requests must share to run in one call: input names, dtypes, all dimensions but the first."""
    return tuple((n, a.dtype.str, a.shape[1:]) for n, a in sorted(arrays.items()))


_Checked = tuple[int | None, tuple[Any, ...]] | BadInput
_CACHE_MAX = 4096


def check_inputs(signature: Sequence[TensorSignature], arrays: dict[str, np.ndarray],
                 cache: dict[tuple[Any, ...], _Checked] | None = None) -> int | None:
    """Validate names, dtypes and shapes; return the shared batch size, or None if not batchable."""
    return check_layout(signature, arrays, cache)[0]


def check_layout(signature: Sequence[TensorSignature], arrays: dict[str, np.ndarray],
                 cache: dict[tuple[Any, ...], _Checked] | None = None) -> tuple[int | None, tuple[Any, ...]]:
    """``check_inputs`` plus the batch signature (``batch_signature``) of ``arrays``.

    ``cache`` (one per loaded version) remembers the verdict per (name, dtype, shape) layout:
    a stream of same-shaped requests is checked once.
    """
    if cache is None:
        return _check(signature, arrays), batch_signature(arrays)
    key = tuple([(n, a.dtype, a.shape) for n, a in arrays.items()])
    verdict = cache.get(key, _MISSING)
    if verdict is _MISSING:
        try:
            verdict = (_check(signature, arrays), batch_signature(arrays))
        except BadInput as exc:
            verdict = exc
        if len(cache) >= _CACHE_MAX:
            cache.clear()
        cache[key] = verdict
    if isinstance(verdict, BadInput):
        raise BadInput(verdict.reason, **verdict.details)
    return verdict  # type: ignore[no-any-return]


_MISSING: Any = object()


def _check(signature: Sequence[TensorSignature], arrays: dict[str, np.ndarray]) -> int | None:
    want = {s.name for s in signature}
    missing, unknown = sorted(want - arrays.keys()), sorted(arrays.keys() - want)
    if missing:
        raise BadInput("missing input", missing=missing, expected=sorted(want))
    if unknown:
        raise BadInput("unknown input name", unknown=unknown, expected=sorted(want))
    batch_ok = True
    rows: set[int] = set()
    for s in signature:
        arr = arrays[s.name]
        got = datatype_of(arr)
        if got is not s.datatype:
            raise BadInput("wrong datatype", input=s.name, expected=s.datatype.value, got=got.value)
        if len(arr.shape) != len(s.shape) or any(
            d is not None and d != g for d, g in zip(s.shape, arr.shape, strict=True)
        ):
            raise BadInput("wrong shape", input=s.name, expected=s.shape, got=list(arr.shape))
        if not s.shape or s.shape[0] is not None:
            batch_ok = False
        else:
            rows.add(arr.shape[0])
    if not batch_ok or len(rows) != 1:
        return None
    n = rows.pop()
    return n if n > 0 else None


def group(works: Sequence[Work], max_batch: int) -> list[list[Work]]:
    """Compatible requests together, at most ``max_batch`` requests per group (a request block
    counts its requests, and a bigger one goes alone), in arrival order."""
    by_key: dict[tuple[Any, ...], tuple[list[Work], list[int]]] = {}
    order: list[list[Work]] = []
    for w in works:
        key = w.group_key()
        run = by_key.get(key)
        n = w.count
        if run is None or run[1][0] + n > max_batch:
            run = by_key[key] = ([], [0])
            order.append(run[0])
        run[0].append(w)
        run[1][0] += n
    return order


Result = dict[str, np.ndarray] | AiaasError


def run_group(works: Sequence[Work]) -> list[Result]:
    """Blocking: one onnxruntime call for the group (or one per request when it cannot batch)."""
    if works[0].sig == text.SIG:  # intake marked it a text request
        return run_texts(works)
    if len(works) == 1:
        return [run_one(works[0])]
    model = works[0].model
    try:
        feeds = {name: np.concatenate([w.inputs[name] for w in works]) for name in works[0].inputs}
        outs = model.run(feeds)
    except Exception:  # onnxruntime errors: find the request that causes it
        return [run_one(w) for w in works]
    total = sum(w.rows or 0 for w in works)
    if any(o.ndim == 0 or o.shape[0] != total for o in outs.values()):
        return [run_one(w) for w in works]  # outputs without the batch axis cannot be split
    results: list[Result] = []
    start = 0
    for w in works:
        end = start + (w.rows or 0)
        results.append(_select({n: o[start:end] for n, o in outs.items()}, w.outputs))
        start = end
    return results


def run_texts(works: Sequence[Work]) -> list[Result]:
    """Text requests (``aiaas.agents.inference.text``): tokenized together, run in sub-batches by
    length; when that fails, one request at a time so that only the one that fails gets the error."""
    model = works[0].model
    assert model.text is not None
    try:
        answers = model.text.run(model.run, [w.inputs[text.TEXT] for w in works])
    except Exception as exc:  # onnxruntime or the tokenizer
        if len(works) > 1:
            return [r for w in works for r in run_texts([w])]
        return [BadInput("the model failed on this input", detail=str(exc)[:300])]
    results: list[Result] = []
    for w, (outs, params) in zip(works, answers, strict=True):
        w.parameters = params
        results.append(_select(outs, w.outputs))
    return results


def run_one(w: Work) -> Result:
    try:
        return _select(w.model.run(w.inputs), w.outputs)
    except Exception as exc:  # onnxruntime raises its own types (e.g. an index out of range)
        return BadInput("the model failed on this input", detail=str(exc)[:300])


def _select(outs: dict[str, np.ndarray], wanted: list[str] | None) -> dict[str, np.ndarray]:
    return outs if wanted is None else {n: outs[n] for n in wanted}
