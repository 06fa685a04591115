"""The training CLI and the jobs worker on the real broker.

``aiaas jobs status`` reads the jobs topic; ``aiaas train`` refuses a bad spec naming the field;
``aiaas worker jobs`` (``aiaas.agents.jobrunner``) picks up a spec written to the jobs topic (as the HTTP
bridge's ``POST /v1/jobs`` does) and runs it (in-process here: the process path of ``LocalJob`` is
what the fault tests and ``make demo`` run).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aiaas.agents.jobrunner import watch_and_run
from aiaas.cli.main import app
from aiaas.schemas.jobs import JobSpec
from aiaas.schemas.records import JobStatus
from aiaas.streams.admin import ensure
from aiaas.streams.audit import tail
from aiaas.streams.jobs import spec_key, submit, wait_final, write_status
from aiaas.streams.lifecycle import cancel
from aiaas.streams.producer import Producer
from aiaas.streams.runtime import run
from aiaas.streams.settings import Settings
from aiaas.streams.topics import Topics

pytestmark = pytest.mark.timeout(180)


def small_spec(job_id: str) -> JobSpec:
    return JobSpec.model_validate({
        "job_id": job_id, "model": {"input_dim": 64, "hidden": [64], "output_dim": 10}, "trainers": 1,
        "optimizer": {"name": "adam", "lr": 3e-3}, "epochs": 30, "eval_interval": 5,
        "sync": {"mode": "sync", "straggler_deadline_ms": 1000},
        "target": {"metric": "test_accuracy", "value": 0.93},
        "data": {"source": "digits", "partitions": 2},
    })


def test_jobs_status_lists_the_jobs_on_the_topic(
    infra: None, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIAAS_TOPIC_PREFIX", prefix)
    monkeypatch.setenv("COLUMNS", "200")
    run(submit(Settings(), small_spec("listed-job")))
    runner = CliRunner()
    result = runner.invoke(app, ["jobs", "status"])
    assert result.exit_code == 0, result.output
    assert "listed-job" in result.output and "submitted" in result.output
    missing = runner.invoke(app, ["jobs", "status", "no-such-job"])
    assert missing.exit_code == 1 and "no job" in missing.output


def test_jobs_status_shows_failures_with_why_and_silent_jobs_as_lost(
    infra: None, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIAAS_TOPIC_PREFIX", prefix)
    monkeypatch.setenv("COLUMNS", "250")
    now = time.time()
    written = [JobStatus(job_id="broke", state="failed", error="data file not found", ts=now),
               JobStatus(job_id="silent", state="running", heartbeat_s=5.0, ts=now - 300),
               JobStatus(job_id="alive", state="running", heartbeat_s=5.0, ts=now),
               JobStatus(job_id="short", state="missed_target", error="target not met", ts=now)]

    async def write() -> None:
        await ensure(Settings(), [Topics(Settings()).jobs()])
        async with Producer(Settings()) as producer:
            for status in written:
                await write_status(producer, Settings(), status)

    run(write())
    rows = {ln.split()[1]: ln for ln in CliRunner().invoke(app, ["jobs", "status"]).output.splitlines()
            if ln.startswith("│ ")}
    assert "failed" in rows["broke"] and "data file not found" in rows["broke"]
    assert "lost" in rows["silent"] and "no heartbeat for 5m" in rows["silent"]  # 30 s of slack
    assert "running" in rows["alive"]
    assert "missed_target" in rows["short"] and "target not met" in rows["short"]
    shown = {j["job_id"]: j for j in json.loads(CliRunner().invoke(app, ["jobs", "status", "--json"]).output)}
    assert shown["silent"]["state"] == "lost" and shown["silent"]["recorded_state"] == "running"
    assert shown["broke"]["state"] == "failed" and shown["broke"]["why"] == "data file not found"


def test_train_refuses_a_bad_spec_naming_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "job.yaml"
    bad.write_text("job_id: bad\nmodel: {input_dim: 64, output_dim: 10}\nepochs: 1\nsync: {mode: sideways}\n")
    result = CliRunner().invoke(app, ["train", "--spec", str(bad)])
    assert result.exit_code == 2
    assert "sync.mode" in result.output


async def test_jobs_worker_runs_a_job_submitted_to_the_topic(settings: Settings) -> None:
    spec = small_spec("from-topic")
    runner = asyncio.create_task(watch_and_run(settings, in_process=True))
    try:
        async with Producer(settings) as producer:  # the bridge writes only the spec
            await producer.send_and_wait(Topics(settings).jobs().name, spec.to_record(),
                                         key=spec_key(spec.job_id))
        status = await wait_final(settings, spec.job_id, timeout_s=150)
        async with asyncio.timeout(30), contextlib.aclosing(tail(settings, follow=True)) as recs:
            stop = await anext(r async for r in recs if r.action == "job.stop")  # audited (agent)
    finally:
        await cancel(runner, quiet=True)
    assert status.state == "succeeded", status.error
    assert status.metrics["test_accuracy"] >= 0.93
    assert (stop.target, stop.source, stop.outcome, stop.details["state"]) == (
        spec.job_id, "agent", "ok", "succeeded")
