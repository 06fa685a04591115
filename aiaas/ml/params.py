"""Parameters and gradients between torch modules and numpy (what travels as safetensors).

Anything that arrives from the wire is checked with ``check_finite_and_shapes`` before it touches a
model: wrong names, wrong shapes, non-float dtypes and NaN/Inf raise InvalidMessage with the reason.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from aiaas.schemas.errors import InvalidMessage

Shapes = dict[str, tuple[int, ...]]


def state_to_numpy(module: nn.Module) -> dict[str, np.ndarray]:
    """Every entry of the state dict (parameters and buffers) as a CPU numpy copy."""
    return {k: v.detach().cpu().numpy().copy() for k, v in module.state_dict().items()}


def param_shapes(module: nn.Module) -> Shapes:
    """Shapes of the trainable parameters (the names gradients carry)."""
    return {k: tuple(p.shape) for k, p in module.named_parameters()}


def state_shapes(module: nn.Module) -> Shapes:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def _tensor(arr: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """numpy -> torch on ``like``'s device and dtype (copies read-only wire buffers)."""
    src = arr if arr.flags.writeable else arr.copy()
    return torch.from_numpy(np.ascontiguousarray(src)).to(device=like.device, dtype=like.dtype)


def load_numpy(module: nn.Module, tensors: Mapping[str, np.ndarray], shapes: Shapes | None = None) -> None:
    """Overwrite the module's state (the tensors ``shapes`` names: a shard's; all by default) with
    ``tensors`` (validated first; every name required)."""
    current = module.state_dict()
    shapes = {k: tuple(v.shape) for k, v in current.items()} if shapes is None else shapes
    check_finite_and_shapes(tensors, shapes)
    with torch.no_grad():
        for name in shapes:
            _copy_into(current[name], tensors[name])


def _copy_into(dst: torch.Tensor, arr: np.ndarray) -> None:
    """``dst[...] = arr``: straight from the array on a CPU tensor numpy can write (a read-only
    wire view needs no copy of its own first), else through a torch tensor."""
    if dst.device.type == "cpu" and dst.dtype in _NUMPY_DTYPES:
        np.copyto(dst.numpy(), arr, casting="unsafe")
    else:
        dst.copy_(_tensor(arr, dst))


_NUMPY_DTYPES = {torch.float32, torch.float64, torch.float16, torch.int64, torch.int32, torch.int16,
                 torch.int8, torch.uint8, torch.bool}


def grads_to_numpy(module: nn.Module) -> dict[str, np.ndarray]:
    """Gradients of every trainable parameter (zeros where backward left none), as numpy views of
    the CPU gradients (no copy; the caller sets them to None before the next backward, which then
    allocates new ones, so a view is never written under it)."""
    out: dict[str, np.ndarray] = {}
    for name, p in module.named_parameters():
        g = p.grad
        out[name] = np.zeros(tuple(p.shape), np.float32) if g is None else g.detach().cpu().numpy()
    return out


def set_grads(module: nn.Module, tensors: Mapping[str, np.ndarray], shapes: Shapes | None = None) -> None:
    """Set ``.grad`` of the trainable parameters ``shapes`` names (a shard's; all by default) from
    ``tensors`` (validated first)."""
    shapes = param_shapes(module) if shapes is None else shapes
    check_finite_and_shapes(tensors, shapes)
    for name, p in module.named_parameters():
        if name in shapes:
            p.grad = _tensor(tensors[name], p)


def check_finite_and_shapes(
    tensors: Mapping[str, np.ndarray], reference_shapes: Mapping[str, tuple[int, ...]]
) -> None:
    """Raise InvalidMessage unless ``tensors`` has exactly the reference names and shapes, real
    (float or integer) dtypes and only finite values."""
    missing = sorted(set(reference_shapes) - set(tensors))
    extra = sorted(set(tensors) - set(reference_shapes))
    if missing or extra:
        raise InvalidMessage("tensor names do not match the model", missing=missing, unexpected=extra)
    for name, want in reference_shapes.items():
        arr = tensors[name]
        if tuple(arr.shape) != tuple(want):
            raise InvalidMessage("tensor has the wrong shape", tensor=name, shape=list(arr.shape),
                                 expected=list(want))
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
            raise InvalidMessage("tensor is not a real number type", tensor=name, dtype=str(arr.dtype))
        if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
            raise InvalidMessage("tensor holds NaN or Inf", tensor=name)
