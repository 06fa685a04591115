"""onnxruntime sessions per model version: loading, routing (pin, canary) and hot reload.

The worker follows the registry: when the version it should serve changes (promote, rollback,
canary), the new version is loaded beside the old one in a thread and swapped in with one
assignment, so the batch in progress finishes on the version it started with and no request
is dropped. Requests may pin a version (``model-version`` header); pinned versions load on
first use and stay in a small LRU.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnxruntime as ort

from aiaas.agents.inference.settings import WorkerSettings
from aiaas.agents.inference.text import TextModel, load_text
from aiaas.registry.store import Registry
from aiaas.schemas.errors import AiaasError, ErrorCode, NotFound
from aiaas.schemas.registry import ModelVersion
from aiaas.streams.lifecycle import cancel

log = logging.getLogger(__name__)


def providers(wanted: list[str] | None) -> list[str]:
    """The execution providers to ask for: ``wanted`` if given, else CUDA when present, then CPU."""
    available = ort.get_available_providers()
    if wanted:
        missing = [p for p in wanted if p not in available]
        if missing:
            raise AiaasError("execution provider not available", code=ErrorCode.UNAVAILABLE,
                             missing=missing, available=available)
        return wanted
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


@dataclass(slots=True)
class Loaded:
    """One loaded version: its registry record and its onnxruntime session."""

    mv: ModelVersion
    session: ort.InferenceSession
    output_names: list[str]
    calls: int = 0  # onnxruntime calls made (tests check that batching batches)
    checked: dict[tuple[Any, ...], Any] = field(default_factory=dict)  # input layouts already checked
    known: dict[int, Any] = field(default_factory=dict)  # intake's verdicts per decoded layout
    text: TextModel | None = None  # a text model's tokenizer (BYTES ``text`` requests)

    @property
    def version(self) -> int:
        return self.mv.version

    @property
    def stat_key(self) -> str:
        return f"version_{self.mv.version}"

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Blocking onnxruntime call (run it in a thread)."""
        self.calls += 1
        outs = self.session.run(self.output_names, feeds)
        return dict(zip(self.output_names, outs, strict=True))


def make_session(data: bytes, cfg: WorkerSettings) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = cfg.intra_op_threads
    opts.inter_op_num_threads = cfg.inter_op_threads
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # onnxruntime's pool threads spin after each run by default: on a loaded or small machine that
    # takes the cores from Kafka I/O and the other processes (benchmarks/results/2026-12-06-profile.md)
    spin = "1" if cfg.spin else "0"
    opts.add_session_config_entry("session.intra_op.allow_spinning", spin)
    opts.add_session_config_entry("session.inter_op.allow_spinning", spin)
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(data, sess_options=opts, providers=providers(cfg.providers))


def canary_pick(request_id: str, weight: float) -> bool:
    """True for about ``weight`` of request ids; the same id always gets the same answer."""
    return (zlib.crc32(request_id.encode()) % 10_000) < weight * 10_000


class Sessions:
    """The versions this worker serves and the onnxruntime sessions behind them."""

    def __init__(self, registry: Registry, cfg: WorkerSettings) -> None:
        self.registry = registry
        self.cfg = cfg
        self.default: Loaded | None = None
        self.canary: Loaded | None = None
        self.canary_weight = 0.0
        self.reloads = 0
        self._cache: OrderedDict[int, Loaded] = OrderedDict()
        self._loading: dict[int, asyncio.Task[Loaded]] = {}
        self._follower: asyncio.Task[None] | None = None
        self._changes: asyncio.Queue[ModelVersion] | None = None
        self.changed = asyncio.Event()

    async def start(self) -> None:
        """Load what to serve now (waiting for a version to appear if there is none yet)."""
        self._changes = self.registry.subscribe()  # before reading state: no change is missed
        while self._desired() is None:
            log.info("model %s: waiting for a version to serve (%s)", self.cfg.model, self.cfg.stage)
            await self._changes.get()
        await self._apply()
        if self.cfg.version is None:
            self._follower = asyncio.create_task(self._follow(), name="sessions-follow")

    async def stop(self) -> None:
        await cancel(self._follower)
        if self._changes is not None:
            self.registry.unsubscribe(self._changes)

    @property
    def calls(self) -> int:
        """onnxruntime calls made on every version still loaded."""
        return sum(x.calls for x in self._cache.values())

    def route(self, request_id: str) -> Loaded:
        """The version for an unpinned request: the canary for its share of ids, else the default."""
        assert self.default is not None, "Sessions.route before start()"
        if self.canary is not None and canary_pick(request_id, self.canary_weight):
            return self.canary
        return self.default

    async def pinned(self, version: int) -> Loaded:
        """A specific version (NotFound when the registry has no such version of this model)."""
        if version in self._cache:
            self._cache.move_to_end(version)
            return self._cache[version]
        mv = self.registry.pick(self.cfg.model, version)
        return await self._load(mv)

    # ------------------------------------------------------------------ internals

    def _desired(self) -> tuple[ModelVersion, ModelVersion | None] | None:
        """(default, canary) the registry says to serve now, or None when nothing is there yet."""
        name = self.cfg.model
        try:
            if self.cfg.version is not None:
                return self.registry.pick(name, self.cfg.version), None
            stage: Any = "production" if self.cfg.stage == "production" else None
            default = self.registry.pick(name, stage=stage)
        except NotFound:
            return None
        try:
            canary = self.registry.pick(name, stage="canary")
        except NotFound:
            canary = None
        return default, canary

    async def _apply(self) -> None:
        desired = self._desired()
        if desired is None:
            return
        mv, canary_mv = desired
        default = await self._load(mv)
        canary = await self._load(canary_mv) if canary_mv is not None else None
        changed = (self.default is None or self.default.version != default.version
                   or (self.canary and self.canary.version) != (canary and canary.version))
        self.default, self.canary = default, canary
        self.canary_weight = canary_mv.canary_weight if canary_mv is not None else 0.0
        if changed:
            self.reloads += 1
            self.changed.set()
            log.info("model %s: serving version %d%s", self.cfg.model, default.version,
                     f" (canary {canary.version} at {self.canary_weight:.0%})" if canary else "")

    async def _follow(self) -> None:
        assert self._changes is not None
        while True:
            await self._changes.get()
            while not self._changes.empty():  # a burst of records: apply the final state once
                self._changes.get_nowait()
            try:
                await self._apply()
            except AiaasError as exc:  # a broken new version must not stop the old one serving
                log.error("model %s: reload failed, still serving the previous version: %s %s",
                          self.cfg.model, exc.reason, exc.details)

    async def _load(self, mv: ModelVersion) -> Loaded:
        cached = self._cache.get(mv.version)
        if cached is not None and cached.mv.sha256 == mv.sha256:
            cached.mv = mv
            self._cache.move_to_end(mv.version)
            return cached
        task = self._loading.get(mv.version)
        if task is None:
            task = self._loading[mv.version] = asyncio.create_task(self._load_now(mv))
        try:
            loaded = await asyncio.shield(task)
        finally:
            self._loading.pop(mv.version, None)
        self._cache[mv.version] = loaded
        self._evict()
        return loaded

    async def _load_now(self, mv: ModelVersion) -> Loaded:
        data = await self.registry.load_bytes(mv)
        try:
            session = await asyncio.to_thread(make_session, data, self.cfg)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise AiaasError("model does not load in onnxruntime", code=ErrorCode.INTERNAL,
                             model=mv.name, version=mv.version, detail=str(exc)[:300]) from exc
        text_model = await load_text(self.registry, mv, session)
        log.info("model %s: loaded version %d (%d bytes, %s%s)", mv.name, mv.version, mv.size_bytes,
                 session.get_providers()[0], ", text" if text_model else "")
        return Loaded(mv, session, [o.name for o in session.get_outputs()], text=text_model)

    def _evict(self) -> None:
        keep = {x.version for x in (self.default, self.canary) if x is not None}
        for version in list(self._cache):
            if len(self._cache) <= self.cfg.max_versions:
                break
            if version not in keep:
                del self._cache[version]
