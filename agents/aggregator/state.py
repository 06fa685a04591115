"""The parameter server's state: model, optimizer, schedule, version, samples, and its checkpoint form.

Methods block (torch); the server calls them inline while short, else in a thread (``Offload``).
A checkpoint is the model's state dict plus the optimizer's tensors (``opt.<param>.<name>``) as
safetensors, and everything else (optimizer groups, scheduler, counters) as JSON in the snapshot
header.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from aiaas.ml.compression import half_floats
from aiaas.ml.models import build_model, pick_device
from aiaas.ml.optim import build_optimizer, build_scheduler
from aiaas.ml.params import load_numpy, param_shapes, set_grads, state_shapes, state_to_numpy
from aiaas.schemas.jobs import JobSpec
from aiaas.schemas.training import ParameterSnapshot
from aiaas.streams import codecs

OPT = "opt."


class ServerState:
    def __init__(self, spec: JobSpec) -> None:
        self.spec = spec
        self.device = pick_device()
        self.model = build_model(spec).to(self.device)
        self.optimizer = build_optimizer(spec, self.model.parameters())
        self.scheduler = build_scheduler(spec, self.optimizer, total_steps=spec.steps)
        self.version = 0
        self.samples = 0
        self.grad_shapes = param_shapes(self.model)
        self.state_shapes = state_shapes(self.model)

    def warm_up(self) -> float:
        """Optimizer steps on a throwaway copy: torch's first-step set-up happens at start-up;
        returns the seconds of a warm step (what an update will cost)."""
        model = copy.deepcopy(self.model)
        opt = build_optimizer(self.spec, model.parameters())
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        took = 0.0
        for _ in range(2):  # the first step is the cold one; time the second
            t0 = time.perf_counter()
            opt.step()
            took = time.perf_counter() - t0
        return took

    # ------------------------------------------------------------------ updates

    def apply_gradient(self, grads: Mapping[str, np.ndarray]) -> None:
        """One optimizer step with ``grads`` (already validated dense float32)."""
        set_grads(self.model, grads)
        self.optimizer.step()
        self.scheduler.step()
        self.version += 1

    def apply_delta(self, delta: Mapping[str, np.ndarray]) -> None:
        """Local SGD / FedAvg: parameters += the averaged delta of the trainers."""
        with torch.no_grad():
            for name, p in self.model.named_parameters():
                p.add_(torch.from_numpy(np.ascontiguousarray(delta[name])).to(p.device, p.dtype))
        self.version += 1

    def set_params(self, state: Mapping[str, np.ndarray]) -> None:
        """Ring mode: the averaged parameters the trainers hold become the next version."""
        load_numpy(self.model, state)
        self.version += 1

    def params(self) -> dict[str, np.ndarray]:
        return state_to_numpy(self.model)

    def pack(self, final: bool) -> bytes:
        """The current version as a parameter record (float16 on the wire when the spec says so;
        the final version, which is exported and checkpointed, stays float32)."""
        header = ParameterSnapshot(job_id=self.spec.job_id, version=self.version, samples=self.samples,
                                   final=final)
        tensors = self.params()
        if self.spec.compression.params_dtype == "float16" and not final:
            tensors = half_floats(tensors)
        return codecs.pack(header, tensors)

    # ------------------------------------------------------------------ checkpoints

    def checkpoint(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """(tensors, JSON state) of everything needed to resume exactly here."""
        tensors = self.params()
        opt = self.optimizer.state_dict()
        scalars: dict[str, dict[str, float]] = {}
        for idx, entry in opt["state"].items():
            for key, value in entry.items():
                if torch.is_tensor(value):
                    tensors[f"{OPT}{idx}.{key}"] = value.detach().cpu().numpy().copy()
                else:
                    scalars.setdefault(str(idx), {})[key] = float(value)
        meta = {"param_groups": opt["param_groups"], "scalars": scalars,
                "scheduler": _jsonable(self.scheduler.state_dict()),
                "version": self.version, "samples": self.samples}
        return tensors, meta

    def restore(self, tensors: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None:
        """Inverse of ``checkpoint``."""
        load_numpy(self.model, {k: v for k, v in tensors.items() if not k.startswith(OPT)})
        state: dict[int, dict[str, Any]] = {}
        for name, arr in tensors.items():
            if name.startswith(OPT):
                idx, key = name[len(OPT):].split(".", 1)
                state.setdefault(int(idx), {})[key] = torch.from_numpy(np.array(arr))
        for idx, entries in meta.get("scalars", {}).items():
            state.setdefault(int(idx), {}).update(entries)
        self.optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
        sched = dict(meta.get("scheduler", {}))
        sched.pop("lr_lambdas", None)
        self.scheduler.load_state_dict({**self.scheduler.state_dict(), **sched})
        self.version = int(meta["version"])
        self.samples = int(meta["samples"])


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items() if not callable(v)}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float | int | str | bool) or value is None:
        return value
    if torch.is_tensor(value):
        return value.tolist()
    return None
