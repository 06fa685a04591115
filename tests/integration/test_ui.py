"""The status page in headless Chromium: models, a job's progress and loss/accuracy chart, request
throughput, an autoscaled model's arrivals against the forecast, all read from the real broker
through the bridge; a screenshot is kept under
``.run/screenshots/`` (git-ignored). Chromium comes from ``infra/chromium.sh`` (Debian package)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from aiaas.agents.autoscaler.controller import local_autoscaler
from aiaas.agents.autoscaler.forecast import Forecasting
from aiaas.agents.autoscaler.policy import Policy
from aiaas.agents.bridge.app import create_app
from aiaas.agents.bridge.settings import BridgeSettings
from aiaas.registry.store import Registry
from aiaas.schemas.jobs import CandidateDecision, JobSpec
from aiaas.schemas.registry import Lineage
from aiaas.schemas.training import MetricsMessage
from aiaas.streams.admin import Admin
from aiaas.streams.producer import Producer
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics
from tests.examples import mlp
from tests.integration.test_autoscale import _send, running
from tests.spawn import run_to_end

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / ".run" / "screenshots"
STEPS = 40
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars"]


def _chromium() -> str:
    """The chromium binary, installed by infra/chromium.sh if missing (skip only if that fails)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        proc = subprocess.run([str(ROOT / "infra" / "chromium.sh")], capture_output=True, text=True,
                              timeout=600)
        found = shutil.which("chromium")
        if found is None:
            pytest.skip(f"chromium could not be installed: {proc.stderr[-500:]}")
    return found


@pytest.fixture
async def bridge_url(settings: Settings, redis_client: object) -> AsyncIterator[str]:
    """The real bridge app (auth off, loopback) served by uvicorn on a free port."""
    app = create_app(settings, BridgeSettings(auth=False, instance=f"ui{uuid.uuid4().hex[:6]}"))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                           lifespan="on"))
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(60):
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.05)  # polling the started flag (a condition), not timing
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 30)


async def _seed(settings: Settings, admin: Admin, job: str, model: str) -> None:
    """A registered model, a job with STEPS metrics records, and 50 requests on the model's topic."""
    topics = Topics(settings)
    await admin.ensure_topics([topics.jobs(), topics.train_metrics(job), topics.infer_requests(model, 2)])
    async with Registry(settings) as reg:
        await reg.publish(model, mlp([64, 16, 10]), stage="production",
                          lineage=Lineage(job_id=job, metrics={"test_accuracy": 0.962}))
    spec = JobSpec.model_validate({"job_id": job, "model": {"input_dim": 64, "output_dim": 10},
                                   "steps": STEPS * 2, "export": {"model_name": model}})
    async with Producer(settings) as prod:
        await prod.send_and_wait(topics.jobs().name, spec.to_record(), key=job)
        for v in range(1, STEPS + 1):
            msg = MetricsMessage(job_id=job, version=v, loss=2.3 / v ** 0.5, test_accuracy=1 - 0.9 / v ** 0.5,
                                 samples_per_s=1200.0, live_workers=2)
            await prod.send(topics.train_metrics(job).name, msg.to_record(), key=job)
        decision = CandidateDecision(job_id=job, version=STEPS, metric="accuracy", candidate=0.97,
                                     production=0.95, production_version=1, promoted=True, model_version=2)
        await prod.send(topics.train_metrics(job).name, decision.to_record(), key=job)  # continuous gate
        for i in range(50):
            await prod.send(topics.infer_requests(model, 2).name, b"{}", key=str(i))
        await prod.flush()


async def _chromium_run(*args: str, tmp: Path) -> str:
    profile = tmp / f"profile-{uuid.uuid4().hex[:6]}"
    code, out, err = await run_to_end(_chromium(), *FLAGS, f"--user-data-dir={profile}", *args, timeout_s=120)
    assert code == 0, err.decode()[-2000:]
    return out.decode()


async def test_status_page_in_headless_chromium(
    settings: Settings, admin: Admin, bridge_url: str, tmp_path: Path
) -> None:
    job, model = f"job-{uuid.uuid4().hex[:6]}", f"digits-{uuid.uuid4().hex[:6]}"
    await _seed(settings, admin, job, model)
    async with httpx.AsyncClient(base_url=bridge_url) as http:
        status = (await http.get("/ui/api/status")).json()
    assert [j["job_id"] for j in status["jobs"]] == [job] and len(status["jobs"][0]["points"]) == STEPS
    assert status["jobs"][0]["decision"]["promoted"] and status["jobs"][0]["decision"]["model_version"] == 2
    (row,) = status["throughput"]
    assert row["model"] == model and row["requests"] == 50

    dom = await _chromium_run("--virtual-time-budget=8000", "--dump-dom", f"{bridge_url}/ui", tmp=tmp_path)
    assert 'data-ready="1"' in dom, dom[-3000:]
    models = re.search(r'<table id="models">.*?</table>', dom, re.S)
    row = f"<td>{model}</td><td>1</td><td>production</td><td>0.962</td><td>{job}</td>"
    assert models and row in models[0]
    assert f'data-job="{job}"' in dom and "step 40" in dom and "50%" in dom
    assert f"candidate v{STEPS}: accuracy 0.970 vs production 0.950 · promoted v2" in dom
    for cls in ("loss", "accuracy"):
        line = re.search(rf'<polyline points="([^"]+)"[^>]*class="{cls}"', dom)
        assert line and len(line[1].split()) == STEPS, cls
    throughput = re.search(r'<table id="throughput">.*?</table>', dom, re.S)
    assert throughput and f"<td>{model}</td>" in throughput[0] and "<td>50</td>" in throughput[0]

    SHOTS.mkdir(parents=True, exist_ok=True)
    shot = SHOTS / "ui-status.png"
    shot.unlink(missing_ok=True)
    await _chromium_run("--virtual-time-budget=8000", "--window-size=1280,900", f"--screenshot={shot}",
                        f"{bridge_url}/ui", tmp=tmp_path)
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


async def test_status_data_needs_a_key_when_auth_is_on(settings: Settings, redis_client: object) -> None:
    """The page is public (it holds no data); its data follows the API's auth."""
    app = create_app(settings, BridgeSettings(auth=True, instance=f"ui{uuid.uuid4().hex[:6]}"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bridge") as http:
        page = await http.get("/ui")
        assert page.status_code == 200 and "/ui/api/status" in page.text
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert (await http.get("/ui/api/status")).status_code == 401
        bad = await http.get("/ui/api/status", headers={"Authorization": "Bearer aiaas_x_nope"})
        assert bad.status_code == 401


async def test_status_page_plots_the_forecast_against_the_arrivals(
    settings: Settings, admin: Admin, bridge_url: str, tmp_path: Path
) -> None:
    """A predictive autoscaler (a 2 s "day", its stand-in worker a real group member) sees a
    trickle with a burst each season; what it saw and forecast reaches the page through
    ``scaling.<model>`` and the bridge, and Chromium draws both lines."""
    model, topics = f"echo{uuid.uuid4().hex[:6]}", Topics(settings)
    req, replies = topics.infer_requests(model, 2), topics.replies(f"ui{uuid.uuid4().hex[:6]}")
    await admin.ensure_topics([req, replies])
    async with Registry(settings) as reg:  # the page shows the charts of visible (registered) models
        await reg.publish(model, mlp([4, 2]), stage="production")
    policy = Policy(min_replicas=1, max_replicas=1, rate_per_replica=1000.0, cooldown_s=60.0)
    worker = [sys.executable, "-m", "tests.integration.test_autoscale", "{model}"]  # the stand-in
    scaler = local_autoscaler(settings, model, policy, command=worker,
                              log_dir=tmp_path, interval_s=0.25, stop_timeout_s=20,
                              extra_env={"PYTHONPATH": str(ROOT)}, kind="predictive",
                              forecasting=Forecasting(season_s=2.0, step_s=0.25, startup_s=1.0))
    async with Producer(settings) as prod, running(scaler):
        for i in range(28):  # 7 s: a trickle of 2 records per 0.25 s, a burst of 20 each season
            ids = [f"r{i}-{j}" for j in range(20 if i % 8 == 0 else 2)]
            await _send(prod, req.name, replies.name, ids)
            await scaler.next_step()  # paced by the scaler's own loop (0.25 s), not a sleep
        async with asyncio.timeout(30):
            while scaler.planner.forecast_rate <= 0:
                await scaler.next_step()
    async with httpx.AsyncClient(base_url=bridge_url) as http:
        (row,) = (await http.get("/ui/api/status")).json()["scaling"]
    pts = row["points"]
    assert row["model"] == model and row["policy"] == "predictive" and len(pts) >= 28
    assert max(p["arrival_rate"] for p in pts) > 0 and max(p["forecast_rate"] for p in pts) > 0
    assert [p["ts"] for p in pts] == sorted(p["ts"] for p in pts)

    dom = await _chromium_run("--virtual-time-budget=8000", "--dump-dom", f"{bridge_url}/ui", tmp=tmp_path)
    assert f'data-scaling="{model}"' in dom and "predictive · " in dom, dom[-3000:]
    for cls in ("arrivals", "forecast"):
        line = re.search(rf'<polyline points="([^"]+)"[^>]*class="{cls}"', dom)
        assert line and len(line[1].split()) == len(pts), cls
        ys = {float(xy.split(",")[1]) for xy in line[1].split()}
        assert len(ys) > 1, cls  # a line that moves, not a flat zero
