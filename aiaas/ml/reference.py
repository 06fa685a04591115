"""Single-process torch training of a JobSpec: the reference our distributed modes are held to.

Tests compare a distributed job's final test metric with this (e.g. diabetes MSE within 10%), and
the benchmark's ``single_process`` contender is the same loop with a stopwatch.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from aiaas.data.datasets import Dataset
from aiaas.ml.evaluate import evaluate
from aiaas.ml.models import build_model, loss_fn
from aiaas.ml.optim import build_optimizer, build_scheduler
from aiaas.schemas.jobs import JobSpec


def total_steps(spec: JobSpec, rows: int) -> int:
    """``spec.steps``, or the steps ``spec.epochs`` passes over ``rows`` rows take at ``batch_size``."""
    if spec.steps is not None:
        return spec.steps
    return max(1, math.ceil((spec.epochs or 1.0) * math.ceil(rows / spec.batch_size)))


def fit_reference(spec: JobSpec, ds: Dataset, seed: int = 0) -> tuple[torch.nn.Module, dict[str, float]]:
    """Train the job's model on the whole train split in one process; returns it and its test metrics."""
    model = build_model(spec)
    opt, loss = build_optimizer(spec, model.parameters()), loss_fn(spec)
    steps = total_steps(spec, ds.train_rows)
    sched = build_scheduler(spec, opt, total_steps=steps)
    x, y = torch.from_numpy(ds.x_train), torch.from_numpy(ds.y_train)
    rng = np.random.default_rng(seed)
    order, pos = rng.permutation(ds.train_rows), 0
    model.train()
    for _ in range(steps):
        if pos >= len(order):
            order, pos = rng.permutation(ds.train_rows), 0
        idx = torch.from_numpy(order[pos:pos + spec.batch_size])
        pos += spec.batch_size
        opt.zero_grad(set_to_none=True)
        loss(model(x[idx]), y[idx]).backward()  # type: ignore[no-untyped-call]
        opt.step()
        sched.step()
    return model, evaluate(model, ds.x_test, ds.y_test, spec)
