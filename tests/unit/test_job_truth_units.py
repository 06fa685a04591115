"""Pure checks behind the job-status and spec-vs-data items: shown_state, check_fit, the crash line
the launcher quotes, the demo's plots (none for a failed run, never an empty one)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console

from aiaas.agents.launcher import _last_error
from aiaas.cli.demo.callers import CallResults
from aiaas.cli.demo.report import Summary, report
from aiaas.schemas.errors import AiaasError
from aiaas.schemas.jobs import JobSpec
from aiaas.schemas.records import JobStatus
from aiaas.schemas.training import DataInfo, MetricsMessage
from aiaas.streams.jobs import shown_state


def _spec(**over: Any) -> JobSpec:
    return JobSpec.model_validate({"job_id": "j", "model": {"input_dim": 64, "output_dim": 10}, "epochs": 1,
                                   "data": {"partitions": 2}} | over)


def _info(**over: Any) -> DataInfo:
    return DataInfo.model_validate({"job_id": "j", "source": "digits", "task": "classification",
                                    "n_features": 64, "n_classes": 10, "partitions": 2} | over)


def test_shown_state_tells_running_from_lost_and_says_why() -> None:
    now = time.time()
    assert shown_state(JobStatus(job_id="a", state="running", heartbeat_s=5, ts=now - 4), now)[0] == "running"
    state, why = shown_state(JobStatus(job_id="a", state="running", heartbeat_s=5, ts=now - 600), now)
    assert state == "lost" and "10m" in why
    failed = JobStatus(job_id="a", state="failed", error="boom", ts=now - 600)
    assert shown_state(failed, now) == ("failed", "boom")
    assert shown_state(JobStatus(job_id="a", state="submitted", ts=now - 30), now)[1].startswith("waiting")


@pytest.mark.parametrize(("spec", "info", "says"), [
    ({"model": {"input_dim": 60, "output_dim": 10}}, {}, "input_dim is 60 but the data of job j has 64 "),
    ({"model": {"input_dim": 64, "output_dim": 5}}, {}, "output_dim is 5 but the data of job j has 10 "),
    ({}, {"task": "regression", "n_classes": 0}, "loss cross_entropy needs class labels"),
    ({"loss": "mse", "model": {"input_dim": 64, "output_dim": 3}}, {"task": "regression"}, "1 target value"),
    ({}, {"partitions": 4}, "data.partitions is 2 but the data of job j was pushed to 4 partitions"),
])
def test_check_fit_names_both_numbers(spec: dict[str, Any], info: dict[str, Any], says: str) -> None:
    from aiaas.data.datainfo import check_fit

    with pytest.raises(AiaasError) as err:
        check_fit(_spec(**spec), _info(**info))
    assert says in err.value.reason and err.value.code == "bad_request"
    check_fit(_spec(), _info())  # a spec that fits passes


def test_last_error_quotes_the_exception_line() -> None:
    log = ("INFO starting\nTraceback (most recent call last):\n  File x\n"
           "pydantic_core._pydantic_core.ValidationError: 1 validation error for TrainerSettings\n"
           "session_timeout_ms\n  Input should be >= 1000\nFor further information visit https://errors\n")
    assert _last_error(log) == ("pydantic_core._pydantic_core.ValidationError: 1 validation error for "
                                "TrainerSettings session_timeout_ms")
    assert _last_error("just a line\n") == "just a line"


def test_demo_writes_no_plot_for_a_failed_run_and_only_full_ones(tmp_path: Path) -> None:
    quiet = Console(file=open(tmp_path / "console.txt", "w"))  # noqa: SIM115 - closed with the console
    (tmp_path / "training.png").write_bytes(b"stale")
    assert not report(Summary(job_id="d", failure="boom"), tmp_path, quiet)
    assert not (tmp_path / "training.png").exists() and not (tmp_path / "latency.png").exists()
    ok = Summary(job_id="d", metrics=[MetricsMessage(job_id="d", version=v, loss=1.0 / v, test_loss=1.0 / v,
                                                     test_accuracy=1 - 1.0 / v) for v in range(1, 6)])
    ok.calls = CallResults(labels=np.zeros(3, int), predictions={0: 0, 1: 0, 2: 0},
                           latencies_ms={"http_sync": [1.0, 2.0, 3.0]}, counts={"http_sync": 3})
    assert report(ok, tmp_path, quiet)
    assert (tmp_path / "training.png").stat().st_size > 10_000
    assert (tmp_path / "latency.png").stat().st_size > 5_000
    quiet.file.close()
