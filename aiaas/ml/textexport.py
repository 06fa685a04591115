"""ONNX export of a text model (``aiaas.ml.transformer.TextClassifier``) and its check against torch.

Inputs ``input_ids`` and ``attention_mask`` (int64 [batch, sequence], both axes dynamic). A classifier
outputs ``scores`` (float32 [batch, classes], softmax) and ``label`` (string [batch]: the class name,
looked up in the graph); ``embedding=True`` exports the encoder with no head as an embedding model:
``embedding`` (float32 [batch, hidden], mean-pooled and L2-normalised, as sentence-transformers does).

The graph's metadata says what it is (``aiaas.task``, ``aiaas.labels``, ``aiaas.max_length``,
``aiaas.pretrained``) and carries the tokenizer (``aiaas.tokenizer``, the text of tokenizer.json), so
a model registered straight from a training job still holds everything a text bundle needs
(docs/transformers.md, ``aiaas.ml.bundle``).
"""

from __future__ import annotations

import functools
import json
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aiaas.data.pretrained import tokenizer_json
from aiaas.ml.onnxfile import exportable, to_onnx
from aiaas.ml.transformer import TextClassifier
from aiaas.schemas.errors import AiaasError, ErrorCode

IDS, MASK, SCORES, LABEL, EMBEDDING = "input_ids", "attention_mask", "scores", "label", "embedding"
_INDEX = "label_index"


class _Scores(nn.Module):
    def __init__(self, model: TextClassifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        scores = self.model.logits(ids, mask).softmax(dim=-1)
        return scores, scores.argmax(dim=-1)


class _Embedding(nn.Module):
    def __init__(self, model: TextClassifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        return F.normalize(self.model.pooled(ids, mask), p=2.0, dim=-1)


def outputs(embedding: bool) -> list[str]:
    return [EMBEDDING] if embedding else [SCORES, LABEL]


def _served(model: nn.Module, embedding: bool) -> nn.Module:
    """``model`` (on the CPU, in eval mode: ``exportable``) with the served head."""
    return (_Embedding(model) if embedding else _Scores(model)).eval()  # type: ignore[arg-type]


def export_text(model: TextClassifier, *, embedding: bool = False, in_place: bool = False) -> bytes:
    """The served graph as ONNX bytes (from a CPU copy in eval mode, or ``model`` itself with
    ``in_place``: ``aiaas.ml.onnxfile.exportable``)."""
    names = [EMBEDDING] if embedding else [SCORES, _INDEX]
    example = (torch.ones(2, 8, dtype=torch.int64), torch.ones(2, 8, dtype=torch.int64))
    axes = {IDS: {0: "batch", 1: "sequence"}, MASK: {0: "batch", 1: "sequence"},
            **{n: {0: "batch"} for n in names}}
    with exportable(model, in_place) as cpu:
        return to_onnx(_served(cpu, embedding), example, metadata(model, embedding),
                       None if embedding else functools.partial(_label_output, model.labels),
                       input_names=[IDS, MASK], output_names=names, dynamic_axes=axes)


def _label_output(labels: list[str], proto: Any) -> None:
    """Replace the ``label_index`` output with the string ``label`` (a Gather on the class names)."""
    from onnx import TensorProto, helper

    g = proto.graph
    table = helper.make_tensor("label_names", TensorProto.STRING, [len(labels)],
                               [s.encode() for s in labels])  # type: ignore[misc]
    g.initializer.append(table)
    g.node.append(helper.make_node("Gather", ["label_names", _INDEX], [LABEL], axis=0))
    keep = [o for o in g.output if o.name != _INDEX]
    del g.output[:]
    g.output.extend([*keep, helper.make_tensor_value_info(LABEL, TensorProto.STRING, ["batch"])])


def metadata(model: TextClassifier, embedding: bool) -> dict[str, str]:
    meta = {"aiaas.task": "text-embedding" if embedding else "text-classification",
            "aiaas.outputs": json.dumps(outputs(embedding)), "aiaas.max_length": str(model.max_length),
            "aiaas.pretrained": model.pretrained, "aiaas.pooling": "mean"}
    if not embedding:
        meta["aiaas.labels"] = json.dumps(model.labels)
    if model.pretrained:
        meta["aiaas.tokenizer"] = tokenizer_json(model.pretrained)
    return meta


def split_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Data rows (input_ids then attention_mask) -> the two int64 inputs, cut to the longest text."""
    n = x.shape[1] // 2
    ids, mask = np.asarray(x[:, :n], np.int64), np.asarray(x[:, n:], np.int64)
    longest = max(1, int(mask.sum(axis=1).max())) if mask.size else 1
    return np.ascontiguousarray(ids[:, :longest]), np.ascontiguousarray(mask[:, :longest])


def session(onnx_bytes: bytes, threads: int = 1) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    return ort.InferenceSession(onnx_bytes, sess_options=opts, providers=["CPUExecutionProvider"])


def validate_text(onnx_bytes: bytes, model: TextClassifier, x: np.ndarray, *, embedding: bool = False,
                  in_place: bool = False) -> float:
    """Max abs difference of onnxruntime's float output and torch's on data rows ``x``; an INTERNAL
    error when the labels differ from torch's argmax."""
    ids, mask = split_rows(x)
    with torch.no_grad(), exportable(model, in_place) as cpu:
        want = _served(cpu, embedding)(torch.from_numpy(ids), torch.from_numpy(mask))
    got = session(onnx_bytes).run(outputs(embedding), {IDS: ids, MASK: mask})
    if embedding:
        return float(np.max(np.abs(got[0] - want.numpy()))) if ids.size else 0.0
    scores, index = (t.numpy() for t in want)
    names = np.asarray(model.labels, dtype=object)[index]
    if list(got[1]) != list(names):
        raise AiaasError("ONNX labels differ from torch", code=ErrorCode.INTERNAL)
    return float(np.max(np.abs(got[0] - scores))) if scores.size else 0.0
