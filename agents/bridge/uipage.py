"""The status page's HTML (``/ui``, agents/bridge/ui.py): plain HTML, CSS and a little JS, no CDN
(works offline); the charts are inline SVG drawn from ``/ui/api/status`` every 2 s."""

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
<section><h2>Arrivals and forecast (autoscaler)</h2><div id="scaling"></div></section>
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
function rateChart(pts) {
  const W = 560, H = 170, P = 30;
  const s = svg("svg", {width: W, height: H, viewBox: `0 0 ${W} ${H}`, class: "chart"});
  const ts = pts.map(p => p.ts), t0 = Math.min(...ts), t1 = Math.max(t0 + 1, ...ts);
  const ymax = Math.max(1e-9, ...pts.map(p => Math.max(p.arrival_rate, p.forecast_rate)));
  const X = t => P + (W - 2 * P) * (t - t0) / (t1 - t0), Y = r => H - P - (H - 2 * P) * r / ymax;
  s.appendChild(svg("rect", {x: P, y: P, width: W - 2 * P, height: H - 2 * P, fill: "none",
                             stroke: "#dde1e7"}));
  const line = (key, color, cls, dash) => {
    const xy = pts.map(p => `${X(p.ts).toFixed(1)},${Y(p[key]).toFixed(1)}`);
    s.appendChild(svg("polyline", {points: xy.join(" "), fill: "none", stroke: color, "stroke-width": 1.8,
                                   "stroke-dasharray": dash, class: cls}));
  };
  line("arrival_rate", "#3c7be0", "arrivals", "none");
  line("forecast_rate", "#d9822b", "forecast", "5 3");
  const labels = [[P, H - 8, `${(t1 - t0).toFixed(0)} s ago`], [W - P - 20, H - 8, "now"],
                  [P, 12, `requests/s, max ${fmt(ymax, 1)}: arrivals (blue), forecast (orange, dashed)`]];
  for (const [x, y, t] of labels) { const e = svg("text", {x, y}); e.textContent = t; s.appendChild(e); }
  return s;
}
function scaled(r) {
  const d = el("div", undefined, "job"), info = el("div"), last = r.points[r.points.length - 1];
  info.appendChild(el("b", r.model));
  info.appendChild(el("div", `${r.policy} \u00b7 ${r.replicas} workers \u00b7 lag ${last.lag}`, "muted"));
  info.appendChild(el("div", `arrivals ${fmt(last.arrival_rate, 1)}/s \u00b7 `
                             + `forecast ${fmt(last.forecast_rate, 1)}/s`));
  info.appendChild(el("div", `forecast: the peak of the next ${fmt(r.horizon_s, 1)} s`, "muted"));
  d.appendChild(info);
  d.appendChild(rateChart(r.points));
  d.dataset.scaling = r.model;
  return d;
}
function fill(id, rows) { document.querySelector(`#${id} tbody`).replaceChildren(...rows); }
function render(s) {
  fill("models", s.models.map(x => row([x.name, x.version, x.stage, fmt(x.accuracy, 3), x.job_id || DASH,
                                        `${(x.size_bytes / 1024).toFixed(1)} KiB`])));
  const jobs = s.jobs.length ? s.jobs.map(job) : [el("span", "no jobs", "muted")];
  document.getElementById("jobs").replaceChildren(...jobs);
  fill("throughput", s.throughput.map(t => row([t.model, fmt(t.rate_per_s, 1), t.requests])));
  const sc = s.scaling.length ? s.scaling.map(scaled) : [el("span", "no autoscaled model", "muted")];
  document.getElementById("scaling").replaceChildren(...sc);
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
