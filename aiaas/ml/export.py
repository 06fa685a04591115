"""ONNX export of a trained model and its check against torch with onnxruntime.

The graph has one input ``input`` (float32 [batch, n_features]) and, first, the output ``output``
with a dynamic batch axis, which is the signature the inference agents serve. ``Serving`` says what
the served graph adds around the trained module, so that every preprocessing step learned in
training travels inside the artifact and callers send raw features:

- ``stats``: the features are standardised in the graph, ``(x - mean) / std``;
- ``y_scale``: regression outputs are returned in the targets' units, ``out * y_std + y_mean``;
- ``head="softmax"`` (a cross-entropy classifier) adds ``label`` (int64 [batch]: the class value
  when the classes are integers, else the class index) and ``probabilities`` (softmax) after the
  logits; ``head="sigmoid"`` (bce) adds ``label`` (int64, logit > 0) and ``probabilities``.

The class values and the preprocessing are also written to the ONNX model's metadata
(``aiaas.*`` keys) for whoever reads the artifact. A text model (``transformer-classifier``) is
exported by ``aiaas.ml.textexport`` instead: inputs ``input_ids``/``attention_mask``, outputs
``scores`` and ``label``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from aiaas.ml.onnxfile import exportable, to_onnx
from aiaas.schemas.errors import AiaasError, ErrorCode

log = logging.getLogger(__name__)
INPUT, OUTPUT, LABEL, PROBABILITIES = "input", "output", "label", "probabilities"


Stats = tuple[np.ndarray, np.ndarray]
Head = Literal["none", "softmax", "sigmoid"]


@dataclass(frozen=True)
class Serving:
    """What the served graph adds around the trained module (see the module docstring)."""

    stats: Stats | None = None
    y_scale: tuple[float, float] | None = None  # (y_mean, y_std) of regression targets
    head: Head = "none"
    classes: list[float] = field(default_factory=list)  # class value of each label index

    @property
    def plain(self) -> bool:
        """Nothing to add: the graph is the module as it is."""
        return self.stats is None and self.y_scale is None and self.head == "none"

    @property
    def outputs(self) -> list[str]:
        return [OUTPUT] if self.head == "none" else [OUTPUT, LABEL, PROBABILITIES]

    def label_values(self, n_logits: int) -> np.ndarray | None:
        """int64 class value per logit when the classes are integers, one per logit; else None
        (``label`` is then the index)."""
        c = np.asarray(self.classes, np.float64)
        if self.head != "softmax" or len(c) != n_logits or not np.all(np.equal(np.mod(c, 1), 0)):
            return None
        return c.astype(np.int64)

    def metadata(self, n_logits: int) -> dict[str, str]:
        """The ONNX model's ``aiaas.*`` metadata."""
        meta = {"aiaas.outputs": json.dumps(self.outputs),
                "aiaas.standardised_in_graph": json.dumps(self.stats is not None)}
        if self.y_scale is not None:
            meta["aiaas.y_scale"] = json.dumps(list(self.y_scale))
        if self.head != "none":
            meta["aiaas.classes"] = json.dumps(self.classes)
            meta["aiaas.label"] = "class" if self.label_values(n_logits) is not None else "index"
        return meta


class Standardised(nn.Module):
    """``model((x - mean) / std)``: folds the training data's scaling into the served graph, so
    callers send raw features (the model itself was trained on standardised ones)."""

    def __init__(self, model: nn.Module, mean: np.ndarray, std: np.ndarray) -> None:
        super().__init__()
        self.model = model
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.as_tensor(np.asarray(mean, np.float32)))
        self.register_buffer("std", torch.as_tensor(np.asarray(std, np.float32)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.model((x - self.mean) / self.std)
        return out


class Served(nn.Module):
    """The module as served: scaling in, target scaling and classifier outputs out."""

    def __init__(self, model: nn.Module, serving: Serving, n_logits: int) -> None:
        super().__init__()
        self.model = Standardised(model, *serving.stats) if serving.stats is not None else model
        self.head = serving.head
        y_mean, y_std = serving.y_scale or (0.0, 1.0)
        self.scaled = serving.y_scale is not None
        self.y_mean, self.y_std = float(y_mean), float(y_std)
        values = serving.label_values(n_logits)
        self.values: torch.Tensor | None
        self.register_buffer("values", None if values is None else torch.as_tensor(values))

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out: torch.Tensor = self.model(x)
        if self.scaled:
            out = out * self.y_std + self.y_mean
        if self.head == "softmax":
            index = out.argmax(dim=1)
            label = self.values[index] if self.values is not None else index
            return out, label, torch.softmax(out, dim=1)
        if self.head == "sigmoid":
            return out, (out > 0).to(torch.int64), torch.sigmoid(out)
        return out


def _served(model: nn.Module, serving: Serving, n_features: int) -> tuple[nn.Module, int]:
    """``model`` (on the CPU, in eval mode: ``exportable``) wrapped in what ``serving`` adds, and its
    number of logits (0 for a plain export, which does not need it)."""
    if serving.plain:
        return model, 0
    with torch.no_grad():
        out = model(torch.zeros(1, n_features))
    n_logits = int(out.shape[-1]) if out.ndim > 1 else 1
    return Served(model, serving, n_logits).eval(), n_logits


def _serving(stats: Stats | None, serving: Serving | None) -> Serving:
    if serving is not None and stats is not None:
        raise ValueError("pass stats inside serving, not both")
    return serving if serving is not None else Serving(stats=stats)


def export_onnx(module: nn.Module, n_features: int, stats: Stats | None = None, *,
                serving: Serving | None = None, in_place: bool = False) -> bytes:
    """The model as ONNX bytes, exported in eval mode from a CPU copy, or from ``module`` itself with
    ``in_place`` (nothing else may use it meanwhile: ``aiaas.ml.onnxfile.exportable``).

    ``stats`` = (x_mean, x_std) of the training data (``Dataset.x_mean/x_std``) folds the
    standardisation into the graph; without it the graph expects standardised features.
    ``serving`` says all the graph adds (stats included); see the module docstring.
    """
    if getattr(module, "TEXT_MODEL", False):  # input_ids/attention_mask in, scores/label out
        from aiaas.ml.textexport import export_text

        return export_text(module, in_place=in_place)  # type: ignore[arg-type]
    how = _serving(stats, serving)
    with exportable(module, in_place) as model:
        served, n_logits = _served(model, how, n_features)
        return to_onnx(served, (torch.zeros(2, n_features, dtype=torch.float32),),
                       None if how.plain else how.metadata(n_logits), input_names=[INPUT],
                       output_names=how.outputs,
                       dynamic_axes={INPUT: {0: "batch"}, **{o: {0: "batch"} for o in how.outputs}})


def metadata(onnx_bytes: bytes) -> dict[str, str]:
    """The ONNX model's metadata (``aiaas.*`` keys: see the module docstring)."""
    return dict(session(onnx_bytes).get_modelmeta().custom_metadata_map)


def session(onnx_bytes: bytes, threads: int = 1, prepack: bool = True) -> ort.InferenceSession:
    """A CPU onnxruntime session with few threads (validation must not starve the trainers);
    ``prepack=False`` for a one-off check: no second, repacked copy of the matrix weights."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    if not prepack:
        opts.add_session_config_entry("session.disable_prepacking", "1")
    return ort.InferenceSession(onnx_bytes, sess_options=opts, providers=["CPUExecutionProvider"])


def validate_onnx(onnx_bytes: bytes, module: nn.Module, x: np.ndarray, stats: Stats | None = None, *,
                  serving: Serving | None = None, in_place: bool = False) -> float:
    """Max abs difference between torch and onnxruntime float outputs on ``x`` (both on CPU); pass
    the same ``stats``/``serving``/``in_place`` as to ``export_onnx`` (``x`` is then raw features)."""
    if getattr(module, "TEXT_MODEL", False):  # x: data rows, input_ids then attention_mask
        from aiaas.ml.textexport import validate_text

        return validate_text(onnx_bytes, module, x, in_place=in_place)  # type: ignore[arg-type]
    how = _serving(stats, serving)
    xb = np.ascontiguousarray(x, dtype=np.float32)
    with torch.no_grad(), exportable(module, in_place) as model:
        out = _served(model, how, xb.shape[1])[0](torch.from_numpy(xb.copy()))
    want = [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]
    got = session(onnx_bytes, prepack=False).run(how.outputs, {INPUT: xb})
    worst = 0.0
    for name, g, w in zip(how.outputs, got, want, strict=True):
        if g.shape != w.shape:
            raise AiaasError("ONNX output shape differs from torch", code=ErrorCode.INTERNAL, output=name,
                             onnx_shape=list(g.shape), torch_shape=list(w.shape))
        if np.issubdtype(w.dtype, np.floating) and w.size:
            worst = max(worst, float(np.max(np.abs(np.asarray(g) - w))))
    return worst
