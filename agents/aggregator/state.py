"""The parameter server's state: model, optimizer, schedule, version, samples, and its checkpoint form.

Methods block (torch); the server calls them inline while short, else in a thread (``Offload``).
A checkpoint is the model's state dict plus the optimizer's tensors (``opt.<param>.<name>``) as
safetensors, and everything else (optimizer groups, scheduler, counters) as JSON in the snapshot
header.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from aiaas.ml.compression import half_floats
from aiaas.ml.models import build_model, pick_device
from aiaas.ml.optim import build_optimizer, build_scheduler
from aiaas.ml.params import Shapes, load_numpy, param_shapes, set_grads, state_shapes
from aiaas.ml.shards import plan
from aiaas.schemas.jobs import JobSpec
from aiaas.schemas.training import ParameterSnapshot
from aiaas.streams import codecs
from aiaas.streams.chunking import Pieces

OPT = "opt."


class ServerState:
    """Shard ``shard`` of ``spec.aggregator.shards``: the whole model is built (the same initial
    weights everywhere), but only the shard's tensors are stepped, published and checkpointed;
    shard 0 loads the others' into its model to evaluate and export."""

    def __init__(self, spec: JobSpec, shard: int = 0) -> None:
        self.spec, self.shard = spec, shard
        self.device = pick_device()
        self.model = build_model(spec).to(self.device)
        every = self.all_shapes = state_shapes(self.model)
        self.owned = plan(every, spec.aggregator.shards)[shard]
        mine = set(self.owned)
        self.state_shapes: Shapes = {k: v for k, v in every.items() if k in mine}
        self.grad_shapes: Shapes = {k: v for k, v in param_shapes(self.model).items() if k in mine}
        self._params = [p for k, p in self.model.named_parameters() if k in mine]
        self.optimizer = build_optimizer(spec, self._params)
        self.scheduler = build_scheduler(spec, self.optimizer, total_steps=spec.steps)
        self.version = 0
        self.samples = 0

    def warm_up(self) -> float:
        """Steps of a throwaway optimizer with lr 0 on the model itself (zero gradients; no copy of
        the model: a parameter copy less at start-up, and lr 0 leaves every weight as it is):
        torch's first-step set-up happens at start-up; returns the seconds of a warm step (what an
        update will cost)."""
        opt = build_optimizer(self.spec, self._params)
        for group in opt.param_groups:
            group["lr"] = 0.0
        for p in self._params:
            p.grad = torch.zeros_like(p)
        took = 0.0
        for _ in range(2):  # the first step is the cold one; time the second
            t0 = time.perf_counter()
            opt.step()
            took = time.perf_counter() - t0
        opt.zero_grad(set_to_none=True)
        return took

    # ------------------------------------------------------------------ updates

    def apply_gradient(self, grads: Mapping[str, np.ndarray]) -> None:
        """One optimizer step with ``grads`` (already validated dense float32: this shard's names)."""
        set_grads(self.model, grads, self.grad_shapes)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)  # not kept between rounds: a parameter copy less
        self.scheduler.step()
        self.version += 1

    def apply_delta(self, delta: Mapping[str, np.ndarray]) -> None:
        """Local SGD / FedAvg: parameters += the averaged delta of the trainers."""
        with torch.no_grad():
            for name, p in self.model.named_parameters():
                if name not in self.grad_shapes:
                    continue
                p.add_(torch.from_numpy(np.ascontiguousarray(delta[name])).to(p.device, p.dtype))
        self.version += 1

    def set_params(self, state: Mapping[str, np.ndarray]) -> None:
        """Ring mode: the averaged parameters the trainers hold become the next version."""
        self.load(state)
        self.version += 1

    def load(self, tensors: Mapping[str, np.ndarray], shapes: Shapes | None = None) -> None:
        """Overwrite the tensors ``shapes`` names (this shard's by default), validated first."""
        load_numpy(self.model, tensors, self.state_shapes if shapes is None else shapes)

    def params(self) -> dict[str, np.ndarray]:
        """This shard's tensors (all of them when unsharded), as numpy copies."""
        return {k: v.copy() for k, v in self._views().items()}

    def _views(self) -> dict[str, np.ndarray]:
        """This shard's tensors as numpy views of the model's (CPU) memory: for encoding at once,
        while nothing steps the model (no extra parameter-sized copy before the record's bytes)."""
        current = self.model.state_dict()
        return {k: current[k].detach().cpu().numpy() for k in self.owned}

    def pack(self, final: bool) -> Pieces:
        """The current version as a parameter record (float16 on the wire when the spec says so;
        the final version, which is exported and checkpointed, stays float32), in pieces: views of
        the live tensors, which the producer cuts its chunks from (no record-sized copy), so send
        it before the next update."""
        header = ParameterSnapshot(job_id=self.spec.job_id, version=self.version, samples=self.samples,
                                   final=final)
        tensors = self._views()
        if self.spec.compression.params_dtype == "float16" and not final:
            tensors = half_floats(tensors)
        return codecs.pack_pieces(header, tensors)

    def drop_optimizer_state(self) -> None:
        """Free the optimizer's tensors (Adam: two parameter-sized moments) once the final
        checkpoint holds them: the job's end (export, validation, registration) needs only the
        model, and would otherwise peak at two more copies than training did."""
        self.optimizer.state.clear()

    # ------------------------------------------------------------------ checkpoints

    def checkpoint(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """(tensors, JSON state) of everything needed to resume exactly here (views of the live
        tensors: encode them before the next update)."""
        tensors = self._views()
        opt = self.optimizer.state_dict()
        scalars: dict[str, dict[str, float]] = {}
        for idx, entry in opt["state"].items():
            for key, value in entry.items():
                if torch.is_tensor(value):
                    tensors[f"{OPT}{idx}.{key}"] = value.detach().cpu().numpy()
                else:
                    scalars.setdefault(str(idx), {})[key] = float(value)
        meta = {"param_groups": opt["param_groups"], "scalars": scalars,
                "scheduler": _jsonable(self.scheduler.state_dict()),
                "version": self.version, "samples": self.samples}
        return tensors, meta

    def restore(self, tensors: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None:
        """Inverse of ``checkpoint``."""
        self.load({k: v for k, v in tensors.items() if not k.startswith(OPT)})
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
