"""Prediction records of stream scoring: one JSON value per scored input record.

``{"prediction": ..., "scores": [...], "model_version": N, <passthrough fields>}`` (docs/wire-protocol.md,
"Prediction records"). What ``prediction`` and ``scores`` are depends on the model's outputs:

- a ``label`` output (aiaas-exported classifiers): ``prediction`` is the label (the class as in the
  training data), ``scores`` the ``probabilities`` (else the first other output);
- one output of width > 1 (logits): ``prediction`` is the arg-max index, ``scores`` the row;
- one output of width 1 (a regressor): ``prediction`` is the value, ``scores`` ``[value]``.

Passthrough fields are copied as the source spec names them; they never replace the three fields
above. A score that is NaN or infinite (not JSON) is written as ``null``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np

LABEL, PROBABILITIES = "label", "probabilities"
RESERVED = ("prediction", "scores", "model_version")


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
    """The JSON values of the prediction records, one per row of the outputs."""
    preds, scores = predictions(outputs, names)
    extra = passthrough if passthrough else None
    out: list[bytes] = []
    dumps = json.dumps
    for i, (p, s) in enumerate(zip(preds, scores, strict=True)):
        body: dict[str, Any] = {}
        if extra is not None:
            body.update({k: v for k, v in extra[i].items() if k not in RESERVED})
        body["prediction"] = p
        body["scores"] = s
        body["model_version"] = version
        try:
            out.append(dumps(body, separators=(",", ":"), allow_nan=False).encode())
        except ValueError:  # NaN or infinity is not JSON: null stands for it
            out.append(dumps(_finite(body), separators=(",", ":")).encode())
    return out


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value
