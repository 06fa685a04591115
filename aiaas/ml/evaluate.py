"""Test metrics of a model on a held-out split (run it in a thread: it is blocking torch work)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from aiaas.ml.models import loss_fn
from aiaas.schemas.jobs import JobSpec

EVAL_BATCH = 4096


def _device(module: nn.Module) -> torch.device:
    p = next(module.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def evaluate(module: nn.Module, x: np.ndarray, y: np.ndarray, spec: JobSpec) -> dict[str, float]:
    """``test_loss`` (mean over rows) and, for classification losses, ``test_accuracy``; for mse
    also ``test_r2`` (1 - SSE/SST: the same in scaled and raw target units, so a served model that
    answers in raw units can be compared with it)."""
    if len(x) == 0:
        return {}
    dev, loss = _device(module), loss_fn(spec)
    was_training = module.training
    module.eval()
    total, correct, sse = 0.0, 0, 0.0
    try:
        with torch.no_grad():
            for i in range(0, len(x), EVAL_BATCH):
                xb = torch.as_tensor(np.asarray(x[i:i + EVAL_BATCH], np.float32), device=dev)
                yb = torch.as_tensor(np.asarray(y[i:i + EVAL_BATCH]), device=dev)
                out = module(xb)
                total += float(loss(out, yb)) * len(xb)
                if spec.loss == "cross_entropy":
                    correct += int((out.argmax(dim=1) == yb.reshape(-1)).sum())
                elif spec.loss == "mse":
                    sse += float(((out - yb.reshape(out.shape).to(out.dtype)) ** 2).sum())
                elif spec.loss == "bce":
                    pred, truth = (out > 0).reshape(len(xb), -1), (yb > 0.5).reshape(len(xb), -1)
                    correct += int((pred == truth).all(dim=1).sum())
    finally:
        module.train(was_training)
    metrics = {"test_loss": total / len(x)}
    if spec.loss in ("cross_entropy", "bce"):
        metrics["test_accuracy"] = correct / len(x)
    if spec.loss == "mse":
        yy = np.asarray(y, np.float64)
        sst = float(((yy - yy.mean(axis=0)) ** 2).sum())
        if sst > 0:
            metrics["test_r2"] = 1.0 - sse / sst
    return metrics
