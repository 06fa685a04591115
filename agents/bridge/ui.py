"""The status page at ``/ui``: models and versions, live training progress with a loss/accuracy
chart, inference throughput. Plain HTML and a little JS (no CDN: works offline); the chart is an
inline SVG drawn from ``/ui/api/status``.

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
from aiaas.schemas.errors import InvalidMessage
from aiaas.schemas.jobs import CandidateDecision, JobSpec
from aiaas.schemas.training import MetricsMessage
from aiaas.streams.admin import Admin
from aiaas.streams.jobs import shown_state
from aiaas.streams.readers import open_assigned

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

    async def status(self, who: Principal) -> dict[str, Any]:
        async with self._lock:
            hit = self._cache.get(who.tenant.name)
            if hit is not None and time.monotonic() - hit[0] < 1.0:
                return hit[1]
            await self.b.registry.refresh()
            jobs = await self._jobs(who) if "jobs" in who.scopes else []
            models = self.b.visible_models(who)
            await self._catch_up([j["job_id"] for j in jobs], sorted({m.name for m in models}))
            for job in jobs:
                job["points"] = self.points.get(job["job_id"], [])
                job["decision"] = self.decisions.get(job["job_id"])
            body = {"ts": time.time(), "tenant": who.tenant.name, "jobs": jobs,
                    "models": [_model_row(m) for m in models], "throughput": self._throughput(),
                    "scoring": await self._scoring(sorted({m.name for m in models}))}
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
        finally:
            await consumer.stop()

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
            await consumer.stop()
        for r in rows:
            done = r.pop("done")
            r["topics"] = sorted({tp.topic for tp in done})
            r["scored"] = sum(done.values())
            r["lag"] = sum(max(0, ends[tp] - o) for tp, o in done.items())
        return rows

    async def _read_metrics(self, consumer: AIOKafkaConsumer, tps: dict[TopicPartition, str]) -> None:
        if not tps:
            return
        consumer.assign(list(tps))
        for tp in tps:
            consumer.seek(tp, self._pos.get(tp, 0))
        ends = await consumer.end_offsets(list(tps))
        async with asyncio.timeout(5.0):
            while await _behind(consumer, ends):
                for tp, recs in (await consumer.getmany(timeout_ms=200, max_records=2000)).items():
                    for rec in recs:
                        self._add_point(tps[tp], rec.value)
        for tp in tps:
            self._pos[tp] = await consumer.position(tp)

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


async def _behind(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return True
    return False


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


CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
       "connect-src 'self'; img-src 'self' data:")

PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>aiaas status</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{background:#1d2330;color:#fff;padding:10px 20px;display:flex;justify-content:space-between}
main{padding:12px 20px;display:grid;gap:16px}
section{background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:10px 14px}
h2{font-size:15px;margin:4px 0 8px}table{border-collapse:collapse;width:100%}
td,th{text-align:left;padding:3px 8px;border-bottom:1px solid #eef0f3}
.bar{background:#e4e8ee;height:8px;border-radius:4px;width:220px;display:inline-block}
.bar i{display:block;height:8px;border-radius:4px;background:#3c7be0}
.job{display:grid;grid-template-columns:300px 1fr;gap:12px;margin-bottom:10px}
.muted{color:#6b7383}.err{color:#b3261e}svg text{font-size:10px;fill:#6b7383}
</style></head>
<body data-ready="0"><header><b>aiaas status</b><span id="updated" class="muted">loading...</span></header>
<main>
<section><h2>Models</h2><table id="models"><thead><tr><th>model</th><th>version</th><th>stage</th>
<th>accuracy</th><th>job</th><th>size</th></tr></thead><tbody></tbody></table></section>
<section><h2>Training jobs</h2><div id="jobs"></div></section>
<section><h2>Inference throughput</h2><table id="throughput"><thead><tr><th>model</th>
<th>requests/s (last 10 s)</th><th>requests total</th></tr></thead><tbody></tbody></table></section>
<section><h2>Stream scoring</h2><table id="scoring"><thead><tr><th>model</th><th>input</th>
<th>input records done</th><th>lag</th><th>group</th></tr></thead><tbody></tbody></table></section>
</main>
<script>
const DASH = "\u2013";
const m = location.hash.match(/key=([^&]+)/);
if (m) {
  sessionStorage.setItem("aiaasKey", decodeURIComponent(m[1]));
  history.replaceState(null, "", "/ui");
}
const key = sessionStorage.getItem("aiaasKey");
function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}
function row(cells) { const tr = el("tr"); cells.forEach(c => tr.appendChild(el("td", c))); return tr; }
function fmt(x, d) { return (x === null || x === undefined) ? DASH : Number(x).toFixed(d); }
const NS = "http://www.w3.org/2000/svg";
function svg(tag, attrs) {
  const e = document.createElementNS(NS, tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  return e;
}
function chart(points) {
  const W = 560, H = 170, P = 30;
  const s = svg("svg", {width: W, height: H, viewBox: `0 0 ${W} ${H}`, class: "chart"});
  const xs = points.map(p => p.version), xmax = Math.max(1, ...xs), xmin = Math.min(xmax - 1, ...xs);
  const lmax = Math.max(1e-9, ...points.filter(p => p.loss !== null).map(p => p.loss));
  const X = v => P + (W - 2 * P) * (v - xmin) / (xmax - xmin), Y = f => H - P - (H - 2 * P) * f;
  s.appendChild(svg("rect", {x: P, y: P, width: W - 2 * P, height: H - 2 * P, fill: "none",
                             stroke: "#dde1e7"}));
  const line = (key, scale, color, cls) => {
    const pts = points.filter(p => p[key] !== null && p[key] !== undefined);
    if (!pts.length) return;
    const xy = pts.map(p => `${X(p.version).toFixed(1)},${Y(p[key] / scale).toFixed(1)}`);
    s.appendChild(svg("polyline", {points: xy.join(" "), fill: "none", stroke: color,
                                   "stroke-width": 1.8, class: cls}));
  };
  line("loss", lmax, "#d9822b", "loss");
  line("test_accuracy", 1, "#2e9b5f", "accuracy");
  const labels = [[P, H - 8, `step ${xmin}`], [W - P - 40, H - 8, `step ${xmax}`],
                  [P, 12, `loss (orange) max ${fmt(lmax, 3)}`], [W - P - 120, 12, "accuracy (green) 0-1"]];
  for (const [x, y, t] of labels) { const e = svg("text", {x, y}); e.textContent = t; s.appendChild(e); }
  return s;
}
function job(j) {
  const d = el("div", undefined, "job"), info = el("div"), pts = j.points;
  const last = pts[pts.length - 1] || {};
  const total = j.steps || j.epochs, done = j.steps ? last.version : last.epoch;
  const frac = total && done ? Math.min(1, done / total) : (j.state === "succeeded" ? 1 : 0);
  const pct = `${(100 * frac).toFixed(0)}%`;
  info.appendChild(el("b", j.job_id));
  info.appendChild(el("div", `${j.model_name} \u00b7 ${j.state}`, "muted"));
  const bar = el("span", undefined, "bar"), fill = el("i");
  fill.style.width = pct;
  bar.appendChild(fill);
  info.appendChild(bar);
  info.appendChild(el("span", ` ${pct}`, "pct"));
  info.appendChild(el("div", `step ${last.version ?? DASH} \u00b7 loss ${fmt(last.loss, 4)} \u00b7 `
                             + `accuracy ${fmt(last.test_accuracy, 3)}`));
  info.appendChild(el("div", `${fmt(last.samples_per_s, 0)} samples/s \u00b7 `
                             + `${last.live_workers ?? DASH} workers`, "muted"));
  const c = j.decision;
  const verdict = c && (c.promoted ? `promoted v${c.model_version}` : "kept production");
  if (c) info.appendChild(el("div", `candidate v${c.version}: ${c.metric} ${fmt(c.candidate, 3)} `
                                  + `vs production ${fmt(c.production, 3)} \u00b7 ${verdict}`, "muted"));
  d.appendChild(info);
  d.appendChild(chart(pts));
  d.dataset.job = j.job_id;
  return d;
}
function fill(id, rows) { document.querySelector(`#${id} tbody`).replaceChildren(...rows); }
function render(s) {
  fill("models", s.models.map(x => row([x.name, x.version, x.stage, fmt(x.accuracy, 3), x.job_id || DASH,
                                        `${(x.size_bytes / 1024).toFixed(1)} KiB`])));
  const jobs = s.jobs.length ? s.jobs.map(job) : [el("span", "no jobs", "muted")];
  document.getElementById("jobs").replaceChildren(...jobs);
  fill("throughput", s.throughput.map(t => row([t.model, fmt(t.rate_per_s, 1), t.requests])));
  fill("scoring", s.scoring.map(g => row([g.model, g.topics.join(", "), g.scored, g.lag, g.group])));
  const u = document.getElementById("updated");
  u.className = "muted";
  u.textContent = `tenant ${s.tenant} \u00b7 updated ${new Date(s.ts * 1000).toLocaleTimeString()}`;
  document.body.dataset.ready = "1";
}
async function load() {
  const headers = key ? {Authorization: `Bearer ${key}`} : {};
  try {
    const r = await fetch("/ui/api/status", {headers, cache: "no-store"});
    if (!r.ok) throw new Error(`HTTP ${r.status}${r.status === 401 ? ": open /ui#key=<API key>" : ""}`);
    render(await r.json());
  } catch (e) {
    const u = document.getElementById("updated");
    u.textContent = String(e);
    u.className = "err";
  }
}
load();
setInterval(load, 2000);
</script></body></html>
"""
