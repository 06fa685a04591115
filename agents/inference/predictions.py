"""Prediction records of stream scoring: one JSON value per scored input record.

``{"prediction": ..., "scores": [...], "model_version": N, <passthrough fields>}`` (README, "Score
your topic"). What ``prediction`` and ``scores`` are depends on the model's outputs:

- a ``label`` output (aiaas-exported classifiers): ``prediction`` is the label (the class as in the
  training data), ``scores`` the ``probabilities`` (else the first other output);
- one output of width > 1 (logits): ``prediction`` is the arg-max index, ``scores`` the row;
- one output of width 1 (a regressor): ``prediction`` is the value, ``scores`` ``[value]``.

Passthrough fields are copied as the source spec names them; they never replace the three fields
above. A score that is NaN or infinite (not JSON) is written as ``null``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
import numpy as np

LABEL, PROBABILITIES = "label", "probabilities"
RESERVED = frozenset({"prediction", "scores", "model_version"})


def _rows(a: np.ndarray) -> np.ndarray:
    """A batch output as [rows, columns] (a 1-D output is one column per row)."""
    return a.reshape(len(a), -1) if a.ndim != 2 else a


def predictions(outputs: dict[str, np.ndarray], names: Sequence[str]) -> tuple[list[Any], list[list[float]]]:
    """(prediction per row, scores per row) from one onnxruntime call's outputs (``names`` in the
    model's order)."""
    if LABEL in outputs:
        label = outputs[LABEL].reshape(len(outputs[LABEL]), -1)[:, 0]
        other = next((n for n in names if n != LABEL), None)
        scores_of = outputs.get(PROBABILITIES, outputs[other] if other is not None else label)
        return label.tolist(), _rows(scores_of).astype(np.float64).tolist()
    rows = _rows(outputs[names[0]]).astype(np.float64)
    if rows.shape[1] == 1:
        return rows[:, 0].tolist(), rows.tolist()
    return rows.argmax(axis=1).tolist(), rows.tolist()


def encode(outputs: dict[str, np.ndarray], names: Sequence[str], version: int,
           passthrough: Sequence[dict[str, Any]] | None = None) -> list[bytes]:
    """The JSON values of the prediction records, one per row of the outputs. Each value is put
    together from msgspec-encoded parts (msgspec writes NaN and infinity as null): a dict built
    and encoded per record cost 4x as much with passthrough fields."""
    preds, scores = predictions(outputs, names)
    enc = msgspec.json.Encoder(enc_hook=_plain).encode
    tail = b',"model_version":%d}' % version
    if not passthrough:
        return [b'{"prediction":%s,"scores":%s%s' % (enc(p), enc(s), tail)
                for p, s in zip(preds, scores, strict=True)]
    out: list[bytes] = []
    for extra, p, s in zip(passthrough, preds, scores, strict=True):
        if extra and not RESERVED.intersection(extra):
            out.append(b'%s,"prediction":%s,"scores":%s%s' % (enc(extra)[:-1], enc(p), enc(s), tail))
        else:  # none to copy, or a field named like ours: ours win
            head = enc({k: v for k, v in extra.items() if k not in RESERVED})[:-1]
            sep = b"," if len(head) > 1 else b""
            out.append(b'%s%s"prediction":%s,"scores":%s%s' % (head, sep, enc(p), enc(s), tail))
    return out


def _plain(value: Any) -> Any:
    """What msgspec cannot encode itself (a numpy scalar from a decoder, ...): its Python value, else
    its text, so that no passthrough value fails a batch."""
    item = getattr(value, "item", None)
    return item() if callable(item) else str(value)
