"""Build the job's model and loss from its JobSpec, identically in every process.

Initial weights come from ``spec.seed`` under a forked RNG, so trainers and the aggregator start from
the same parameters without shipping them, and building a model never disturbs the caller's RNG.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from aiaas.schemas.errors import AiaasError, ErrorCode
from aiaas.schemas.jobs import JobSpec, MLPSpec, ModuleSpec, TransformerClassifierSpec

LossFn = Callable[[Tensor, Tensor], Tensor]
_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "sigmoid": nn.Sigmoid,
}


def pick_device() -> torch.device:
    """CUDA when present, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def set_threads(n: int) -> None:
    """Cap torch's intra-op threads (several processes share few cores; docs/architecture.md)."""
    torch.set_num_threads(max(1, n))
    with contextlib.suppress(RuntimeError):  # only settable once, before any parallel work ran
        torch.set_num_interop_threads(max(1, n))


def mlp(spec: MLPSpec) -> nn.Sequential:
    """input -> [Linear, activation, dropout?] * hidden -> Linear(output)."""
    layers: list[nn.Module] = []
    width = spec.input_dim
    for h in spec.hidden:
        layers += [nn.Linear(width, h), _ACTIVATIONS[spec.activation]()]
        if spec.dropout > 0:
            layers.append(nn.Dropout(spec.dropout))
        width = h
    layers.append(nn.Linear(width, spec.output_dim))
    return nn.Sequential(*layers)


def import_module(spec: ModuleSpec) -> nn.Module:
    """``package.module:Class(**kwargs)``; failures become a BAD_REQUEST naming ``model.import_path``."""
    mod_name, _, cls_name = spec.import_path.partition(":")
    try:
        cls = getattr(importlib.import_module(mod_name), cls_name)
        module = cls(**spec.kwargs)
    except (ImportError, AttributeError, TypeError, ValueError) as exc:
        raise AiaasError("cannot build model from import path", code=ErrorCode.BAD_REQUEST,
                         field="model.import_path", import_path=spec.import_path, detail=repr(exc)) from exc
    if not isinstance(module, nn.Module):
        raise AiaasError("import path is not a torch.nn.Module", code=ErrorCode.BAD_REQUEST,
                         field="model.import_path", import_path=spec.import_path)
    return module


def build_model(spec: JobSpec) -> nn.Module:
    """The job's model with deterministic initial weights (same seed -> same weights everywhere)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        if isinstance(spec.model, TransformerClassifierSpec):
            from aiaas.ml.transformer import build_text_classifier

            return build_text_classifier(spec)
        model = mlp(spec.model) if isinstance(spec.model, MLPSpec) else import_module(spec.model)
    return model


def _mse(out: Tensor, y: Tensor) -> Tensor:
    return F.mse_loss(out, y.reshape(out.shape).to(out.dtype))


def _cross_entropy(out: Tensor, y: Tensor) -> Tensor:
    return F.cross_entropy(out, y.reshape(-1).long())


def _bce(out: Tensor, y: Tensor) -> Tensor:
    return F.binary_cross_entropy_with_logits(out, y.reshape(out.shape).to(out.dtype))


_LOSSES: dict[str, LossFn] = {"mse": _mse, "cross_entropy": _cross_entropy, "bce": _bce}


def loss_fn(spec: JobSpec) -> LossFn:
    """``loss(output, target)``; targets of shape (n,) are reshaped to the output for mse/bce."""
    return _LOSSES[spec.loss]
