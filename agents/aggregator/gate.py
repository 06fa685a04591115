"""Continuous training's promotion gate: a candidate replaces production only when it is no worse.

Every ``continuous.publish_every_records`` source records or ``publish_every_s`` seconds (whichever
comes first; by time only when records arrived since the last promotion) the current parameters are
a candidate. It and the production version are scored on
the same rows, the newest held-out window: the candidate with torch on the rows as trained on, the
production version with onnxruntime on the raw rows (what is served, scaling in the graph; after a
restart it is read back from the registry). The candidate is promoted (exported, registered as
production with its lineage) when its score is not worse than production's by more than
``tolerance`` and, when ``min_score`` is set, reaches it. Every decision is written to the metrics
topic as a ``CandidateDecision``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import numpy as np

from aiaas.data.datainfo import JobData
from aiaas.ml.evaluate import evaluate
from aiaas.registry.store import Registry
from aiaas.schemas.errors import AiaasError
from aiaas.schemas.jobs import CandidateDecision, JobSpec

from .finish import export_and_register
from .source import Holdout
from .state import ServerState

log = logging.getLogger(__name__)


@dataclass
class Production:
    version: int
    session: object  # onnxruntime.InferenceSession


def _score_onnx(prod: Production, spec: JobSpec, data: JobData, x: np.ndarray, y: np.ndarray) -> float:
    """Production's accuracy (or mse in training units) on held-out rows scaled as trained on."""
    raw = (x * data.x_std + data.x_mean).astype(np.float32)
    out = prod.session.run(None, {"input": raw})  # type: ignore[attr-defined]
    if spec.loss == "cross_entropy":
        return float((np.asarray(out[0]).argmax(axis=1) == y.reshape(-1)).mean())
    pred = (np.asarray(out[0], np.float64) - data.info.y_mean) / data.info.y_std
    return float(((pred.reshape(len(y), -1) - y.reshape(len(y), -1)) ** 2).mean())


class Gate:
    """Decides, candidate after candidate, what serves (``consider``)."""

    def __init__(self, spec: JobSpec, data: JobData, holdout: Holdout, registry: Registry) -> None:
        self.spec, self.data, self.holdout, self.registry = spec, data, holdout, registry
        self.cfg = spec.continuous
        self.accuracy = spec.loss == "cross_entropy"
        self.production: Production | None = None
        self._since_read = 0
        self._since_t = time.monotonic()
        self._read_at_promotion = 0
        self.candidates = 0
        self.promotions = 0
        self.decided = asyncio.Event()  # set after every decision (tests and benchmarks wait on it)

    async def start(self) -> None:
        """Production as the registry has it (a restarted aggregator compares with what serves)."""
        from aiaas.ml.export import session

        try:
            mv = await self.registry.get(self.spec.model_name, stage="production")
        except AiaasError:
            return
        onnx_bytes = await self.registry.load_bytes(mv)
        self.production = Production(mv.version, await asyncio.to_thread(session, onnx_bytes))
        log.info("job %s: production is %s v%d", self.spec.job_id, mv.name, mv.version)

    def due(self) -> bool:
        read = self.holdout.reader.read
        by_records = self.cfg.publish_every_records is not None and \
            read - self._since_read >= self.cfg.publish_every_records
        # by time even on an idle stream: trainers go on learning the last window, and a drift's
        # records may all have been read before the model caught up (``_better`` then asks more)
        by_time = self.cfg.publish_every_s is not None and \
            time.monotonic() - self._since_t >= self.cfg.publish_every_s
        return (by_records or by_time) and self.holdout.arrays() is not None

    def _better(self, cand: float, prod: float | None, idle: bool) -> bool:
        """Not worse than production by more than ``tolerance``; on a stream idle since the promoted
        candidate was taken, better by more than it (the same concept is not registered again and
        again, but a model that kept learning replaces one that had not caught up)."""
        tol = self.cfg.tolerance
        sign = 1.0 if self.accuracy else -1.0  # accuracy: higher is better; mse: lower
        floor = self.cfg.min_score is None or sign * (cand - self.cfg.min_score) >= 0
        if prod is None or not floor:
            return floor
        gain = sign * (cand - prod)
        return gain > tol if idle else gain >= -tol

    async def consider(self, state: ServerState, metrics: dict[str, float]) -> CandidateDecision:
        """Score the current parameters against production on the newest held-out window; promote
        them when they pass (export and registration happen here)."""
        # what had arrived when this candidate was taken: rows read while it is scored and promoted
        # (a restarted job catching up, a drift arriving) still count as new for the next one
        self._since_read, self._since_t = self.holdout.reader.read, time.monotonic()
        taken_at = self._since_read
        held = self.holdout.arrays()
        assert held is not None
        x, y = held
        scored = await asyncio.to_thread(evaluate, state.model, x, y, self.spec)
        cand = scored["test_accuracy"] if self.accuracy else scored["test_loss"]
        prod = None if self.production is None else \
            await asyncio.to_thread(_score_onnx, self.production, self.spec, self.data, x, y)
        self.candidates += 1
        promote = self._better(cand, prod, idle=taken_at <= self._read_at_promotion)
        decision = CandidateDecision(
            job_id=self.spec.job_id, version=state.version, candidate=cand, production=prod,
            production_version=self.production.version if self.production else None,
            metric="accuracy" if self.accuracy else "mse", window_rows=len(x), promoted=promote,
            tolerance=self.cfg.tolerance, ts=time.time(),
            source_position=sum(self.holdout.reader.positions.values()))
        if promote:
            decision.model_version = await self._promote(state, x, metrics | scored)
            self._read_at_promotion = taken_at
        self.decided.set()
        log.info("job %s candidate v%d: %s %.4f vs production %s -> %s", self.spec.job_id,
                 state.version, decision.metric, cand, "none" if prod is None else f"{prod:.4f}",
                 "promoted" if promote else "kept production")
        return decision

    async def _promote(self, state: ServerState, x: np.ndarray, metrics: dict[str, float]) -> int | None:
        from aiaas.ml.export import session

        _, mv = await export_and_register(
            self.holdout.reader.settings, self.spec, state, x[:256], self.data, {}, metrics,
            "production", source=self.holdout.lineage(), registry=self.registry)
        if mv is None:
            return None
        onnx_bytes = await self.registry.load_bytes(mv)
        self.production = Production(mv.version, await asyncio.to_thread(session, onnx_bytes))
        self.promotions += 1
        return mv.version
