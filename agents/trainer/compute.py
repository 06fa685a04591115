"""The torch side of a trainer: gradients of one minibatch, or k local optimizer steps.

Everything here blocks (torch), so the trainer calls it through ``aiaas.streams.offload.Offload``; one worker
object is only ever used by one thread at a time.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import numpy as np
import torch

from aiaas.ml.models import build_model, loss_fn, pick_device
from aiaas.ml.optim import build_optimizer
from aiaas.ml.params import grads_to_numpy, load_numpy, state_to_numpy
from aiaas.schemas.jobs import JobSpec

Batch = tuple[np.ndarray, np.ndarray]


class LocalModel:
    """The job's model on this trainer (CUDA when present), with a local optimizer for local steps."""

    def __init__(self, spec: JobSpec) -> None:
        self.spec = spec
        self.device = pick_device()
        self.model = build_model(spec).to(self.device)
        self.model.train()
        self.loss = loss_fn(spec)
        self._optimizer: torch.optim.Optimizer | None = None
        self.steps = 0

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """Created on first use: only hybrid and ring step locally."""
        if self._optimizer is None:
            self._optimizer = build_optimizer(self.spec, self.model.parameters())
        return self._optimizer

    def warm_up(self) -> float:
        """Pay torch's first-call costs (autograd, optimizer set-up: seconds on a busy machine) at
        start-up, not inside the first training round; returns the seconds of one warm minibatch step
        (what a round's compute will cost). It runs on the model itself, not a copy (a parameter copy
        less): every mode loads version 0 over it (buffers included) before its first step, and the
        throwaway optimizer, only where the mode steps locally, has lr 0."""
        model = self.model
        opt = build_optimizer(self.spec, model.parameters()) \
            if self.spec.sync.mode in ("hybrid", "ring") else None
        for group in opt.param_groups if opt is not None else ():
            group["lr"] = 0.0
        rows = self.spec.batch_size
        x = torch.zeros(rows, self.spec.model.input_dim, device=self.device)
        target = torch.zeros(rows, dtype=torch.long, device=self.device) \
            if self.spec.loss == "cross_entropy" else torch.zeros_like(model(x))
        took = 0.0
        for _ in range(2):  # the first pass is the cold one; time the second
            t0 = time.perf_counter()
            model.zero_grad(set_to_none=True)
            self.loss(model(x), target).backward()  # type: ignore[no-untyped-call]
            if opt is not None:
                opt.step()
            took = time.perf_counter() - t0
        model.zero_grad(set_to_none=True)
        return took

    def load(self, state: Mapping[str, np.ndarray]) -> None:
        """Replace the weights (validated: names, shapes, finite)."""
        load_numpy(self.model, state)

    def state(self) -> dict[str, np.ndarray]:
        return state_to_numpy(self.model)

    def _tensors(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = batch
        return (torch.as_tensor(x, device=self.device),
                torch.as_tensor(y, device=self.device))

    def _backward(self, batch: Batch) -> float:
        x, y = self._tensors(batch)
        self.model.zero_grad(set_to_none=True)
        loss = self.loss(self.model(x), y)
        loss.backward()  # type: ignore[no-untyped-call]
        return float(loss.detach())

    def gradient(self, batch: Batch) -> tuple[dict[str, np.ndarray], float]:
        """Gradients of the loss on one minibatch at the current weights, and the loss."""
        loss = self._backward(batch)
        self.steps += 1
        grads = grads_to_numpy(self.model)
        self.model.zero_grad(set_to_none=True)  # the arrays are the one copy, gone once packed
        return grads, loss

    def local_steps(self, batches: list[Batch]) -> float:
        """One optimizer step per batch (local SGD); returns the mean loss."""
        total = 0.0
        for batch in batches:
            total += self._backward(batch)
            self.optimizer.step()
            self.steps += 1
        return total / max(1, len(batches))

    def delta_from(self, base: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Current weights minus ``base`` (what hybrid mode sends)."""
        now = self.state()
        return {k: (now[k] - base[k]).astype(np.float32) for k in now}

    def average_with(self, other: Mapping[str, np.ndarray], weight: float = 0.5) -> None:
        """Gossip step: weights <- (1 - weight) * own + weight * other (validated first)."""
        mine = self.state()
        mixed = {k: ((1.0 - weight) * mine[k] + weight * np.asarray(other[k], np.float32)).astype(np.float32)
                 for k in mine}
        load_numpy(self.model, mixed)
