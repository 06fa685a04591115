"""The status page at ``/ui``: models and versions, live training progress with a loss/accuracy
chart, inference throughput, and each autoscaled model's arrival rate against the autoscaler's
forecast (agents/bridge/scalingfeed.py). Plain HTML and a little JS (no CDN: works offline,
agents/bridge/uipage.py); the charts are inline SVG drawn from ``/ui/api/status``.

The page itself holds no data. ``/ui/api/status`` answers with the caller's view (same auth as the
API: open on loopback with auth off, else an API key with the ``models`` scope, given to the page
as ``/ui#key=...`` and sent as a bearer token). Each poll opens one short-lived Kafka consumer
that reads what is new on ``train.<job>.metrics`` and the end offsets of the request topics, so
the page owns no background task that could outlive the app; results are cached for a second.
Stream scoring (``aiaas score``) shows per scoring group of a visible model the input records done
and the lag (records not yet scored), from the group's committed offsets.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from aiaas.agents.bridge.core import Bridge
from aiaas.agents.bridge.keys import Principal
from aiaas.agents.bridge.rediskeys import text
from aiaas.agents.bridge.routes_v2 import bridge_of, principal
from aiaas.agents.bridge.scalingfeed import ScalingFeed
from aiaas.agents.bridge.uipage import CSP, PAGE
from aiaas.schemas.errors import InvalidMessage
from aiaas.schemas.jobs import CandidateDecision, JobSpec
from aiaas.schemas.training import MetricsMessage
from aiaas.streams.admin import Admin
from aiaas.streams.jobs import shown_state
from aiaas.streams.lifecycle import stop_consumer
from aiaas.streams.readers import catch_up, open_assigned

router = APIRouter(include_in_schema=False)
MAX_POINTS = 600
RATE_WINDOW_S = 10.0


class StatusFeed:
    """Everything the page shows, caught up from Kafka on demand."""

    def __init__(self, bridge: Bridge) -> None:
        self.b = bridge
        self.points: dict[str, list[dict[str, Any]]] = {}
        self.decisions: dict[str, dict[str, Any]] = {}  # a continuous job's latest candidate decision
        self._pos: dict[TopicPartition, int] = {}
        self._ends: dict[str, deque[tuple[float, int]]] = {}
        self._lock = asyncio.Lock()
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}
        self.scaling = ScalingFeed()

    async def status(self, who: Principal) -> dict[str, Any]:
        async with self._lock:
            hit = self._cache.get(who.tenant.name)
            if hit is not None and time.monotonic() - hit[0] < 1.0:
                return hit[1]
            await self.b.registry.refresh()
            jobs = await self._jobs(who) if "jobs" in who.scopes else []
            models = self.b.visible_models(who)
            names = sorted({m.name for m in models})
            await self._catch_up([j["job_id"] for j in jobs], names)
            for job in jobs:
                job["points"] = self.points.get(job["job_id"], [])
                job["decision"] = self.decisions.get(job["job_id"])
            body = {"ts": time.time(), "tenant": who.tenant.name, "jobs": jobs,
                    "models": [_model_row(m) for m in models], "throughput": self._throughput(),
                    "scaling": self.scaling.rows(names), "scoring": await self._scoring(names)}
            self._cache[who.tenant.name] = (time.monotonic(), body)
            return body

    async def _jobs(self, who: Principal) -> list[dict[str, Any]]:
        """Jobs of this tenant, and jobs submitted outside the bridge (no owner: shared)."""
        await self.b.jobs.get("")  # catch up with the jobs topic
        rows = []
        for job_id, spec in sorted(self.b.jobs.specs.items()):
            owner = await self.b.redis.get(self.b.rk.job_owner(job_id))
            if owner is not None and text(owner) != who.tenant.name:
                continue
            status = self.b.jobs.status.get(job_id)
            rows.append({"job_id": job_id, "model_name": spec.model_name,
                         "state": shown_state(status)[0] if status else "submitted",
                         "epochs": spec.epochs, "steps": spec.steps, "target": _target(spec)})
        return rows

    async def _catch_up(self, job_ids: list[str], models: list[str]) -> None:
        async with Admin(self.b.settings) as admin:
            wanted = [self.b.topics.train_metrics(j).name for j in job_ids]
            wanted += [self.b.topics.infer_requests(m).name for m in models]
            wanted += [self.b.topics.scaling(m).name for m in models]
            meta = await admin.client.describe_topics(wanted)
        parts = {t["topic"]: [p["partition"] for p in t["partitions"]] for t in meta if t["error_code"] == 0}
        if not parts:  # nothing to read (and aiokafka's stop() right after start() can raise CancelledError)
            return
        consumer = await open_assigned(self.b.settings)
        try:
            metric_tps = {TopicPartition(self.b.topics.train_metrics(j).name, 0): j for j in job_ids}
            await self._read_metrics(consumer, {tp: j for tp, j in metric_tps.items() if tp.topic in parts})
            for m in models:
                topic = self.b.topics.infer_requests(m).name
                if topic in parts:
                    await self._sample_ends(consumer, m, [TopicPartition(topic, p) for p in parts[topic]])
            scaling = {TopicPartition(self.b.topics.scaling(m).name, 0): m for m in models}
            await self.scaling.read(consumer, {tp: m for tp, m in scaling.items() if tp.topic in parts})
        finally:
            await stop_consumer(consumer)

    async def _scoring(self, models: list[str]) -> list[dict[str, Any]]:
        """Stream-scoring groups of the visible models (``aiaas score``'s default group name,
        ``<prefix>score.<model>.<topic>``) and their lag: input records not yet scored, the last
        stable offsets minus the group's committed offsets."""
        heads = {self.b.settings.topic(f"score.{m}."): m for m in models}
        rows: list[dict[str, Any]] = []
        async with Admin(self.b.settings) as admin:
            for group, *_ in sorted(await admin.client.list_consumer_groups()):
                model = next((m for head, m in heads.items() if group.startswith(head)), None)
                if model is not None:
                    done = await admin.client.list_consumer_group_offsets(group)
                    rows.append({"group": group, "model": model,
                                 "done": {tp: o.offset for tp, o in done.items()}})
        if not rows:
            return rows
        consumer = await open_assigned(self.b.settings)  # read_committed: end offsets are the LSOs
        try:
            ends = await consumer.end_offsets(sorted({tp for r in rows for tp in r["done"]}))
        finally:
            await stop_consumer(consumer)
        for r in rows:
            done = r.pop("done")
            r["topics"] = sorted({tp.topic for tp in done})
            r["scored"] = sum(done.values())
            r["lag"] = sum(max(0, ends[tp] - o) for tp, o in done.items())
        return rows

    async def _read_metrics(self, consumer: AIOKafkaConsumer, tps: dict[TopicPartition, str]) -> None:
        if not tps:
            return
        await catch_up(consumer, list(tps), self._pos, lambda tp, end: 0,
                       lambda tp, value: self._add_point(tps[tp], value))

    def _add_point(self, job_id: str, value: bytes | None) -> None:
        try:
            msg = MetricsMessage.from_record(value)
        except InvalidMessage:
            with contextlib.suppress(InvalidMessage):  # continuous training's gate writes these too
                self.decisions[job_id] = CandidateDecision.from_record(value).model_dump(mode="json")
            return
        pts = self.points.setdefault(job_id, [])
        pts.append(msg.model_dump(include={"version", "epoch", "loss", "test_loss", "test_accuracy",
                                           "samples_per_s", "live_workers", "ts"}))
        if len(pts) > MAX_POINTS:  # keep the whole run's shape: thin the older half
            half = len(pts) // 2
            pts[:half] = pts[:half:2]

    async def _sample_ends(self, consumer: AIOKafkaConsumer, model: str, tps: list[TopicPartition]) -> None:
        ends = await consumer.end_offsets(tps)
        self._ends.setdefault(model, deque(maxlen=120)).append((time.monotonic(), sum(ends.values())))

    def _throughput(self) -> list[dict[str, Any]]:
        rows = []
        for model, hist in sorted(self._ends.items()):
            t1, n1 = hist[-1]
            old = [(t, n) for t, n in hist if t1 - t <= RATE_WINDOW_S] or [hist[-1]]
            t0, n0 = old[0]
            rate = (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0
            rows.append({"model": model, "requests": n1, "rate_per_s": round(rate, 2)})
        return rows


def _target(spec: JobSpec) -> dict[str, Any] | None:
    return spec.target.model_dump() if spec.target is not None else None


def _model_row(mv: Any) -> dict[str, Any]:
    row = {"name": mv.name, "version": mv.version, "stage": mv.stage, "size_bytes": mv.size_bytes,
           "created_at": mv.created_at, "job_id": mv.lineage.job_id}
    row["accuracy"] = mv.lineage.metrics.get("test_accuracy") or mv.lineage.metrics.get("accuracy")
    return row


def feed_of(request: Request) -> StatusFeed:
    feed: StatusFeed | None = getattr(request.app.state, "ui_feed", None)
    if feed is None:
        feed = request.app.state.ui_feed = StatusFeed(bridge_of(request))
    return feed


@router.get("/ui/api/status")
async def ui_status(request: Request) -> dict[str, Any]:
    who = await principal(request)
    who.require("models")
    return await feed_of(request).status(who)


@router.get("/ui", response_class=HTMLResponse)
async def ui_page() -> HTMLResponse:
    return HTMLResponse(PAGE, headers={"Cache-Control": "no-store",
                                       "Content-Security-Policy": CSP})
