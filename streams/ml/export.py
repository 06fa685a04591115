"""ONNX export of a trained model and its check against torch with onnxruntime.

The graph has one input ``input`` (float32 [batch, n_features]) and one output ``output`` with a
dynamic batch axis, which is the signature the inference agents serve.
"""

from __future__ import annotations

import copy
import io
import logging
import warnings

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from schemas.errors import AiaasError, ErrorCode

log = logging.getLogger(__name__)
INPUT, OUTPUT = "input", "output"
OPSET = 18


Stats = tuple[np.ndarray, np.ndarray]


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


def _cpu_copy(module: nn.Module, stats: Stats | None = None) -> nn.Module:
    model = copy.deepcopy(module).cpu().eval()
    return Standardised(model, *stats).eval() if stats is not None else model


def export_onnx(module: nn.Module, n_features: int, stats: Stats | None = None) -> bytes:
    """The model as ONNX bytes (exported from a CPU copy in eval mode; the original is untouched).

    ``stats`` = (x_mean, x_std) of the training data (``Dataset.x_mean/x_std``) folds the
    standardisation into the graph; without it the graph expects standardised features.
    """
    model = _cpu_copy(module, stats)
    example = torch.zeros(2, n_features, dtype=torch.float32)
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model, (example,), buf,  # type: ignore[arg-type]  # the TorchScript exporter takes a stream
                input_names=[INPUT], output_names=[OUTPUT],
                dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}}, opset_version=OPSET,
                dynamo=False,
            )
    except Exception as exc:  # torch raises many types here; callers need one
        raise AiaasError("ONNX export failed", code=ErrorCode.INTERNAL, detail=repr(exc)) from exc
    return buf.getvalue()


def session(onnx_bytes: bytes, threads: int = 1) -> ort.InferenceSession:
    """A CPU onnxruntime session with few threads (validation must not starve the trainers)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(onnx_bytes, sess_options=opts, providers=["CPUExecutionProvider"])


def validate_onnx(onnx_bytes: bytes, module: nn.Module, x: np.ndarray, stats: Stats | None = None) -> float:
    """Max abs difference between torch and onnxruntime outputs on ``x`` (both on CPU); pass the
    same ``stats`` as to ``export_onnx`` (``x`` is then raw features)."""
    xb = np.ascontiguousarray(x, dtype=np.float32)
    with torch.no_grad():
        want = _cpu_copy(module, stats)(torch.from_numpy(xb.copy())).numpy()
    got = session(onnx_bytes).run([OUTPUT], {INPUT: xb})[0]
    if got.shape != want.shape:
        raise AiaasError("ONNX output shape differs from torch", code=ErrorCode.INTERNAL,
                         onnx_shape=list(got.shape), torch_shape=list(want.shape))
    return float(np.max(np.abs(np.asarray(got) - want))) if want.size else 0.0
