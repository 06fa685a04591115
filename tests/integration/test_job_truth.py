"""Errors that say what to do and a job status that is true, on the real broker.

- a spec that does not fit its data is refused before anything starts, in one line naming both
  numbers, and nothing is submitted;
- a trainer that crashes ends ``aiaas train`` within seconds with its error and exit code 1, and
  the job's status says failed and why (not ``submitted`` or ``running`` for ever);
- a trainer whose data does not fit its model fails the job with that reason instead of waiting;
- a job whose budget ends before its target is ``missed_target`` with the figures, not ``succeeded``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from aiaas.agents.aggregator.server import Aggregator
from aiaas.agents.aggregator.settings import AggregatorSettings
from aiaas.agents.launcher import LocalJob, run_in_process
from aiaas.agents.trainer.settings import TrainerSettings
from aiaas.agents.trainer.worker import Trainer
from aiaas.cli.main import app
from aiaas.data.datapush import push
from aiaas.registry.store import Registry
from aiaas.schemas.errors import AiaasError
from aiaas.schemas.jobs import JobSpec
from aiaas.streams.admin import drop_prefix
from aiaas.streams.jobs import read_jobs, shown_state, submit
from aiaas.streams.runtime import run
from aiaas.streams.settings import Settings
from tests.infra import ROOT
from tests.spawn import run_to_end

pytestmark = pytest.mark.timeout(180)


def _raw(job_id: str, **over: Any) -> dict[str, Any]:
    return {
        "job_id": job_id, "model": {"input_dim": 64, "hidden": [32], "output_dim": 10}, "trainers": 1,
        "optimizer": {"name": "adam", "lr": 3e-3}, "steps": 40, "eval_interval": 10,
        "sync": {"mode": "sync"}, "data": {"source": "digits", "partitions": 1},
    } | over


def test_train_refuses_a_spec_that_does_not_fit_its_data(
    infra: None, prefix: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AIAAS_TOPIC_PREFIX", prefix)
    monkeypatch.setenv("COLUMNS", "300")
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(_raw("misfit", model={"input_dim": 60, "output_dim": 10})))
    started = time.monotonic()
    result = CliRunner().invoke(app, ["train", "--spec", str(path)])
    assert result.exit_code == 2, result.output
    refused = [ln for ln in result.output.splitlines() if "refused" in ln]
    assert len(refused) == 1, result.output
    assert "model.input_dim is 60" in refused[0] and "64 features" in refused[0]
    assert time.monotonic() - started < 30
    absent = tmp_path / "absent.csv"
    csv_data = {"source": "csv", "path": str(absent), "partitions": 1}
    path.write_text(yaml.safe_dump(_raw("nofile", data=csv_data)))
    result = CliRunner().invoke(app, ["train", "--spec", str(path)])
    assert result.exit_code == 2 and f"job refused: data file not found: {absent}" in result.output
    specs, statuses = run(read_jobs(Settings()))
    assert not {"misfit", "nofile"} & (set(specs) | set(statuses))  # refused before start: nothing submitted


async def test_a_trainer_crash_ends_train_within_seconds_and_the_status_says_why(
    settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(_raw("crash", steps=10_000)))
    env = {**os.environ, "AIAAS_TOPIC_PREFIX": settings.topic_prefix, "PYTHONPATH": str(ROOT),
           "AIAAS_TRAINER_SESSION_TIMEOUT_MS": "5"}  # the trainer's settings refuse it: it exits 1
    started = time.monotonic()
    code, out, _ = await run_to_end(
        sys.executable, "-m", "aiaas.cli.main", "train", "--spec", str(path), "--log-dir", str(tmp_path),
        cwd=str(ROOT), env=env, merge_stderr=True, timeout_s=150)
    text = out.decode(errors="replace")
    assert code == 1, text[-3000:]
    assert time.monotonic() - started < 90, text  # was: silent until the 3600 s timeout
    assert "crash-t1 exited with code 1" in text and "session_timeout_ms" in text, text[-3000:]
    _, statuses = await read_jobs(settings)
    state, why = shown_state(statuses["crash"])
    assert state == "failed" and "exited with code 1" in why


async def test_a_trainer_whose_data_does_not_fit_fails_the_job_with_the_reason(settings: Settings) -> None:
    good = JobSpec.model_validate(_raw("misfit-trainer"))
    wrong = JobSpec.model_validate(_raw("misfit-trainer", model={"input_dim": 60, "output_dim": 10}))
    await submit(settings, good)
    await push(settings, good)
    agg = Aggregator(settings, good, AggregatorSettings(start_wait_s=20))
    trainer = Trainer(settings, wrong, TrainerSettings(worker_id="wrong"))
    try:
        await asyncio.gather(agg.start(), trainer.start())
        started = time.monotonic()
        tasks = [asyncio.create_task(agg.run()), asyncio.create_task(trainer.run())]
        async with asyncio.timeout(30):
            status, crashed = await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await asyncio.gather(agg.stop(), trainer.stop(), return_exceptions=True)
    assert isinstance(crashed, AiaasError)
    assert not isinstance(status, BaseException)
    assert status.state == "failed" and time.monotonic() - started < 20
    assert status.error is not None and "64 features but model.input_dim is 60" in status.error
    _, statuses = await read_jobs(settings)
    assert statuses["misfit-trainer"].state == "failed"


async def test_a_job_that_misses_its_target_says_so(settings: Settings) -> None:
    spec = JobSpec.model_validate(_raw("short", steps=10, target={"metric": "test_accuracy", "value": 0.999}))
    status = await run_in_process(settings, spec, timeout_s=120)
    assert status.state == "missed_target"
    assert status.error is not None and "test_accuracy >= 0.999 not met" in status.error
    assert f"{status.metrics['test_accuracy']:.4f}" in status.error
    assert status.model_version is not None  # the model is still there for whoever wants it
    async with Registry(settings) as registry:  # ... but it does not replace production unasked
        mv = await registry.get(status.model_name or "", status.model_version)
    assert mv.stage == "staging" and "in staging, not production" in status.error
    _, statuses = await read_jobs(settings)
    assert shown_state(statuses["short"]) == ("missed_target", status.error)


def test_train_prints_its_result_as_json(infra: None, prefix: str, monkeypatch: pytest.MonkeyPatch,
                                         tmp_path: Path) -> None:
    monkeypatch.setenv("AIAAS_TOPIC_PREFIX", prefix)
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(_raw("json-summary", trainers=1, steps=20)))
    try:
        result = CliRunner().invoke(app, ["train", "--spec", str(path), "--log-dir", str(tmp_path)])
    finally:
        run(drop_prefix(Settings()))
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["state"] == "succeeded" and summary["job_id"] == "json-summary"
    assert 0.0 <= summary["metrics"]["test_accuracy"] <= 1.0 and summary["model_version"] >= 1


async def test_a_spec_is_checked_against_data_pushed_before(settings: Settings, tmp_path: Path) -> None:
    """``aiaas data push`` then ``aiaas train`` (or ``--no-push``): the spec meets what the push
    recorded on Kafka; no pushed data at all is refused saying what to run."""
    spec = JobSpec.model_validate(_raw("pushed-before"))
    with pytest.raises(AiaasError) as err:
        await LocalJob(settings, spec, push_data=False, log_dir=tmp_path).prepare()
    assert err.value.code == "not_found" and "aiaas data push" in err.value.reason
    await push(settings, spec)
    await LocalJob(settings, spec, push_data=False, log_dir=tmp_path).prepare()  # fits: no error
    await LocalJob(settings, spec, log_dir=tmp_path).prepare()  # pushes again: kept (conflict), fits
    wrongs: list[dict[str, Any]] = [{"model": {"input_dim": 60, "output_dim": 10}},
                                    {"data": {"source": "digits", "partitions": 2}}]
    for wrong in wrongs:
        misfit = JobSpec.model_validate(_raw("pushed-before", **wrong))
        for push_data in (False, True):
            with pytest.raises(AiaasError) as err:
                await LocalJob(settings, misfit, push_data=push_data, log_dir=tmp_path).prepare()
            assert err.value.code == "bad_request" and "the data of job pushed-before" in err.value.reason
